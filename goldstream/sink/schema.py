"""The Gold table's schema, derived from the query and Silver's column types.

Schemas are Polars schemas here; Delta sees them through the Arrow C interface (arro3,
which deltalake itself ships), so the commit path never imports pyarrow and numpy
(~0.15 s of a process's start). Tables are compared by their Delta column types, the
types a Delta reader (Spark included) sees.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from goldstream.config import QuerySpec
from goldstream.engine.aggregates import gold_frame_schema


def gold_schema(query: QuerySpec, input_schema: dict[str, pl.DataType]) -> pl.Schema:
    return pl.Schema(gold_frame_schema(query, input_schema))


def arrow_schema(schema: pl.Schema | dict[str, pl.DataType]) -> Any:
    """`schema` as an Arrow schema deltalake takes (an arro3 Schema)."""
    from arro3.core import Table

    return Table.from_arrow(pl.DataFrame(schema=schema)).schema


def table_schema(delta_schema: Any) -> pl.Schema:
    """A Delta table's schema (`DeltaTable.schema()`) as Polars types."""
    from arro3.core import Table

    return pl.DataFrame(Table.from_batches([], schema=delta_schema.to_arrow())).schema


def delta_columns(schema: pl.Schema | dict[str, pl.DataType] | Any) -> list[tuple[str, str]]:
    """(name, Delta type) of each column of a Polars schema or a Delta schema, as Delta
    names types: long, double, timestamp, string, decimal(27,2), array<double>..."""
    from deltalake import Schema

    if not isinstance(schema, Schema):
        schema = Schema.from_arrow(arrow_schema(schema))
    return [(f.name, _type_name(f.type)) for f in schema.fields]


def _type_name(t: Any) -> str:
    kind = type(t).__name__
    if kind == "PrimitiveType":
        return str(t.type)
    if kind == "ArrayType":
        return f"array<{_type_name(t.element_type)}>"
    if kind == "MapType":
        return f"map<{_type_name(t.key_type)},{_type_name(t.value_type)}>"
    if kind == "StructType":
        return "struct<" + ",".join(f"{f.name}:{_type_name(f.type)}" for f in t.fields) + ">"
    return str(t)
