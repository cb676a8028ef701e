"""What every `fn` of a query's aggregate list declares, and the vocabulary it declares it in.

One class per function says everything the rest of goldstream needs to know about it:
its config arguments (its dataclass fields) and their rules, the Silver columns it reads
with the Delta types it accepts, its Gold type and its Spark SQL form. Config validation,
the read plan, the Gold schema and the engine ask these classes through the registry, so
a new function is one class, not an edit in each of those places. This package never
imports goldstream.config: the config imports it (to know the function names).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import ClassVar, Protocol

import polars as pl

# Delta type names a function may accept for its Silver column.
NUMERIC = frozenset({"long", "integer", "short", "byte", "float", "double"})
DECIMAL = "decimal"  # any precision and scale; read exactly, as Polars' Decimal (see decimals.py)
TEMPORAL = frozenset({"timestamp", "date"})
# Types with Spark's ordering (NaN above every number): what min/max/max_by compare.
ORDERED = NUMERIC | {DECIMAL} | TEMPORAL | {"string"}
# Every primitive type goldstream reads: what a distinct count or a condition may read.
ANY_TYPE = ORDERED | {"boolean", "binary"}


class Arguments(Protocol):
    """One entry of a query's aggregate list as configured (config.AggregateSpec)."""

    name: str
    fn: str
    column: str | None
    equals: bool | float | str | None
    above: float | None
    below: float | None
    numerator: list[str] | None
    denominator: str | None
    where: str | None
    by: str | None
    p: float | None


class NoSparkEquivalent(Exception):
    """Spark Structured Streaming cannot compute the function the same way. `approximate`
    is the closest Spark SQL form (a different result, documented), or None."""

    def __init__(self, message: str, approximate: str | None = None) -> None:
        super().__init__(message)
        self.approximate = approximate


@dataclass(frozen=True)
class Function(ABC):
    """One output column of a query. `name` is the column; the other dataclass fields are
    exactly the config arguments the function takes, so they are declared once."""

    fn: ClassVar[str]  # the config's `fn`
    # What its Spark form computes differently, when that form is Spark's equivalent but
    # not always the same value (`goldstream export spark` notes it in the job).
    spark_difference: ClassVar[str | None] = None

    name: str
    # Silver's column types as read, for a function whose state or result depends on them
    # (a decimal's precision and scale): set by `typed()` once the table's schema is known.
    silver_types: tuple[tuple[str, pl.DataType], ...] = field(default=(), kw_only=True, repr=False,
                                                              metadata={"config": False})

    @classmethod
    def arguments(cls) -> tuple[str, ...]:
        """The config arguments it takes, in declaration order."""
        return tuple(f.name for f in fields(cls) if f.name != "name" and f.metadata.get("config", True))

    @classmethod
    def required_arguments(cls) -> tuple[str, ...]:
        """The config arguments it cannot do without (those without a default)."""
        return tuple(f.name for f in fields(cls) if f.name in cls.arguments()
                     and f.default is MISSING and f.default_factory is MISSING)

    @classmethod
    def check_values(cls, args: Arguments) -> None:
        """Raise ValueError if arguments it takes are missing or contradict each other.
        Whether a 'column' is given, and arguments it does not take, the registry checks."""

    @classmethod
    def from_arguments(cls, args: Arguments) -> Function:
        """Build it from checked arguments (lists become tuples: functions are immutable)."""
        values = {a: getattr(args, a) for a in cls.arguments()}
        return cls(args.name, **{a: tuple(v) if isinstance(v, list) else v for a, v in values.items()})

    def silver_inputs(self) -> dict[str, frozenset[str]]:
        """Silver columns it reads, each with the Delta types it accepts."""
        return {}

    def typed(self, input_schema: dict[str, pl.DataType]) -> Function:
        """The same function, knowing the types its Silver columns are read at."""
        return replace(self, silver_types=tuple((c, input_schema[c]) for c in self.silver_inputs()
                                                if c in input_schema))

    def silver_type(self, column: str) -> pl.DataType | None:
        """The type `column` is read at, once `typed()`; None before."""
        return dict(self.silver_types).get(column)

    def finalized_inputs(self) -> tuple[str, ...]:
        """Output columns (declared before it) that it is computed from."""
        return ()

    @abstractmethod
    def return_type(self, input_schema: dict[str, pl.DataType]) -> pl.DataType:
        """Its Gold column type, given Silver's column types as read."""

    @abstractmethod
    def spark_sql(self) -> str:
        """The Spark SQL expression computing the same column, with the same semantics;
        NoSparkEquivalent when Spark's streaming aggregation has none."""


def sql_column(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def sql_double(column: str) -> str:
    return f"CAST({sql_column(column)} AS DOUBLE)"


def sql_literal(value: bool | float | str) -> str:
    """A Spark SQL literal of the same type: strings quoted, numbers as doubles."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if math.isfinite(value):
        return f"{float(value)!r}D"
    return f"CAST('{'NaN' if math.isnan(value) else ('-' if value < 0 else '') + 'Infinity'}' AS DOUBLE)"
