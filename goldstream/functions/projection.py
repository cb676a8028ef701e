"""Projections: output columns computed from other outputs of the same window, after
the aggregates are finalized. They keep no state, so panes and merges never see them."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import polars as pl

from goldstream.functions.base import Arguments, Function, sql_double


@dataclass(frozen=True)
class Projection(Function):
    """An expression over finalized output columns (`finalized_inputs()`), evaluated once
    per emitted window, in declaration order (so it may use an earlier projection)."""

    @abstractmethod
    def evaluate(self) -> pl.Expr:
        """Its output column `name`, of `return_type()`, from the finalized columns."""


@dataclass(frozen=True)
class Ratio(Projection):
    """(Σ numerators) / denominator in double, a null numerator counting as 0; null when
    the denominator is zero or null."""

    fn = "ratio"

    numerator: tuple[str, ...]
    denominator: str

    @classmethod
    def check_values(cls, args: Arguments) -> None:
        if not args.numerator or not args.denominator:
            raise ValueError(f"aggregate {args.name!r}: ratio needs 'numerator' (a list) and 'denominator'")

    def finalized_inputs(self) -> tuple[str, ...]:
        return (*self.numerator, self.denominator)

    def evaluate(self) -> pl.Expr:
        num = pl.sum_horizontal([pl.col(c).cast(pl.Float64) for c in self.numerator])
        den = pl.col(self.denominator).cast(pl.Float64)
        return pl.when(den != 0).then(num / den).alias(self.name)

    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return pl.Float64()

    def spark_sql(self) -> str:
        num = " + ".join(f"coalesce({sql_double(c)}, 0D)" for c in self.numerator)
        den = sql_double(self.denominator)
        return f"CASE WHEN {den} != 0 THEN ({num}) / {den} END"
