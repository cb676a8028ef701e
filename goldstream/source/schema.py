"""Check Silver's Delta schema against what the queries need, and plan the column reads.

Checked at start and again at every commit that changes the table's metadata, before
anything is written: a missing column or an incompatible type is an error naming the
column, the expected and the actual type. Added columns are fine. Column mapping
(`delta.columnMapping.mode` = name/id) is honoured by reading physical column names.
A protocol whose reader features goldstream does not know is refused rather than read
wrongly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
            for col, accepted in build(a).silver_inputs().items():
                need(col, f"aggregate {a.name!r} of query {q.name!r}", set(accepted))
    return req


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
    for col, (why, allowed) in _requirements(queries).items():
        f = fields.get(col)
        if f is None and col in now:
            plans.append(ColumnPlan(col, now[col].physical, now[col].delta_type, now[col].dtype, False))
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
        plans.append(ColumnPlan(col, physical, tname, dtype, col in partition_columns))
    if problems:
        raise SourceError(
            f"Silver schema at {where} does not fit the queries:\n  - " + "\n  - ".join(problems)
            + "\nFix the Silver table or the query definitions (config) and restart; nothing from this "
            "version on was written to Gold."
        )
    return ReadPlan(tuple(plans))
