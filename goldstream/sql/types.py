"""Spark SQL's data types as goldstream's SQL translation needs them: which Polars type
holds each, and Spark's rules for the type of an arithmetic result (numeric widening,
decimal precision and scale, `/` always fractional)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

MAX_PRECISION = 38
MIN_ADJUSTED_SCALE = 6  # Spark's DecimalType.MINIMUM_ADJUSTED_SCALE


@dataclass(frozen=True)
class SType:
    """A Spark type: `name` is Spark's simple name (int, bigint, double, decimal, ...)."""

    name: str
    precision: int = 0
    scale: int = 0

    def __str__(self) -> str:
        return f"decimal({self.precision},{self.scale})" if self.name == "decimal" else self.name

    @property
    def is_integral(self) -> bool:
        return self.name in INTEGRAL_RANK

    @property
    def is_fractional(self) -> bool:
        return self.name in ("float", "double")

    @property
    def is_numeric(self) -> bool:
        return self.is_integral or self.is_fractional or self.name == "decimal"

    @property
    def is_temporal(self) -> bool:
        return self.name in ("timestamp", "date")

    def polars(self) -> pl.DataType:
        if self.name == "decimal":
            return pl.Decimal(self.precision, self.scale)
        return _POLARS[self.name]


BOOLEAN, STRING, NULL = SType("boolean"), SType("string"), SType("void")
TINYINT, SMALLINT, INT, BIGINT = SType("tinyint"), SType("smallint"), SType("int"), SType("bigint")
FLOAT, DOUBLE = SType("float"), SType("double")
TIMESTAMP, DATE = SType("timestamp"), SType("date")

INTEGRAL_RANK = {"tinyint": 0, "smallint": 1, "int": 2, "bigint": 3}
# The decimal an integral type widens to when it meets a decimal (Spark's forType).
_INTEGRAL_DECIMAL = {"tinyint": 3, "smallint": 5, "int": 10, "bigint": 20}
_POLARS: dict[str, pl.DataType] = {
    "boolean": pl.Boolean(), "string": pl.String(), "void": pl.Null(),
    "tinyint": pl.Int8(), "smallint": pl.Int16(), "int": pl.Int32(), "bigint": pl.Int64(),
    "float": pl.Float32(), "double": pl.Float64(),
    "timestamp": pl.Datetime("us", "UTC"), "date": pl.Date(), "binary": pl.Binary(),
    "timestamp_ntz": pl.Datetime("us"),
}
INTEGER_BOUNDS = {"tinyint": (-2**7, 2**7 - 1), "smallint": (-2**15, 2**15 - 1),
                  "int": (-2**31, 2**31 - 1), "bigint": (-2**63, 2**63 - 1)}


def decimal(precision: int, scale: int) -> SType:
    """Spark's DecimalType.bounded."""
    return SType("decimal", min(precision, MAX_PRECISION), min(scale, MAX_PRECISION))


def adjusted_decimal(precision: int, scale: int) -> SType:
    """Spark's DecimalType.adjustPrecisionScale (allowPrecisionLoss, the default): a result
    wider than 38 digits keeps its integral digits and gives up scale, down to 6."""
    if precision <= MAX_PRECISION:
        return SType("decimal", precision, scale)
    int_digits = precision - scale
    min_scale = min(scale, MIN_ADJUSTED_SCALE)
    return SType("decimal", MAX_PRECISION, max(MAX_PRECISION - int_digits, min_scale))


def from_polars(dtype: pl.DataType) -> SType:
    """The Spark type of a column Polars reads as `dtype` (decimals keep their shape)."""
    if isinstance(dtype, pl.Decimal):
        return SType("decimal", dtype.precision or MAX_PRECISION, dtype.scale or 0)
    if isinstance(dtype, pl.Datetime):
        return TIMESTAMP if dtype.time_zone else SType("timestamp_ntz")
    for name, pt in _POLARS.items():
        if pt == dtype:
            return SType(name)
    if dtype in (pl.UInt8(), pl.UInt16()):
        return INT
    if dtype in (pl.UInt32(),):
        return BIGINT
    return SType(str(dtype).lower())


def as_decimal(t: SType) -> SType:
    if t.name == "decimal":
        return t
    return SType("decimal", _INTEGRAL_DECIMAL[t.name], 0)


def wider_numeric(a: SType, b: SType) -> SType:
    """The type two numeric operands are brought to (Spark's numeric precedence: an
    integral widens to the other integral, anything with a float/double is double — float
    with float stays float — and a decimal with an integral is a decimal that holds both)."""
    if a.name == "void":
        return b
    if b.name == "void":
        return a
    if a.is_fractional or b.is_fractional:
        return DOUBLE if {"double", "decimal"} & {a.name, b.name} else FLOAT
    if a.name == "decimal" or b.name == "decimal":
        x, y = as_decimal(a), as_decimal(b)
        scale = max(x.scale, y.scale)
        return decimal(max(x.precision - x.scale, y.precision - y.scale) + scale, scale)
    return a if INTEGRAL_RANK[a.name] >= INTEGRAL_RANK[b.name] else b


def arithmetic_type(op: str, a: SType, b: SType) -> SType:
    """Result type of `a op b` for + - * / % over numeric operands (Spark 4)."""
    if op == "/":
        if a.name == "decimal" or b.name == "decimal":
            if a.is_fractional or b.is_fractional:
                return DOUBLE
            x, y = as_decimal(a), as_decimal(b)
            scale = max(MIN_ADJUSTED_SCALE, x.scale + y.precision + 1)
            return adjusted_decimal(x.precision - x.scale + y.scale + scale, scale)
        return DOUBLE
    common = wider_numeric(a, b)
    if common.name != "decimal":
        return common
    x, y = as_decimal(a), as_decimal(b)
    if op in "+-":
        scale = max(x.scale, y.scale)
        return adjusted_decimal(max(x.precision - x.scale, y.precision - y.scale) + scale + 1, scale)
    if op == "*":
        return adjusted_decimal(x.precision + y.precision + 1, x.scale + y.scale)
    # %: Spark's Remainder on decimals
    scale = max(x.scale, y.scale)
    return adjusted_decimal(min(x.precision - x.scale, y.precision - y.scale) + scale, scale)
