"""`goldstream explain`: a query's plan as a person reads it.

What it reads from Silver (columns and their types), which rows it keeps (filter / WHERE),
what it joins (each dimension with the version a batch would join now), the window and the
watermark, the keys, each aggregate with the state goldstream keeps for it and its Spark
form, and the Gold schema. It opens Silver and the dimensions to know their schemas; it
writes nothing.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from goldstream.config import QuerySpec, Settings
from goldstream.durations import format_duration
from goldstream.engine.aggregates import gold_frame_schema
from goldstream.functions.aggregate import AggregateFunction
from goldstream.functions.base import NoSparkEquivalent
from goldstream.functions.registry import build
from goldstream.source.reader import SilverSource
from goldstream.source.schema import silver_columns
from goldstream.sql.dimensions import Dimensions
from goldstream.sql.query import render
from goldstream.sql.types import from_polars
from goldstream.storage import Storage

WIDTH = 100


def explain(settings: Settings, storage: Storage) -> str:
    source = SilverSource(settings.source, settings.queries, storage)
    source.open()
    dims = Dimensions(dict(settings.tables), storage, settings.source.max_dimension_rows) if settings.tables else None
    out = []
    for q in settings.queries:
        types = source.engine_types(q, settings.gold_path(q))
        if q.sql_query is not None and q.sql_query.tables:
            assert dims is not None
            types = {**types, **dims.types(q.sql_query.tables)}
        out.append(_query(settings, q, source, types, dims))
    return "\n\n".join(out) + "\n"


def _type(dtype: Any) -> str:
    """A column type as Spark names it (timestamps are UTC)."""
    return str(from_polars(dtype))


def _query(settings: Settings, q: QuerySpec, source: SilverSource, types: dict[str, pl.DataType],
           dims: Dimensions | None) -> str:
    sql = q.sql_query
    lines = [f"query {q.name}" + (" (Spark SQL)" if sql is not None else " (TOML)")]
    read = [c for c in silver_columns([q]) if c in types]
    lines.append(f"  reads Silver {source.uri}: " + ", ".join(f"{c} ({_type(types[c])})" for c in read))
    if sql is not None:
        if sql.where:
            lines.append("  keeps rows where: " + " AND ".join(render(w) for w in sql.where)
                         + " (after the watermark, as Spark's WHERE after withWatermark)")
        for j in sql.joins:
            version = "?"
            if dims is not None:
                frame = dims.frame(j.table)
                version = f"version {dims.versions()[j.table]} now, {frame.height} rows"
            on = " AND ".join(f"{render(e)} = {j.table}.{c}" for e, c in j.keys)
            lines.append(f"  joins {j.how.upper()} {j.table} ({settings.tables[j.table]}, {version}) ON {on}; "
                         "each batch joins the latest version, recorded in Gold's offsets")
    elif q.filter is not None:
        lines.append(f"  keeps rows where: {q.filter} (before the watermark: other rows move nothing)")
    w = q.window
    assert w is not None
    lines.append(f"  window: {w.kind} {w.extent} on {q.event_time}; watermark = max event time per Silver commit "
                 f"- {format_duration(q.watermark_delay)}; a window is appended once its end <= watermark")
    keys = [render(k) for k in sql.keys] if sql is not None else list(q.keys)
    lines.append("  keys: " + (", ".join(keys) if keys else "none"))
    lines.append("  aggregates:")
    for spec in q.aggregates:
        fn = build(spec)
        state = ", ".join(fn.state) if isinstance(fn, AggregateFunction) else "none (computed from outputs)"
        if sql is not None:
            call = next(a for a in sql.aggregates if a.name == spec.name)
            args = "; ".join(f"{arg} = {render(e)}" for arg, e in call.inputs)
            lines.append(f"    {call.spark}: goldstream {spec.fn}" + (f" over {args}" if args else "")
                         + f"; state: {state}")
        else:
            try:
                spark = fn.spark_sql()
            except NoSparkEquivalent as missing:
                spark = f"none exact (closest: {missing.approximate})"
            lines.append(f"    {spec.name} = {spec.fn}: state: {state}; Spark: {spark}")
    gold = gold_frame_schema(q, types)
    lines.append(f"  Gold {settings.gold_path(q)}:")
    if sql is not None:
        for name, expr in sql.outputs:
            shown = render(expr)
            for a in sql.aggregates:
                shown = shown.replace(a.name, a.spark)
            for i, k in enumerate(sql.keys):
                shown = shown.replace(f"__k{i}", render(k))
            shown = shown.replace("__window_start", "window.start").replace("__window_end", "window.end")
            lines.append(f"    {name} {_type(gold[name])} = {shown}")
    else:
        lines += [f"    {name} {_type(t)}" for name, t in gold.items()]
    return "\n".join(_fit(line) for line in lines)


def _fit(line: str) -> str:
    """Long lines wrapped at WIDTH columns, continuation indented."""
    if len(line) <= WIDTH:
        return line
    lead = len(line) - len(line.lstrip())
    indent = " " * (lead + 4)
    words, out, current = line.lstrip().split(" "), [], " " * lead
    for word in words:
        if current.strip() and len(current) + 1 + len(word) > WIDTH:
            out.append(current)
            current = indent + word
        else:
            current = f"{current} {word}" if current.strip() else current + word
    out.append(current)
    return "\n".join(out)
