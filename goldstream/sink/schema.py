"""The Gold table's schema, derived from the query and Silver's column types."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from goldstream.config import QuerySpec
from goldstream.engine.aggregates import AggregateSet
from goldstream.source.schema import ReadPlan


def gold_frame_schema(query: QuerySpec, plan: ReadPlan) -> dict[str, pl.DataType]:
    """window_start, window_end (UTC µs), the keys (Silver's types), the aggregates."""
    silver = plan.polars_schema()
    schema: dict[str, pl.DataType] = {
        "window_start": pl.Datetime("us", "UTC"),
        "window_end": pl.Datetime("us", "UTC"),
    }
    schema.update({k: silver[k] for k in query.keys})
    schema.update(AggregateSet.for_query(query).output_schema(silver))
    return schema


def gold_schema(query: QuerySpec, plan: ReadPlan) -> pa.Schema:
    empty = pl.DataFrame(schema=gold_frame_schema(query, plan))
    return empty.to_arrow(compat_level=pl.CompatLevel.oldest()).schema
