"""Check Silver's Delta schema against what the queries need, and plan the column reads.

Checked at start and again at every commit that changes the table's metadata, before
anything is written: a missing column or an incompatible type is an error naming the
column, the expected and the actual type. Added columns are fine. Column mapping
(`delta.columnMapping.mode` = name/id) is honoured by reading physical column names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from goldstream.config import QuerySpec
from goldstream.errors import SourceError

_NUMERIC = {"long", "integer", "short", "byte", "float", "double"}
_PRIMITIVE_TO_POLARS: dict[str, pl.DataType] = {
    "string": pl.String(), "long": pl.Int64(), "integer": pl.Int32(), "short": pl.Int16(),
    "byte": pl.Int8(), "float": pl.Float32(), "double": pl.Float64(), "boolean": pl.Boolean(),
    "timestamp": pl.Datetime("us", "UTC"), "timestamp_ntz": pl.Datetime("us"), "date": pl.Date(),
    "binary": pl.Binary(),
}


def _type_name(t: Any) -> str:
    return t if isinstance(t, str) else str(t.get("type", t))


def polars_type(delta_type: Any) -> pl.DataType:
    name = _type_name(delta_type)
    if name in _PRIMITIVE_TO_POLARS:
        return _PRIMITIVE_TO_POLARS[name]
    if name.startswith("decimal"):
        return pl.Float64()  # read as double: the aggregates are computed in double
    raise ValueError(f"unsupported type {name}")


@dataclass(frozen=True)
class ColumnPlan:
    name: str  # logical name (the query's)
    physical: str  # name in the Parquet files
    delta_type: str
    dtype: pl.DataType
    is_partition: bool


@dataclass(frozen=True)
class ReadPlan:
    """Which Parquet columns to read and how to name and type them."""

    columns: tuple[ColumnPlan, ...]

    @property
    def data_columns(self) -> list[ColumnPlan]:
        return [c for c in self.columns if not c.is_partition]

    @property
    def partition_columns(self) -> list[ColumnPlan]:
        return [c for c in self.columns if c.is_partition]

    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}


def _requirements(queries: list[QuerySpec]) -> dict[str, tuple[str, set[str] | None]]:
    """column -> (why it is needed, allowed Delta types or None for any primitive)."""
    req: dict[str, tuple[str, set[str] | None]] = {}

    def need(col: str, why: str, allowed: set[str] | None) -> None:
        if col in req and req[col][1] is not None:
            prev_why, prev = req[col]
            allowed = prev if allowed is None else prev & allowed
            why = prev_why
        req[col] = (why, allowed)

    for q in queries:
        need(q.event_time, f"event time of query {q.name!r}", {"timestamp"})
        for k in q.keys:
            need(k, f"key of query {q.name!r}", None)
        for a in q.aggregates:
            if not a.column:
                continue
            why = f"aggregate {a.name!r} of query {q.name!r}"
            if a.fn == "count_if" and a.equals is not None:
                allowed = {"boolean"} if isinstance(a.equals, bool) else (
                    {"string"} if isinstance(a.equals, str) else _NUMERIC)
                need(a.column, why, allowed)
            elif a.fn == "count_if" or a.fn in ("avg", "sum", "min", "max", "stddev"):
                need(a.column, why, _NUMERIC | {"decimal"})
    return req


def plan_reads(
    schema_json: str | dict[str, Any],
    partition_columns: list[str],
    configuration: dict[str, str | None],
    queries: list[QuerySpec],
    where: str,
) -> ReadPlan:
    """Validate the Silver schema for `queries`; `where` names the table/version in errors."""
    schema = json.loads(schema_json) if isinstance(schema_json, str) else schema_json
    fields = {f["name"]: f for f in schema.get("fields", [])}
    mapping_mode = (configuration or {}).get("delta.columnMapping.mode") or "none"
    problems: list[str] = []
    plans: list[ColumnPlan] = []
    for col, (why, allowed) in _requirements(queries).items():
        f = fields.get(col)
        if f is None:
            problems.append(f"column {col!r} ({why}) is missing; Silver has: {', '.join(fields) or 'no columns'}")
            continue
        tname = _type_name(f["type"])
        base = "decimal" if tname.startswith("decimal") else tname
        if base not in _PRIMITIVE_TO_POLARS and base != "decimal":
            problems.append(f"column {col!r} ({why}) has type {tname}, which is not a primitive type")
            continue
        if allowed is not None and base not in allowed:
            problems.append(
                f"column {col!r} ({why}) has type {tname}; expected {' or '.join(sorted(allowed))}"
            )
            continue
        physical = col
        if mapping_mode != "none":
            physical = (f.get("metadata") or {}).get("delta.columnMapping.physicalName", col)
        plans.append(ColumnPlan(col, physical, tname, polars_type(tname), col in partition_columns))
    if problems:
        raise SourceError(
            f"Silver schema at {where} does not fit the queries:\n  - " + "\n  - ".join(problems)
            + "\nFix the Silver table or the query definitions (config) and restart; nothing was written."
        )
    return ReadPlan(tuple(plans))
