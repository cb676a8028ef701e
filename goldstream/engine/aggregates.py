"""Each aggregate declared once: partial → merge → finalize, as Polars expressions.

`partial()` runs inside a group-by over Silver rows (one group per key × pane × commit), `merge()`
inside a group-by over partial rows (to fold a new batch into state, and to assemble a
window from its panes), `finalize()` over merged partials. The same three expressions
serve tumbling and sliding windows. Semantics are Spark SQL's (DESIGN §1): nulls are
ignored, NaN is greater than every number, stddev is the sample deviation merged with
Chan et al.'s parallel formula instead of a raw sum of squares.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from goldstream.config import AggregateSpec, QuerySpec


def _f64(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64)


@dataclass(frozen=True)
class Aggregate:
    """Base: `name` is the output column; partial columns are `<name>__<part>`."""

    name: str

    def p(self, part: str) -> str:
        return f"{self.name}__{part}"

    def partial(self) -> list[pl.Expr]:
        return []

    def merge(self) -> list[pl.Expr]:
        return []

    def finalize(self) -> pl.Expr:
        raise NotImplementedError

    def dtype(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return pl.Float64()


@dataclass(frozen=True)
class Count(Aggregate):
    """count(*): every row that reached the window, whatever its nulls."""

    def partial(self) -> list[pl.Expr]:
        return [pl.len().cast(pl.Int64).alias(self.p("n"))]

    def merge(self) -> list[pl.Expr]:
        return [pl.col(self.p("n")).sum().alias(self.p("n"))]

    def finalize(self) -> pl.Expr:
        return pl.col(self.p("n")).alias(self.name)

    def dtype(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return pl.Int64()


@dataclass(frozen=True)
class CountIf(Count):
    """Rows whose condition is true; a null condition counts as false."""

    condition: pl.Expr = pl.lit(False)

    def partial(self) -> list[pl.Expr]:
        return [self.condition.fill_null(False).sum().cast(pl.Int64).alias(self.p("n"))]


@dataclass(frozen=True)
class Sum(Aggregate):
    """Sum of non-null values, null when there are none (Spark's sum)."""

    column: str = ""

    def partial(self) -> list[pl.Expr]:
        return [
            _f64(self.column).sum().alias(self.p("sum")),
            pl.col(self.column).count().cast(pl.Int64).alias(self.p("n")),
        ]

    def merge(self) -> list[pl.Expr]:
        return [pl.col(self.p("sum")).sum(), pl.col(self.p("n")).sum()]

    def finalize(self) -> pl.Expr:
        return pl.when(pl.col(self.p("n")) > 0).then(pl.col(self.p("sum"))).alias(self.name)


@dataclass(frozen=True)
class Avg(Sum):
    """Mean of non-null values; NaN propagates through the sum."""

    def finalize(self) -> pl.Expr:
        n = pl.col(self.p("n"))
        return pl.when(n > 0).then(pl.col(self.p("sum")) / n).alias(self.name)


@dataclass(frozen=True)
class Max(Aggregate):
    """Spark's max: NaN, when present, is the maximum (Polars' plain max skips NaN)."""

    column: str = ""

    def partial(self) -> list[pl.Expr]:
        return [pl.col(self.column).nan_max().alias(self.p("max"))]

    def merge(self) -> list[pl.Expr]:
        return [pl.col(self.p("max")).nan_max()]

    def finalize(self) -> pl.Expr:
        return pl.col(self.p("max")).alias(self.name)

    def dtype(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return input_schema.get(self.column, pl.Float64())  # Spark: min/max keep the input type


@dataclass(frozen=True)
class Min(Aggregate):
    """Spark's min: NaN only when every non-null value is NaN — exactly Polars' min,
    which skips NaN unless nothing else is there, at both the row and the merge level."""

    column: str = ""

    def partial(self) -> list[pl.Expr]:
        return [pl.col(self.column).min().alias(self.p("min"))]

    def merge(self) -> list[pl.Expr]:
        return [pl.col(self.p("min")).min()]

    def finalize(self) -> pl.Expr:
        return pl.col(self.p("min")).alias(self.name)

    def dtype(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return input_schema.get(self.column, pl.Float64())  # Spark: min/max keep the input type


@dataclass(frozen=True)
class StddevSamp(Aggregate):
    """Sample standard deviation from (n, mean, M2), Spark's stddev_samp.

    Partials take Polars' own variance (a stable blockwise Welford/Chan, M2 = n·var₀)
    and panes are merged with Chan et al.'s formula M2 = Σ M2ᵢ + Σ nᵢ (meanᵢ − mean)²,
    never Σx² − n·mean², which cancels catastrophically. A constant group must yield
    exactly 0.0, as Spark's update formula does: Polars' variance does, but its mean
    of n copies of c can be off by an ulp, so a group whose min equals its max takes
    that value as its mean. Every partial expression is a plain group-by aggregate
    (no per-group broadcast), which keeps Polars on its fast vectorised path: this is
    the hot loop over all Silver rows."""

    column: str = ""

    def partial(self) -> list[pl.Expr]:
        x = _f64(self.column)
        n = x.count().cast(pl.Int64)
        lo = x.min()
        mean = pl.when(lo == x.nan_max()).then(lo).otherwise(x.mean())
        return [
            n.alias(self.p("n")),
            mean.alias(self.p("mean")),
            (x.var(ddof=0) * n).alias(self.p("m2")),
        ]

    def merge(self) -> list[pl.Expr]:
        n_i, mean_i, m2_i = pl.col(self.p("n")), pl.col(self.p("mean")), pl.col(self.p("m2"))
        n = n_i.sum()
        m0 = mean_i.drop_nulls().first()
        mean = m0 + (n_i * (mean_i - m0)).sum() / n
        m2 = m2_i.sum() + (n_i * (mean_i - mean) ** 2).sum()
        return [
            n.alias(self.p("n")),
            pl.when(n > 0).then(mean).alias(self.p("mean")),
            m2.alias(self.p("m2")),
        ]

    def finalize(self) -> pl.Expr:
        n = pl.col(self.p("n"))
        return pl.when(n >= 2).then((pl.col(self.p("m2")) / (n - 1)).sqrt()).alias(self.name)


@dataclass(frozen=True)
class Ratio(Aggregate):
    """(Σ numerators) / denominator over already finalized outputs; null on a zero denominator."""

    numerator: tuple[str, ...] = ()
    denominator: str = ""

    def finalize(self) -> pl.Expr:
        num = pl.sum_horizontal([pl.col(c).cast(pl.Float64) for c in self.numerator])
        den = pl.col(self.denominator).cast(pl.Float64)
        return pl.when(den != 0).then(num / den).alias(self.name)


def _condition(spec: AggregateSpec) -> pl.Expr:
    col = pl.col(spec.column or "")
    if spec.equals is not None:
        return col == pl.lit(spec.equals)
    x = col.cast(pl.Float64)
    terms = []
    if spec.above is not None:  # NaN is greater than every number (Spark)
        terms.append(x.is_nan() | (x > spec.above))
    if spec.below is not None:
        terms.append(~x.is_nan() & (x < spec.below))
    return pl.any_horizontal(terms)


def build_aggregate(spec: AggregateSpec) -> Aggregate:
    column = spec.column or ""
    match spec.fn:
        case "count":
            return Count(spec.name)
        case "count_if":
            return CountIf(spec.name, condition=_condition(spec))
        case "sum":
            return Sum(spec.name, column=column)
        case "avg":
            return Avg(spec.name, column=column)
        case "min":
            return Min(spec.name, column=column)
        case "max":
            return Max(spec.name, column=column)
        case "stddev":
            return StddevSamp(spec.name, column=column)
        case "ratio":
            return Ratio(spec.name, numerator=tuple(spec.numerator or ()), denominator=spec.denominator or "")
    raise ValueError(f"unknown aggregate function {spec.fn!r}")  # pragma: no cover - config validates fn


@dataclass(frozen=True)
class AggregateSet:
    """All aggregates of a query, applied together."""

    aggregates: tuple[Aggregate, ...]

    @classmethod
    def for_query(cls, query: QuerySpec) -> AggregateSet:
        return cls(tuple(build_aggregate(a) for a in query.aggregates))

    def partial(self) -> list[pl.Expr]:
        return [e for a in self.aggregates for e in a.partial()]

    def merge(self) -> list[pl.Expr]:
        return [e for a in self.aggregates for e in a.merge()]

    def finalize(self, frame: pl.DataFrame, input_schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Finalize in declaration order, so a ratio can use outputs declared before it."""
        for agg in self.aggregates:
            frame = frame.with_columns(agg.finalize().cast(agg.dtype(input_schema)))
        return frame

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.aggregates]

    def output_schema(self, input_schema: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
        return {a.name: a.dtype(input_schema) for a in self.aggregates}
