"""Check Silver's Delta schema against what the queries need, and plan the column reads.

Checked at start and again at every commit that changes the table's metadata, before
anything is written: a missing column or an incompatible type is an error naming the
column, the expected and the actual type. Added columns are fine. Column mapping
(`delta.columnMapping.mode` = name/id) is honoured by reading physical column names.
A protocol whose reader features goldstream does not know is refused rather than read
wrongly.

A schema change between two versions is checked the way Spark's Delta source checks it
(`check_change`): under column mapping a rename or a drop changes which data a name
reads, so one of a column the queries use stops the stream at that version; a type
widening is read at the wider type, and stops only when the column's type reaches Gold
(keys, min/max), whose column cannot change type in place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from goldstream.config import QuerySpec
from goldstream.errors import SourceError
from goldstream.functions.registry import build

_PRIMITIVE_TO_POLARS: dict[str, pl.DataType] = {
    "string": pl.String(), "long": pl.Int64(), "integer": pl.Int32(), "short": pl.Int16(),
    "byte": pl.Int8(), "float": pl.Float32(), "double": pl.Float64(), "boolean": pl.Boolean(),
    "timestamp": pl.Datetime("us", "UTC"), "timestamp_ntz": pl.Datetime("us"), "date": pl.Date(),
    "binary": pl.Binary(),
}


# Reader features whose effect on goldstream's reads is understood: column mapping is
# applied (physical names), deletion vectors only ever appear on change commits (refused
# or skipped), checkpoints are never read for data, timestamp_ntz / variant only matter
# for columns the queries refuse anyway, and widened types are upcast on read.
SUPPORTED_READER_FEATURES = frozenset({
    "columnMapping", "deletionVectors", "timestampNtz", "v2Checkpoint", "vacuumProtocolCheck",
    "typeWidening", "typeWidening-preview", "variantType", "variantType-preview",
})
MAX_READER_VERSION = 3


def check_protocol(protocol: dict[str, Any] | None, where: str) -> None:
    """Refuse a Silver protocol that needs reader features goldstream cannot honour."""
    if not protocol:
        return
    version = int(protocol.get("minReaderVersion") or 1)
    features = set(protocol.get("readerFeatures") or [])
    unknown = sorted(features - SUPPORTED_READER_FEATURES)
    if version > MAX_READER_VERSION or unknown:
        what = f"reader features {', '.join(unknown)}" if unknown else f"reader version {version}"
        raise SourceError(
            f"Silver table at {where} requires {what}, which goldstream cannot read correctly "
            f"(it supports reader version <= {MAX_READER_VERSION} with features "
            f"{', '.join(sorted(SUPPORTED_READER_FEATURES))}). Read this table with an engine that "
            "supports them, or write Silver without them; nothing was written."
        )


# Why a column of this (wrong) type cannot just be used: shown after "expected ...".
_HINTS = {
    ("timestamp", "timestamp_ntz"): "timestamp_ntz has no time zone, so its instants are ambiguous; "
                                    "store event times as a UTC `timestamp` in Silver",
    ("timestamp", "string"): "parse it into a UTC `timestamp` column in Silver",
    ("timestamp", "long"): "convert epoch numbers into a UTC `timestamp` column in Silver",
}


def _hint(allowed: set[str], actual: str) -> str:
    if allowed == {"timestamp"}:
        hint = _HINTS.get(("timestamp", actual))
    elif actual == "string":
        hint = "a string column is not compared or averaged as a number; cast it in Silver"
    else:
        hint = None
    return f" ({hint})" if hint else ""


def _type_name(t: Any) -> str:
    return t if isinstance(t, str) else str(t.get("type", t))


_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


def _decimal_scale(delta_type: str) -> int:
    m = _DECIMAL.match(delta_type)
    assert m is not None
    return int(m.group(2))


def polars_type(delta_type: Any) -> pl.DataType:
    """The Polars type a Delta type is read at: a decimal exactly, as Decimal(p, s)."""
    name = _type_name(delta_type)
    if name in _PRIMITIVE_TO_POLARS:
        return _PRIMITIVE_TO_POLARS[name]
    if m := _DECIMAL.match(name):
        return pl.Decimal(int(m.group(1)), int(m.group(2)))
    raise ValueError(f"unsupported type {name}")


@dataclass(frozen=True)
class ColumnPlan:
    name: str  # logical name (the query's)
    physical: str | None  # name in the Parquet files; None: not in this version's schema (read as null)
    delta_type: str  # as of the version the plan describes
    dtype: pl.DataType  # as read: the table's current type, so every batch shares one frame schema
    is_partition: bool
    widened_from: tuple[str, ...] = ()  # types Delta's type widening recorded for it (delta.typeChanges)


@dataclass(frozen=True)
class ReadPlan:
    """Which Parquet columns to read and how to name and type them, as of one schema.

    `identities` maps every column of that schema (used or not) to what identifies its
    data across versions: under column mapping its physical name, else its name."""

    columns: tuple[ColumnPlan, ...]
    identities: tuple[tuple[str, str], ...] = ()

    def identity(self, name: str) -> str | None:
        return dict(self.identities).get(name)

    def name_of(self, identity: str) -> str | None:
        return next((n for n, i in self.identities if i == identity), None)

    def column(self, name: str) -> ColumnPlan | None:
        return next((c for c in self.columns if c.name == name), None)

    def retyped(self, types: dict[str, pl.DataType]) -> ReadPlan:
        """The same plan reading some columns at other types."""
        return ReadPlan(tuple(replace(c, dtype=types.get(c.name, c.dtype)) for c in self.columns), self.identities)

    @property
    def data_columns(self) -> list[ColumnPlan]:
        return [c for c in self.columns if not c.is_partition]

    @property
    def partition_columns(self) -> list[ColumnPlan]:
        return [c for c in self.columns if c.is_partition]

    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}


def silver_columns(queries: list[QuerySpec]) -> list[str]:
    """The Silver columns the queries read, in order of first use."""
    return list(_requirements(queries))


def _optional_columns(queries: list[QuerySpec]) -> set[str]:
    """Unqualified columns of SQL queries with a join: Silver's when Silver has them, else a
    dimension's (resolved when the SQL is compiled against both schemas)."""
    return {c for q in queries if q.sql_query is not None and q.sql_query.joins
            for t, c in q.sql_query.base_columns() if t is None}


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
        if q.sql_query is not None:  # its SQL's column references (types checked when compiled)
            for table, col in q.sql_query.base_columns():
                if table == "silver" or table is None:
                    need(col, f"SQL of query {q.name!r}", None)
            continue
        for k in q.keys:
            need(k, f"key of query {q.name!r}", None)
        for a in q.aggregates:
            for col, accepted in build(a).silver_inputs().items():
                need(col, f"aggregate {a.name!r} of query {q.name!r}", set(accepted))
        for where, text in q.conditions():
            from goldstream.sql.condition import Condition
            for col in Condition.parse(text).columns:
                need(col, f"{where} of query {q.name!r}", None)
    return req


def _condition_problems(queries: list[QuerySpec], schema: dict[str, pl.DataType]) -> list[str]:
    """Conditions Spark would refuse over Silver's columns (a boolean compared with a number,
    a condition that is a number) and SQL queries that do not fit them."""
    if not any(q.sql_query is not None or q.conditions() for q in queries):
        return []
    from goldstream.sql.compile import compile_sql
    from goldstream.sql.condition import Condition
    from goldstream.sql.errors import SqlError
    problems = []
    for q in queries:
        if q.sql_query is not None:
            if not q.sql_query.joins:  # with a join, compiled once the dimensions are open
                try:
                    compile_sql(q.sql_query, schema, {}, ansi=q.ansi)
                except SqlError as err:
                    problems.append(f"the SQL of query {q.name!r}: {err}")
            continue
        for where, text in q.conditions():
            try:
                Condition.parse(text).compile(schema, q.ansi)
            except SqlError as err:
                problems.append(f"{where} of query {q.name!r}, {text!r}: {err}")
    return problems


def plan_reads(
    schema_json: str | dict[str, Any],
    partition_columns: list[str],
    configuration: dict[str, str | None],
    queries: list[QuerySpec],
    where: str,
    current: ReadPlan | None = None,
) -> ReadPlan:
    """Validate the Silver schema for `queries`; `where` names the table/version in errors.

    `current` is the plan of the table's current schema when `schema_json` is an older
    version met while reading history: a needed column that was only added later is
    then read as null (additive evolution, as Spark reads old files with the new schema),
    and every column keeps the current type, so all batches share one frame schema."""
    schema = json.loads(schema_json) if isinstance(schema_json, str) else schema_json
    fields = {f["name"]: f for f in schema.get("fields", [])}
    mapping_mode = (configuration or {}).get("delta.columnMapping.mode") or "none"
    problems: list[str] = []
    plans: list[ColumnPlan] = []
    now = {c.name: c for c in current.columns} if current is not None else {}
    optional = _optional_columns(queries)
    for col, (why, allowed) in _requirements(queries).items():
        f = fields.get(col)
        if f is None and col in optional:
            continue
        if f is None and col in now:  # added later: null in this version's files
            plans.append(ColumnPlan(col, None, now[col].delta_type, now[col].dtype, now[col].is_partition))
            continue
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
                + _hint(allowed, base)
            )
            continue
        physical = col
        if mapping_mode != "none":
            physical = (f.get("metadata") or {}).get("delta.columnMapping.physicalName", col)
        dtype = now[col].dtype if col in now else polars_type(tname)
        changes = (f.get("metadata") or {}).get("delta.typeChanges") or []
        widened = tuple(str(c.get("fromType")) for c in changes if isinstance(c, dict) and not c.get("fieldPath"))
        rescaled = [w for w in widened if base == "decimal" and _DECIMAL.match(w)
                    and _decimal_scale(w) != _decimal_scale(tname)]
        if rescaled:
            problems.append(
                f"column {col!r} ({why}) has type {tname}, widened from {rescaled[0]} (Delta type widening), so "
                f"files written before the widening hold its values at scale {_decimal_scale(rescaled[0])}: "
                "goldstream reads a decimal exactly only at the scale its files hold. Rewrite the table's older "
                "files at the new type (e.g. Spark's REORG TABLE ... APPLY (PURGE) after the widening, or a full "
                "rewrite), or start the query from the widening's version on (starting_version)")
            continue
        plans.append(ColumnPlan(col, physical, tname, dtype, col in partition_columns, widened))
    if not problems:
        problems = _condition_problems(queries, {c.name: c.dtype for c in plans})
    if problems:
        raise SourceError(
            f"Silver schema at {where} does not fit the queries:\n  - " + "\n  - ".join(problems)
            + "\nFix the Silver table or the query definitions (config) and restart; nothing from this "
            "version on was written to Gold."
        )
    return ReadPlan(tuple(plans), tuple((name, _identity(f, mapping_mode)) for name, f in fields.items()))


def _identity(f: dict[str, Any], mapping_mode: str) -> str:
    """What names a column's data in the files: its name, or under column mapping its
    physical name (a rename keeps it; a drop and re-add, in name or id mode, gets a new one;
    enabling column mapping keeps each column's name as its physical name)."""
    if mapping_mode == "none":
        return f["name"]
    return (f.get("metadata") or {}).get("delta.columnMapping.physicalName", f["name"])


def typed_by_silver(queries: list[QuerySpec],
                    types: dict[str, pl.DataType] | None = None) -> dict[str, list[tuple[str, str]]]:
    """Silver columns whose type is a Gold column's type: keys, and the inputs of functions
    whose Gold type follows their input's (min/max; sum/avg of a decimal, by its precision),
    each with (Gold column, what it is). Other inputs feed functions of a fixed Gold type
    (counts long, avg/sum/stddev of numbers double), so those columns can be read at any
    wider type. `types` (Silver's, as read) tells a decimal column from the others."""
    out: dict[str, list[tuple[str, str]]] = {}
    for q in queries:
        if q.sql_query is not None:  # its Gold types follow from its SQL (sql/compile.py)
            continue
        for k in q.keys:
            out.setdefault(k, []).append((k, f"key {k!r} of query {q.name!r}"))
        for a in q.aggregates:
            fn = build(a)
            for col in fn.silver_inputs():
                narrow, wide = _TYPE_PROBES[isinstance((types or {}).get(col), pl.Decimal)]
                if fn.return_type({col: narrow}) != fn.return_type({col: wide}):
                    out.setdefault(col, []).append((a.name, f"{a.name!r} ({a.fn}) of query {q.name!r}"))
    return out


def check_change(before: ReadPlan, after: ReadPlan, queries: list[QuerySpec],
                 gold_types: dict[str, pl.DataType], where: str) -> None:
    """Refuse a schema change (at `where`, a version) that a stream cannot follow without
    mixing two columns' data or changing a Gold column's type: a rename or drop of a column
    the queries use (column mapping), or a widening of a column whose type Gold has
    (`gold_types`, the types its Gold tables were created with)."""
    problems: list[str] = []
    for c in after.columns:
        was, now = before.identity(c.name), after.identity(c.name)
        if was == now:
            continue
        if now is None:
            renamed = before.name_of(was) and after.name_of(was)  # type: ignore[arg-type]
            problems.append(f"column {c.name!r} is renamed to {renamed!r}" if renamed else
                            f"column {c.name!r} is dropped")
        elif was is None:
            if (old_name := before.name_of(now)) is not None:
                problems.append(f"column {old_name!r} is renamed to {c.name!r}, a name the queries use")
        else:
            old_name = before.name_of(now)
            problems.append(
                f"column {c.name!r} now names the data of column {old_name!r} (a rename)" if old_name else
                f"column {c.name!r} is a new column with the same name (dropped and added again, or replaced)")
    if problems:
        raise SourceError(
            f"Silver version {where} changes columns the queries read:\n  - " + "\n  - ".join(problems)
            + "\nReading on would mix two columns' data under one name (Spark's Delta source stops here "
            "too). Nothing of this version was processed; Gold holds every row through the version before. "
            "To go on, point the queries at the columns' new names (config) and start them as new queries "
            "(new name or gold_path) from this version (starting_version), or restore the old columns."
        )
    check_gold_types(after, queries, gold_types, where)


def check_gold_types(plan: ReadPlan, queries: list[QuerySpec], gold_types: dict[str, pl.DataType],
                     where: str) -> None:
    """Refuse a Silver type for a column whose type Gold has, when it is wider than Gold's."""
    typed = typed_by_silver(queries, plan.polars_schema())
    wider = [(c, gold_types[c.name]) for c in plan.columns
             if c.physical is not None and c.name in gold_types and c.name in typed
             and widens(gold_types[c.name], polars_type(c.delta_type))]
    if wider:
        c, was = wider[0]
        raise SourceError(
            f"Silver version {where} widens column {c.name!r} to {c.delta_type} (type widening), and "
            f"Gold holds it as {delta_type_name(was)}: it is the type of "
            f"{', '.join(w for _, w in typed[c.name])}. A Gold column "
            "cannot change its type in place (delta-rs can neither alter a column's type nor write a "
            "table with the typeWidening feature). Nothing of this version was processed. To go on "
            "without losing or repeating a row, copy Gold into a new table with the wider type: "
            + " and ".join(f"`goldstream copy-gold --config <config> --query {q.name} --to <new Gold path>`"
                           for q in queries if c.name in typed_by_silver([q], plan.polars_schema()))
            + ", then set that query's gold_path to the new path and restart: it continues exactly where "
            "the old table ends (which stays as it is)."
        )


# Delta's type widenings (the typeWidening feature) between the types goldstream reads.
_WIDENINGS: dict[pl.DataType, set[pl.DataType]] = {
    pl.Int8(): {pl.Int16(), pl.Int32(), pl.Int64(), pl.Float64()},
    pl.Int16(): {pl.Int32(), pl.Int64(), pl.Float64()},
    pl.Int32(): {pl.Int64(), pl.Float64()},
    pl.Float32(): {pl.Float64()},
}


# A narrow and a wide type, for a column that is not a decimal and for one that is: a
# function whose Gold type tells them apart has Silver's type (min/max keep either; a
# decimal's sum or average follows its precision).
_TYPE_PROBES = ((pl.Float32(), pl.Float64()), (pl.Decimal(9, 2), pl.Decimal(12, 2)))


def widens(narrow: pl.DataType, wide: pl.DataType) -> bool:
    """Whether `wide` is a Delta type widening of `narrow` (a decimal: no fewer integer
    digits and no smaller scale)."""
    if isinstance(narrow, pl.Decimal) and isinstance(wide, pl.Decimal):
        (p1, s1), (p2, s2) = ((int(d.precision or 38), int(d.scale)) for d in (narrow, wide))
        return (p1, s1) != (p2, s2) and p2 - s2 >= p1 - s1 and s2 >= s1
    return wide in _WIDENINGS.get(narrow, set())


def delta_type_name(dtype: pl.DataType) -> str:
    """A Polars type by its Delta name (decimal(p,s), long, ...), else as Polars names it."""
    if isinstance(dtype, pl.Decimal):
        return f"decimal({dtype.precision},{dtype.scale})"
    return next((k for k, v in _PRIMITIVE_TO_POLARS.items() if v == dtype), str(dtype))
