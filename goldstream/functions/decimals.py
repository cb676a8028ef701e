"""Spark's decimal arithmetic for the aggregates of a decimal column.

Spark keeps decimals exact and types every result by fixed rules (DecimalPrecision,
Sum.scala, Average.scala): sum is decimal(min(38, p+10), s); avg is that sum divided by
the count (Spark 4's DecimalDivideWithOverflowCheck: 38 significant digits, HALF_UP),
then rounded HALF_UP to decimal(min(38, p+4), min(38, s+4)). A sum or an average that
needs more digits than its type is an overflow: Spark 4 (ANSI mode, its default) fails
the query, and so does goldstream. Checked against Spark 4.3 (docs/semantics.md).

The state of a decimal sum is Polars' own exact Decimal(38, s) sum (Polars raises when a
sum leaves 38 digits); the final check and division run in Python's decimal module, on
finalized rows only (one per window and key), which keeps them exact and cheap.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

import polars as pl

from goldstream.errors import GoldstreamError

MAX_PRECISION = 38


class DecimalOverflow(GoldstreamError):
    """A decimal aggregate's exact result does not fit its Spark type (ANSI: an error).
    Raised inside a Polars expression, which appends its plan to the message: the message
    stays the one written here."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message.split("\n\nThis error occurred")[0]  # Polars re-raises it with its plan

    def __str__(self) -> str:
        return self.message


def is_decimal(dtype: pl.DataType | None) -> bool:
    return isinstance(dtype, pl.Decimal)


def precision_scale(dtype: pl.DataType) -> tuple[int, int]:
    assert isinstance(dtype, pl.Decimal) and dtype.precision is not None
    return int(dtype.precision), int(dtype.scale)


def bounded(precision: int, scale: int) -> tuple[int, int]:
    """Spark's DecimalType.bounded."""
    return min(precision, MAX_PRECISION), min(scale, MAX_PRECISION)


def sum_type(p: int, s: int) -> tuple[int, int]:
    return bounded(p + 10, s)


def avg_type(p: int, s: int) -> tuple[int, int]:
    return bounded(p + 4, s + 4)


def _unscaled(value: Decimal, scale: int) -> int:
    """The integer value·10^scale, exactly (Decimal arithmetic would round to 28 digits)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int) and exponent + scale >= 0
    magnitude = int("".join(map(str, digits)) or "0") * 10 ** (exponent + scale)
    return -magnitude if sign else magnitude


def _fits(unscaled: int, precision: int) -> bool:
    return abs(unscaled) < 10 ** precision


def checked_sum(total: pl.Expr, count: pl.Expr, input_type: pl.DataType, what: str) -> pl.Expr:
    """The sum (null over no value) as Spark's decimal(min(38,p+10), s); an overflow stops."""
    p, s = precision_scale(input_type)
    precision, _ = sum_type(p, s)

    def finish(rows: pl.Series) -> pl.Series:
        out = []
        for row in rows.to_list():
            if not row["n"]:
                out.append(None)
                continue
            if not _fits(_unscaled(row["sum"], s), precision):
                raise DecimalOverflow(
                    f"{what}: the sum {row['sum']} does not fit Spark's type decimal({precision},{s}) for "
                    f"sum(decimal({p},{s})) (an arithmetic overflow: Spark 4 fails the query too). Cast "
                    "the column in Silver to a decimal with more integer digits (fewer decimal places), or sum "
                    "fewer rows per window, and start the query afresh under a new name or gold_path.")
            out.append(row["sum"])
        return pl.Series(out, dtype=pl.Decimal(precision, s))

    return pl.struct(total.alias("sum"), count.alias("n")).map_batches(
        finish, return_dtype=pl.Decimal(precision, s))


def average(total: pl.Expr, count: pl.Expr, input_type: pl.DataType, what: str) -> pl.Expr:
    """Spark's avg(decimal(p,s)) from the exact sum and the count, as its
    DecimalDivideWithOverflowCheck computes it: sum / count rounded HALF_UP to 38
    significant digits (Decimal's division), then HALF_UP to decimal(min(38,p+4),
    min(38,s+4)); null over no value, an error when it does not fit."""
    p, s = precision_scale(input_type)
    rp, rs = avg_type(p, s)
    total_checked = checked_sum(total, count, input_type, what)
    step = Decimal(1).scaleb(-rs)

    def finish(rows: pl.Series) -> pl.Series:
        out = []
        with localcontext() as ctx:
            ctx.rounding = ROUND_HALF_UP
            for row in rows.to_list():
                if row["sum"] is None:
                    out.append(None)
                    continue
                ctx.prec = MAX_PRECISION
                quotient = row["sum"] / Decimal(row["n"])
                ctx.prec = 2 * MAX_PRECISION + 2  # exact from here on
                value = quotient.quantize(step)
                if not _fits(_unscaled(value, rs), rp):
                    raise DecimalOverflow(
                        f"{what}: the average {value} does not fit Spark's type decimal({rp},{rs}) for "
                        f"avg(decimal({p},{s})) (an arithmetic overflow: Spark 4 fails the query too). Cast the "
                        "column in Silver to a decimal with fewer decimal places, and start the query afresh "
                        "under a new name or gold_path.")
                out.append(value)
        return pl.Series(out, dtype=pl.Decimal(rp, rs))

    return pl.struct(total_checked.alias("sum"), count.alias("n")).map_batches(
        finish, return_dtype=pl.Decimal(rp, rs))
