"""Aggregates that need the values themselves, not a few numbers: an exact distinct count
and exact percentiles. Their state is a list column per group (the distinct values, or
the sorted values), built and merged by Polars' list and group-by kernels, so neither
folding rows into panes nor assembling windows runs Python per value. State grows with
the number of (distinct) values a pane holds, which is the price of being exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from goldstream.functions.aggregate import AggregateFunction
from goldstream.functions.base import ANY_TYPE, DECIMAL, NUMERIC, Arguments, NoSparkEquivalent, sql_column, sql_double


@dataclass(frozen=True)
class CountDistinct(AggregateFunction):
    """Spark's count(DISTINCT column), exactly: nulls are not counted, all NaNs are one
    value and -0.0 is 0.0 (Spark normalises floats before grouping; so does Polars'
    hashing). State is the list of distinct values seen."""

    fn = "count_distinct"
    state = ("values",)

    column: str

    def silver_inputs(self) -> dict[str, frozenset[str]]:
        return {self.column: ANY_TYPE}

    def update(self) -> list[pl.Expr]:
        return [self.values(self.column).drop_nulls().unique().alias(self.state_field("values"))]

    def merge(self) -> list[pl.Expr]:
        return [self.state_col("values").explode().drop_nulls().unique()]

    def finalize(self) -> pl.Expr:
        return self.state_col("values").list.len().cast(pl.Int64).alias(self.name)

    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return pl.Int64()

    def spark_call(self) -> str:
        approximate = self.spark_filtered(f"approx_count_distinct({sql_column(self.column)})")
        raise NoSparkEquivalent(
            f"aggregate {self.name!r}: Spark Structured Streaming does not support count(DISTINCT ...) "
            f"(distinct aggregations are refused on streaming DataFrames); its closest form is "
            f"{approximate}, a HyperLogLog++ estimate (about 5% relative standard deviation by default), "
            "not the exact count goldstream computes", approximate)


@dataclass(frozen=True)
class Percentile(AggregateFunction):
    """Spark's exact `percentile(column, p)`: nulls ignored, values sorted with NaN above
    every number, and the value at position p·(n−1) interpolated linearly between its two
    neighbours with Spark 4.3's formula low + (pos − lower)·(high − low) (a neighbour
    equal to the other is returned as is). Null over no value. State is the
    sorted list of values, in double."""

    fn = "percentile"
    state = ("sorted",)

    column: str
    p: float

    @classmethod
    def check_values(cls, args: Arguments) -> None:
        if args.p is None or not (isinstance(args.p, (int, float)) and not isinstance(args.p, bool)) \
                or not math.isfinite(args.p) or not 0.0 <= args.p <= 1.0:
            raise ValueError(f"aggregate {args.name!r}: percentile needs 'p', a number between 0.0 and 1.0 "
                             f"(0.9 for the 90th percentile), got {args.p!r}")

    def silver_inputs(self) -> dict[str, frozenset[str]]:
        return {self.column: NUMERIC | {DECIMAL}}

    def update(self) -> list[pl.Expr]:
        values = self.values(self.column).cast(pl.Float64).drop_nulls().sort()
        return [values.alias(self.state_field("sorted"))]

    def merge(self) -> list[pl.Expr]:
        return [self.state_col("sorted").explode().drop_nulls().sort()]

    def finalize(self) -> pl.Expr:
        values = self.state_col("sorted")
        position = (values.list.len() - 1).cast(pl.Float64) * self.p
        lower, higher = position.floor(), position.ceil()
        low = values.list.get(lower.cast(pl.Int64), null_on_oob=True)
        high = values.list.get(higher.cast(pl.Int64), null_on_oob=True)
        interpolated = low + (position - lower) * (high - low)
        same = (lower == higher) | (low == high)
        return pl.when(values.list.len() > 0).then(
            pl.when(same).then(low).otherwise(interpolated)).alias(self.name)

    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return pl.Float64()

    def spark_call(self) -> str:
        return f"percentile({sql_double(self.column)}, {float(self.p)!r}D)"


@dataclass(frozen=True)
class Median(Percentile):
    """Spark's median(column): percentile(column, 0.5)."""

    fn = "median"

    p: float = 0.5

    @classmethod
    def arguments(cls) -> tuple[str, ...]:
        return tuple(a for a in super().arguments() if a != "p")

    @classmethod
    def check_values(cls, args: Arguments) -> None:
        """No argument to check: p is fixed."""

    def spark_call(self) -> str:
        return f"median({sql_double(self.column)})"
