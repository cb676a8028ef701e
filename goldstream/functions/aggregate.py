"""Aggregate functions: state over rows → merge → finalize, as Polars expressions.

Semantics are Spark SQL's: nulls are ignored, NaN is greater than every number, counts
are 64-bit, min/max keep the input type, stddev is the sample deviation merged with
Chan et al.'s parallel formula instead of a raw sum of squares.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import polars as pl

from goldstream.functions.base import (
    ANY_TYPE,
    DECIMAL,
    NUMERIC,
    ORDERED,
    TEMPORAL,
    Arguments,
    Function,
    sql_column,
    sql_double,
    sql_literal,
)
from goldstream.functions.decimals import average, avg_type, checked_sum, is_decimal, precision_scale, sum_type


def where_column(aggregate: str) -> str:
    """The row column holding an aggregate's `where` condition."""
    return f"__where.{aggregate}"


@dataclass(frozen=True)
class AggregateFunction(Function):
    """An aggregate kept as a few state fields, so that it can be computed in parts.

    The contract, for every aggregate function:
    - `update()` runs inside a group-by over Silver rows and yields exactly `state_fields()`;
    - `merge()` runs inside a group-by over state rows and yields exactly `state_fields()`
      again; merging is associative, so state can be merged in any grouping: a batch
      folded into the state, a window assembled from its panes. Its expressions are
      plain aggregates of columns (no group value broadcast back to the rows: Polars
      evaluates those group by group, ~10x slower with a million groups); a function
      that needs a per-group value declares it in `merge_inputs()`, computed before;
    - `finalize()` runs over merged state and yields the column `name`, of `return_type()`.
    None of them knows the window kind: tumbling, sliding and session windows are served by
    the same expressions, through panes or sessions.

    `where` (any aggregate, Spark's `agg(...) FILTER (WHERE ...)`) restricts the rows it
    takes in: `update()` reads its inputs through `values()` and counts rows with
    `rows()`, which apply it.
    """

    state: ClassVar[tuple[str, ...]]  # short names of its state fields

    where: str | None = field(default=None, kw_only=True)

    def values(self, column: str) -> pl.Expr:
        """A Silver column's values in the rows it takes in (those passing `where`)."""
        if self.where is None:
            return pl.col(column)
        return pl.col(column).filter(self.where_expr())

    def rows(self) -> pl.Expr:
        """How many rows it takes in, as Int64."""
        if self.where is None:
            return pl.len().cast(pl.Int64)
        return self.where_expr().fill_null(False).sum().cast(pl.Int64)

    def where_expr(self) -> pl.Expr:
        """Its `where`, computed before the row pass as a boolean column (sql/rows.py)."""
        assert self.where is not None
        return pl.col(where_column(self.name))

    def where_columns(self) -> tuple[str, ...]:
        """Silver columns its `where` reads (their types are checked against the condition)."""
        if self.where is None:
            return ()
        from goldstream.sql.condition import Condition
        return Condition.parse(self.where).columns

    def spark_sql(self) -> str:
        return self.spark_filtered(self.spark_call())

    def spark_filtered(self, call: str) -> str:
        """`call` restricted to the rows passing `where`, in the condition's canonical form."""
        from goldstream.sql.condition import spark_condition  # sqlglot: only when exporting
        return call if self.where is None else f"{call} FILTER (WHERE {spark_condition(self.where)})"

    @abstractmethod
    def spark_call(self) -> str:
        """Its Spark SQL aggregate call over the rows it takes in."""

    def state_field(self, part: str) -> str:
        """The frame column holding one part of its state: `<name>__<part>`."""
        return f"{self.name}__{part}"

    def state_fields(self) -> list[str]:
        return [self.state_field(part) for part in self.state]

    def state_col(self, part: str) -> pl.Expr:
        return pl.col(self.state_field(part))

    @abstractmethod
    def update(self) -> list[pl.Expr]:
        """Its state over the rows of one group."""

    @abstractmethod
    def merge(self) -> list[pl.Expr]:
        """Its state over the state rows of one group."""

    def merge_inputs(self, group: list[str]) -> list[pl.Expr]:
        """Columns added to the state rows before a merge group-by over `group` (window
        expressions over it), for a merge that needs a per-group value. None by default."""
        return []

    @abstractmethod
    def finalize(self) -> pl.Expr:
        """Its output column from merged state."""


@dataclass(frozen=True)
class Count(AggregateFunction):
    """count(*): every row that reached the window, whatever its nulls."""

    fn = "count"
    state = ("n",)

    def update(self) -> list[pl.Expr]:
        return [self.rows().alias(self.state_field("n"))]

    def merge(self) -> list[pl.Expr]:
        return [self.state_col("n").sum()]

    def finalize(self) -> pl.Expr:
        return self.state_col("n").alias(self.name)

    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return pl.Int64()

    def spark_call(self) -> str:
        return "count(*)"


@dataclass(frozen=True)
class CountIf(Count):
    """Rows whose condition is true; a null value (a null condition) counts as false.
    The condition is `column == equals`, or `column > above OR column < below`
    (strict, either bound optional), where NaN is above every bound; or, without a
    column, the aggregate's `where` alone."""

    fn = "count_if"

    column: str | None = None
    equals: bool | float | str | None = None
    above: float | None = None
    below: float | None = None

    @classmethod
    def check_values(cls, args: Arguments) -> None:
        has_range = args.above is not None or args.below is not None
        if args.column is None:
            if args.equals is not None or has_range or not args.where:
                raise ValueError(f"aggregate {args.name!r}: count_if needs either a 'where' condition, or a "
                                 "'column' with 'equals' or 'above'/'below'")
        elif (args.equals is None) == (not has_range):
            raise ValueError(f"aggregate {args.name!r}: count_if needs either 'equals' or 'above'/'below' (not both)")

    def silver_inputs(self) -> dict[str, frozenset[str]]:
        if self.column is None:
            return {}
        if isinstance(self.equals, bool):
            return {self.column: frozenset({"boolean"})}
        if isinstance(self.equals, str):
            return {self.column: frozenset({"string"})}
        return {self.column: NUMERIC if self.equals is not None else NUMERIC | {DECIMAL}}

    def condition(self) -> pl.Expr:
        assert self.column is not None
        col = pl.col(self.column)
        if self.equals is not None:
            return col == pl.lit(self.equals)
        x = col.cast(pl.Float64)
        terms = []
        if self.above is not None:
            terms.append(x.is_nan() | (x > self.above))
        if self.below is not None:
            terms.append(~x.is_nan() & (x < self.below))
        return pl.any_horizontal(terms)

    def update(self) -> list[pl.Expr]:
        if self.column is None:
            return super().update()
        condition = self.condition() if self.where is None else self.condition() & self.where_expr()
        return [condition.fill_null(False).sum().cast(pl.Int64).alias(self.state_field("n"))]

    def spark_call(self) -> str:
        if self.column is None:
            return super().spark_call()
        col = sql_column(self.column)
        if self.equals is not None:
            condition = f"{col} = {sql_literal(self.equals)}"
        else:  # Spark orders NaN above every number, as the condition requires
            terms = [] if self.above is None else [f"{col} > {sql_literal(self.above)}"]
            terms += [] if self.below is None else [f"{col} < {sql_literal(self.below)}"]
            condition = " OR ".join(terms)
        return f"count(CASE WHEN {condition} THEN 1 END)"


@dataclass(frozen=True)
class ColumnAggregate(AggregateFunction):
    """An aggregate of one numeric Silver column."""

    column: str

    def silver_inputs(self) -> dict[str, frozenset[str]]:
        return {self.column: NUMERIC | {DECIMAL}}

    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return pl.Float64()


@dataclass(frozen=True)
class Sum(ColumnAggregate):
    """Sum of non-null values, null when there are none (Spark's sum): in double for a
    numeric column; for a decimal(p,s) column exact, as Spark's decimal(min(38,p+10),s)
    (state: Polars' exact Decimal(38,s) sum; an overflow stops the query, as in ANSI Spark)."""

    fn = "sum"
    state = ("sum", "n")

    def decimal_input(self) -> bool:
        return is_decimal(self.silver_type(self.column))

    def update(self) -> list[pl.Expr]:
        values = self.values(self.column)
        return [
            (values if self.decimal_input() else values.cast(pl.Float64)).sum().alias(self.state_field("sum")),
            values.count().cast(pl.Int64).alias(self.state_field("n")),
        ]

    def merge(self) -> list[pl.Expr]:
        return [self.state_col("sum").sum(), self.state_col("n").sum()]

    def finalize(self) -> pl.Expr:
        total, n = self.state_col("sum"), self.state_col("n")
        if self.decimal_input():
            return checked_sum(total, n, self.silver_type(self.column), self._what()).alias(self.name)
        return pl.when(n > 0).then(total).alias(self.name)

    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        dtype = input_schema.get(self.column)
        return pl.Decimal(*sum_type(*precision_scale(dtype))) if is_decimal(dtype) else pl.Float64()

    def _what(self) -> str:
        return f"aggregate {self.name!r} ({self.fn} of {self.column!r})"

    def spark_call(self) -> str:
        return f"sum({self._spark_input()})"

    def _spark_input(self) -> str:
        """A decimal column is aggregated as it is (exactly); others as double."""
        return sql_column(self.column) if self.decimal_input() else sql_double(self.column)


@dataclass(frozen=True)
class Avg(Sum):
    """Mean of non-null values; NaN propagates through the sum. A decimal(p,s) column's is
    Spark's exact decimal(min(38,p+4), min(38,s+4)) (see functions/decimals.py)."""

    fn = "avg"

    def finalize(self) -> pl.Expr:
        total, n = self.state_col("sum"), self.state_col("n")
        if self.decimal_input():
            return average(total, n, self.silver_type(self.column), self._what()).alias(self.name)
        return pl.when(n > 0).then(total / n).alias(self.name)

    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        dtype = input_schema.get(self.column)
        return pl.Decimal(*avg_type(*precision_scale(dtype))) if is_decimal(dtype) else pl.Float64()

    def spark_call(self) -> str:
        return f"avg({self._spark_input()})"


@dataclass(frozen=True)
class Extreme(ColumnAggregate):
    """min or max, in the column's own type (Spark's min/max keep the input type): the
    same reduction folds rows into state and state into windows."""

    reduce: ClassVar[Callable[[pl.Expr], pl.Expr]]

    def silver_inputs(self) -> dict[str, frozenset[str]]:
        return {self.column: NUMERIC | {DECIMAL} | TEMPORAL}

    def update(self) -> list[pl.Expr]:
        return [self.reduce(self.values(self.column)).alias(self.state_field(self.fn))]

    def merge(self) -> list[pl.Expr]:
        return [self.reduce(self.state_col(self.fn))]

    def finalize(self) -> pl.Expr:
        return self.state_col(self.fn).alias(self.name)

    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return input_schema.get(self.column, pl.Float64())

    def spark_call(self) -> str:
        return f"{self.fn}({sql_column(self.column)})"


@dataclass(frozen=True)
class Max(Extreme):
    """Spark's max: NaN, when present, is the maximum (Polars' plain max skips NaN)."""

    fn = "max"
    state = ("max",)
    reduce = staticmethod(pl.Expr.nan_max)


@dataclass(frozen=True)
class Min(Extreme):
    """Spark's min: NaN only when every non-null value is NaN — exactly Polars' min, which
    skips NaN unless nothing else is there, at both the row and the merge level."""

    fn = "min"
    state = ("min",)
    reduce = staticmethod(pl.Expr.min)


@dataclass(frozen=True)
class StddevSamp(ColumnAggregate):
    """Sample standard deviation from (n, mean, M2), Spark's stddev_samp.

    Update takes Polars' own variance (a stable blockwise Welford/Chan, M2 = n·var₀).
    Merge is Chan et al.'s formula M2 = Σ M2ᵢ + Σ nᵢ (meanᵢ − mean)², computed with the
    means shifted by the group's smallest one r (dᵢ = meanᵢ − r, `merge_inputs`):
    M2 = Σ M2ᵢ + Σ nᵢdᵢ² − (Σ nᵢdᵢ)²/n, mean = r + Σ nᵢdᵢ/n, all plain sums. Never
    Σx² − n·mean², which cancels catastrophically: every dᵢ lies within the spread of
    the means, so the subtraction loses only a few ulps of the between-pane term. A
    constant group must yield exactly 0.0, as Spark's update formula does: Polars'
    variance does, but its mean of n copies of c can be off by an ulp, so a group whose
    min equals its max takes that value as its mean (and merged, every dᵢ is then 0).
    Every update expression is a plain group-by aggregate (no per-group broadcast),
    which keeps Polars on its fast vectorised path: this is the hot loop over all
    Silver rows."""

    fn = "stddev"
    state = ("n", "mean", "m2")

    def update(self) -> list[pl.Expr]:
        x = self.values(self.column).cast(pl.Float64)
        n = x.count().cast(pl.Int64)
        lo = x.min()
        mean = pl.when(lo == x.nan_max()).then(lo).otherwise(x.mean())
        return [
            n.alias(self.state_field("n")),
            mean.alias(self.state_field("mean")),
            (x.var(ddof=0) * n).alias(self.state_field("m2")),
        ]

    def merge_inputs(self, group: list[str]) -> list[pl.Expr]:
        return [self.state_col("mean").min().over(group).alias(self.state_field("shift"))]

    def merge(self) -> list[pl.Expr]:
        n_i, m2_i, shift = self.state_col("n"), self.state_col("m2"), self.state_col("shift")
        d_i = self.state_col("mean") - shift
        n = n_i.sum()
        s = (n_i * d_i).sum()
        mean = shift.first() + s / n
        between = ((n_i * d_i * d_i).sum() - s * s / n).clip(lower_bound=0.0)  # >= 0 up to rounding
        m2 = m2_i.sum() + pl.when(n > 0).then(between).otherwise(0.0)
        return [
            n.alias(self.state_field("n")),
            pl.when(n > 0).then(mean).alias(self.state_field("mean")),
            m2.alias(self.state_field("m2")),
        ]

    def finalize(self) -> pl.Expr:
        n = self.state_col("n")
        return pl.when(n >= 2).then((self.state_col("m2") / (n - 1)).sqrt()).alias(self.name)

    def spark_call(self) -> str:
        return f"stddev_samp({sql_double(self.column)})"


@dataclass(frozen=True)
class ExtremeBy(AggregateFunction):
    """Spark's max_by/min_by: `column`'s value in the row where `by` is greatest/least
    (Spark's ordering: NaN above every number; rows with a null `by` are ignored; null
    when every `by` is null).

    Ties are broken deterministically, which Spark does not do (its result depends on the
    order rows reach it): among the rows sharing the extreme `by`, max_by returns the
    greatest `column` value and min_by the least, a null value only if all of them are
    null. State is the pair (extreme `by`, its `column` value); the same pick merges pairs."""

    column: str
    by: str

    descending: ClassVar[bool]
    state = ("by", "value")
    spark_difference = ("among rows sharing the extreme `by`, Spark's pick depends on the order rows reach it; "
                        "goldstream takes the greatest (max_by) or least (min_by) value")

    def silver_inputs(self) -> dict[str, frozenset[str]]:
        return {self.column: ANY_TYPE, self.by: ORDERED} if self.column != self.by else {self.by: ORDERED}

    def _pick(self, value: pl.Expr, by: pl.Expr) -> list[pl.Expr]:
        order = {"descending": [self.descending] * 2, "nulls_last": [True, True]}
        extreme = by.sort_by(by, value, **order).first()
        picked = value.sort_by(by, value, **order).first()
        return [extreme.alias(self.state_field("by")),
                pl.when(extreme.is_not_null()).then(picked).alias(self.state_field("value"))]

    def update(self) -> list[pl.Expr]:
        return self._pick(self.values(self.column), self.values(self.by))

    def merge(self) -> list[pl.Expr]:
        return self._pick(self.state_col("value"), self.state_col("by"))

    def finalize(self) -> pl.Expr:
        return self.state_col("value").alias(self.name)

    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        return input_schema.get(self.column, pl.Float64())

    def spark_call(self) -> str:
        return f"{self.fn}({sql_column(self.column)}, {sql_column(self.by)})"


@dataclass(frozen=True)
class MaxBy(ExtremeBy):
    fn = "max_by"
    descending = True


@dataclass(frozen=True)
class MinBy(ExtremeBy):
    fn = "min_by"
    descending = False
