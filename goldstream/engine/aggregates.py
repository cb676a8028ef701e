"""A query's aggregate list computed together, and the Gold frame schema it produces.

Each function is declared once in goldstream.functions; this only applies a query's
functions side by side: every aggregate's state over rows (`update`) and over state
rows (`merge`) in one group-by each, then the aggregates finalized and the projections
evaluated in declaration order.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from goldstream.columns import WINDOW_END, WINDOW_START
from goldstream.config import QuerySpec
from goldstream.functions.aggregate import AggregateFunction
from goldstream.functions.base import Function
from goldstream.functions.projection import Projection
from goldstream.functions.registry import build

WINDOW_BOUND = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class AggregateSet:
    """All output columns of a query, in declaration order."""

    functions: tuple[Function, ...]

    @classmethod
    def for_query(cls, query: QuerySpec, input_schema: dict[str, pl.DataType] | None = None) -> AggregateSet:
        """The query's functions, typed by Silver's column types as read (`input_schema`):
        a decimal column's sum keeps its exact type, for one."""
        return cls(tuple(build(a).typed(input_schema or {}) for a in query.aggregates))

    @property
    def aggregates(self) -> list[AggregateFunction]:
        return [f for f in self.functions if isinstance(f, AggregateFunction)]

    @property
    def projections(self) -> list[Projection]:
        return [f for f in self.functions if isinstance(f, Projection)]

    def state_fields(self) -> list[str]:
        return [f for a in self.aggregates for f in a.state_fields()]

    def update(self) -> list[pl.Expr]:
        return [e for a in self.aggregates for e in a.update()]

    def merge(self, frame: pl.DataFrame, group: list[str], *extra: pl.Expr) -> pl.DataFrame:
        """State rows → one state row per `group`, with `extra` aggregates alongside."""
        inputs = [e for a in self.aggregates for e in a.merge_inputs(group)]
        if inputs:
            frame = frame.with_columns(inputs)
        return frame.group_by(group).agg(*(e for a in self.aggregates for e in a.merge()), *extra)

    def finalize(self, state: pl.DataFrame, input_schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Merged state → output columns, each cast to its Gold type."""
        frame = state.with_columns(a.finalize().cast(a.return_type(input_schema)) for a in self.aggregates)
        for p in self.projections:
            frame = frame.with_columns(p.evaluate().cast(p.return_type(input_schema)))
        return frame

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.functions]

    def output_schema(self, input_schema: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
        return {f.name: f.return_type(input_schema) for f in self.functions}


def gold_frame_schema(query: QuerySpec, input_schema: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
    """window_start, window_end (UTC µs), the keys (Silver's types), the outputs: the one
    derivation behind both the Gold table's schema and the engine's frames. A SQL query's
    are its SELECT list's names and Spark types."""
    if query.sql_query is not None:
        from goldstream.sql.rows import SqlRows
        return dict(SqlRows.build(query, input_schema).compiled.gold_types)
    schema: dict[str, pl.DataType] = {WINDOW_START: WINDOW_BOUND, WINDOW_END: WINDOW_BOUND}
    schema.update({k: input_schema.get(k, pl.String()) for k in query.keys})
    schema.update(AggregateSet.for_query(query, input_schema).output_schema(input_schema))
    return schema
