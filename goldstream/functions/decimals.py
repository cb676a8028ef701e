"""Spark's decimal arithmetic for the aggregates of a decimal column.

Spark keeps decimals exact and types every result by fixed rules (DecimalPrecision,
Sum.scala, Average.scala): sum is decimal(min(38, p+10), s); avg is that sum divided by
the count as decimal(20,0), typed by the division rule with precision loss allowed (the
default), rounded HALF_UP to that division's scale, then cast (HALF_UP) to
decimal(min(38, p+4), min(38, s+4)). A sum that needs more digits than its type is an
overflow: Spark 4 (ANSI mode, its default) fails the query, and so does goldstream.

The state of a decimal sum is Polars' own exact Decimal(38, s) sum (Polars raises when a
sum leaves 38 digits); the final division runs in Python's integers, on finalized rows
only (one per window and key), which keeps it exact and cheap.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from goldstream.errors import GoldstreamError

MAX_PRECISION = 38
MINIMUM_ADJUSTED_SCALE = 6  # Spark's DecimalType.MINIMUM_ADJUSTED_SCALE
LONG_DECIMAL = (20, 0)  # Spark's DecimalType.LongDecimal: a count as a decimal


class DecimalOverflow(GoldstreamError):
    """A decimal aggregate's exact result does not fit its Spark type (ANSI: an error)."""

    exit_code = 2


def is_decimal(dtype: pl.DataType | None) -> bool:
    return isinstance(dtype, pl.Decimal)


def precision_scale(dtype: pl.DataType) -> tuple[int, int]:
    assert isinstance(dtype, pl.Decimal) and dtype.precision is not None
    return int(dtype.precision), int(dtype.scale)


def bounded(precision: int, scale: int) -> tuple[int, int]:
    """Spark's DecimalType.bounded."""
    return min(precision, MAX_PRECISION), min(scale, MAX_PRECISION)


def adjust_precision_scale(precision: int, scale: int) -> tuple[int, int]:
    """Spark's DecimalType.adjustPrecisionScale: a result wider than 38 digits keeps its
    integer digits and gives up scale, down to at least min(scale, 6)."""
    if precision <= MAX_PRECISION:
        return precision, scale
    int_digits = precision - scale
    return MAX_PRECISION, max(MAX_PRECISION - int_digits, min(scale, MINIMUM_ADJUSTED_SCALE))


def divide_type(p1: int, s1: int, p2: int, s2: int) -> tuple[int, int]:
    """decimal(p1,s1) / decimal(p2,s2): Spark's Divide result type (precision loss allowed)."""
    scale = max(MINIMUM_ADJUSTED_SCALE, s1 + p2 + 1)
    return adjust_precision_scale(p1 - s1 + s2 + scale, scale)


def sum_type(p: int, s: int) -> tuple[int, int]:
    return bounded(p + 10, s)


def avg_type(p: int, s: int) -> tuple[int, int]:
    return bounded(p + 4, s + 4)


def _round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to an integer, ties away from zero (HALF_UP)."""
    q, r = divmod(abs(numerator), denominator)
    q += 2 * r >= denominator
    return -q if numerator < 0 else q


def _unscaled(value: Decimal, scale: int) -> int:
    """The integer value·10^scale, exactly (Decimal arithmetic would round to 28 digits)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int) and exponent + scale >= 0
    magnitude = int("".join(map(str, digits)) or "0") * 10 ** (exponent + scale)
    return -magnitude if sign else magnitude


def _scaled(unscaled: int, scale: int) -> Decimal:
    """unscaled·10^-scale as a Decimal, exactly."""
    return Decimal(f"{unscaled}E-{scale}")


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
                    f"sum(decimal({p},{s})) (an arithmetic overflow: Spark 4 fails the query too). Widen "
                    "nothing in place: aggregate a narrower range, or cast the column in Silver to a decimal "
                    "with more integer digits, and start the query afresh under a new name or gold_path.")
            out.append(row["sum"])
        return pl.Series(out, dtype=pl.Decimal(precision, s))

    return pl.struct(total.alias("sum"), count.alias("n")).map_batches(
        finish, return_dtype=pl.Decimal(precision, s))


def average(total: pl.Expr, count: pl.Expr, input_type: pl.DataType, what: str) -> pl.Expr:
    """Spark's avg(decimal(p,s)) from the exact sum and the count: sum / count as Spark's
    Divide computes it, then cast to decimal(min(38,p+4), min(38,s+4)); null over no value."""
    p, s = precision_scale(input_type)
    sp, ss = sum_type(p, s)
    _, div_scale = divide_type(sp, ss, *LONG_DECIMAL)
    rp, rs = avg_type(p, s)
    total_checked = checked_sum(total, count, input_type, what)

    def finish(rows: pl.Series) -> pl.Series:
        out = []
        for row in rows.to_list():
            if row["sum"] is None:
                out.append(None)
                continue
            # sum / n at the division's scale, HALF_UP: unscaled(sum)·10^(div_scale−s) / n
            shift = div_scale - ss
            num, den = _unscaled(row["sum"], ss), row["n"]
            q = _round_half_up(num * 10 ** shift, den) if shift >= 0 else _round_half_up(num, den * 10 ** -shift)
            # then cast to the result scale, HALF_UP again
            q = q * 10 ** (rs - div_scale) if rs >= div_scale else _round_half_up(q, 10 ** (div_scale - rs))
            if not _fits(q, rp):
                raise DecimalOverflow(
                    f"{what}: the average {_scaled(q, rs)} does not fit Spark's type decimal({rp},{rs}) for "
                    f"avg(decimal({p},{s})) (an arithmetic overflow: Spark 4 fails the query too). Cast the "
                    "column in Silver to a decimal with fewer decimal places, and start the query afresh "
                    "under a new name or gold_path.")
            out.append(_scaled(q, rs))
        return pl.Series(out, dtype=pl.Decimal(rp, rs))

    return pl.struct(total_checked.alias("sum"), count.alias("n")).map_batches(
        finish, return_dtype=pl.Decimal(rp, rs))
