"""The Gold table's schema, derived from the query and Silver's column types."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from goldstream.config import QuerySpec
from goldstream.engine.aggregates import gold_frame_schema
from goldstream.source.schema import ReadPlan


def gold_schema(query: QuerySpec, plan: ReadPlan) -> pa.Schema:
    empty = pl.DataFrame(schema=gold_frame_schema(query, plan.polars_schema()))
    return empty.to_arrow(compat_level=pl.CompatLevel.oldest()).schema
