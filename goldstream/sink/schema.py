"""The Gold table's schema, derived from the query and Silver's column types."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from goldstream.config import QuerySpec
from goldstream.engine.aggregates import gold_frame_schema


def gold_schema(query: QuerySpec, input_schema: dict[str, pl.DataType]) -> pa.Schema:
    empty = pl.DataFrame(schema=gold_frame_schema(query, input_schema))
    return empty.to_arrow(compat_level=pl.CompatLevel.oldest()).schema
