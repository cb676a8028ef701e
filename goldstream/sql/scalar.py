"""Spark SQL scalar expressions as Polars expressions, with Spark's types and semantics.

`ScalarCompiler.compile(node)` turns a parsed expression (sqlglot) into a `Typed`: the
Polars expression and the Spark type of its result. Semantics are Spark 4's: `/` is
fractional, integers widen and (ANSI) fail on overflow, `%` keeps the dividend's sign,
AND/OR are three-valued, NaN equals NaN and is above every number, `round` is HALF_UP,
string literals are cast to the other side's type (`on_ground = 'TRUE'`), and
comparisons Spark refuses (a boolean with a number, a timestamp with a number) are refused.

ANSI mode (the default, as in Spark 4): an error condition (division by zero, overflow,
invalid cast) is recorded as a *guard*: a boolean expression true on the rows where the
error happens, with the expression's text. Whoever evaluates the expression also
evaluates its guards and stops the query when one is true (engine: per Silver version).
A guard only counts where the expression is reached: the untaken branch of a CASE, or
the right side of an AND whose left side is false, cannot fail (Spark short-circuits
them too). With `ansi = false` the same conditions give NULL (Spark's legacy mode).
"""

from __future__ import annotations

import decimal as pydecimal
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import sqlglot.expressions as E

from goldstream.sql.errors import SqlError
from goldstream.sql.types import (
    BIGINT,
    BOOLEAN,
    DATE,
    DOUBLE,
    INT,
    INTEGER_BOUNDS,
    NULL,
    STRING,
    TIMESTAMP,
    SType,
    arithmetic_type,
    decimal,
    wider_numeric,
)

_TRUE_STRINGS = ("t", "true", "y", "yes", "1")
_FALSE_STRINGS = ("f", "false", "n", "no", "0")
_DECIMAL_CONTEXT = pydecimal.Context(prec=100, rounding=pydecimal.ROUND_HALF_UP)


@dataclass(frozen=True)
class Typed:
    """A compiled expression: its Polars form and its Spark type."""

    expr: pl.Expr
    type: SType
    constant: Any = field(default=None, compare=False)  # the Python value of a literal
    is_literal: bool = False


@dataclass(frozen=True)
class Guard:
    """Rows where an ANSI error happens (`bad` true), and what the error is."""

    bad: pl.Expr
    message: str


Resolver = Callable[[E.Column], Typed]


def sql_text(node: E.Expression) -> str:
    return node.sql(dialect="spark")


class ScalarCompiler:
    """Compiles scalar expressions of one query; `guards` collects their ANSI errors."""

    def __init__(self, resolve: Resolver, ansi: bool = True,
                 call: Callable[[E.Expression], Typed | None] | None = None) -> None:
        self.resolve = resolve
        self.ansi = ansi
        self.call = call  # a hook for nodes the caller compiles itself (aggregates, window bounds)
        self.guards: list[Guard] = []

    # -- entry ------------------------------------------------------------------------

    def compile(self, node: E.Expression, reach: pl.Expr | None = None) -> Typed:
        if self.call is not None:
            hooked = self.call(node)
            if hooked is not None:
                return hooked
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise SqlError(f"{_describe(node)} is not supported in goldstream's Spark SQL subset", node)
        return method(node, reach)

    def condition(self, node: E.Expression, reach: pl.Expr | None = None) -> pl.Expr:
        """A boolean expression (WHERE, FILTER, CASE WHEN): refused unless it is boolean."""
        t = self.compile(node, reach)
        if t.type.name == "void":
            return pl.lit(None, dtype=pl.Boolean)
        if t.type != BOOLEAN:
            raise SqlError(f"`{sql_text(node)}` is a {t.type}, not a condition: compare it with something "
                           "(e.g. `... > 0`, `... IS NOT NULL`)", node)
        return t.expr

    def _guard(self, bad: pl.Expr, reach: pl.Expr | None, what: str, node: E.Expression) -> None:
        if reach is not None:
            bad = bad & reach
        self.guards.append(Guard(bad.fill_null(False), f"{what} in `{sql_text(node)}`"))

    # -- leaves -----------------------------------------------------------------------

    def _Paren(self, node: E.Paren, reach: pl.Expr | None) -> Typed:
        return self.compile(node.this, reach)

    def _Column(self, node: E.Column, reach: pl.Expr | None) -> Typed:
        return self.resolve(node)

    def _Boolean(self, node: E.Boolean, reach: pl.Expr | None) -> Typed:
        return Typed(pl.lit(bool(node.this)), BOOLEAN, bool(node.this), True)

    def _Null(self, node: E.Null, reach: pl.Expr | None) -> Typed:
        return Typed(pl.lit(None), NULL, None, True)

    def _Literal(self, node: E.Literal, reach: pl.Expr | None) -> Typed:
        text = str(node.this)
        if node.is_string:
            return Typed(pl.lit(text, dtype=pl.String), STRING, text, True)
        return number_literal(text, node)

    def _Neg(self, node: E.Neg, reach: pl.Expr | None) -> Typed:
        inner = node.this
        if isinstance(inner, E.Literal) and not inner.is_string:
            return number_literal("-" + str(inner.this), node)
        x = self.compile(inner, reach)
        self._numeric(x, node)
        if x.type.is_integral:
            lo, _ = INTEGER_BOUNDS[x.type.name]
            if self.ansi:
                self._guard(x.expr == lo, reach, f"{x.type} overflow", node)
        if x.type.name == "decimal":
            return Typed(x.expr.map_batches(lambda s: pl.Series([None if v is None else -v for v in s],
                                                                dtype=s.dtype), return_dtype=x.type.polars()),
                         x.type)
        return Typed(-x.expr, x.type)

    # -- arithmetic -------------------------------------------------------------------

    def _numeric(self, t: Typed, node: E.Expression) -> None:
        if not (t.type.is_numeric or t.type.name == "void"):
            raise SqlError(f"`{sql_text(node)}` needs numbers, and one operand is a {t.type}", node)

    def _arith(self, op: str, node: E.Binary, reach: pl.Expr | None) -> Typed:
        a, b = self.compile(node.this, reach), self.compile(node.expression, reach)
        a, b = self._implicit_numeric(a, b, node), self._implicit_numeric(b, a, node)
        self._numeric(a, node)
        self._numeric(b, node)
        result = arithmetic_type(op, a.type, b.type) if "void" not in (a.type.name, b.type.name) else \
            (DOUBLE if op == "/" else wider_numeric(a.type, b.type))
        if result.name == "void":
            return Typed(pl.lit(None), NULL)
        if result.name == "decimal":
            return self._decimal_arith(op, a, b, result, node, reach)
        operand = DOUBLE if op == "/" else result
        x, y = cast_expr(a, operand), cast_expr(b, operand)
        if op in "/%":
            zero = y == 0
            if self.ansi:
                self._guard(zero & x.is_not_null(), reach, "division by zero", node)
            if op == "/":
                value = x / y
            else:
                value = _remainder(x, y, result.is_integral)
            return Typed(pl.when(~zero).then(value).cast(result.polars()), result)
        value = {"+": x + y, "-": x - y, "*": x * y}[op]
        if result.is_integral and self.ansi:
            wide_x, wide_y = x.cast(pl.Int128), y.cast(pl.Int128)
            exact = {"+": wide_x + wide_y, "-": wide_x - wide_y, "*": wide_x * wide_y}[op]
            lo, hi = INTEGER_BOUNDS[result.name]
            self._guard(~exact.is_between(lo, hi), reach, f"{result} overflow", node)
        return Typed(value, result)

    def _implicit_numeric(self, t: Typed, other: Typed, node: E.Expression) -> Typed:
        """A string operand of arithmetic is cast to double (Spark: to the other side's
        type family; double covers every number)."""
        if t.type == STRING:
            return self.cast(t, DOUBLE, node, None)
        return t

    def _decimal_arith(self, op: str, a: Typed, b: Typed, result: SType, node: E.Expression,
                       reach: pl.Expr | None) -> Typed:
        """Decimal arithmetic done exactly (Python decimals), rounded HALF_UP to the result's
        scale as Spark does; a result that does not fit its precision is an overflow."""
        quantum = pydecimal.Decimal(1).scaleb(-result.scale)
        limit = pydecimal.Decimal(10) ** (result.precision - result.scale)

        def apply(s: pl.Series) -> pl.Series:
            out: list[Any] = []
            for x, y in zip(s.struct.field("a").to_list(), s.struct.field("b").to_list()):
                if x is None or y is None:
                    out.append(None)
                    continue
                x, y = pydecimal.Decimal(x), pydecimal.Decimal(y)
                if op in "/%" and y == 0:
                    out.append(None)
                    continue
                if op == "%":
                    r = _DECIMAL_CONTEXT.remainder(x, y)
                else:
                    r = {"+": _DECIMAL_CONTEXT.add, "-": _DECIMAL_CONTEXT.subtract, "*": _DECIMAL_CONTEXT.multiply,
                         "/": _DECIMAL_CONTEXT.divide}[op](x, y)
                r = r.quantize(quantum, context=_DECIMAL_CONTEXT)
                out.append(r if abs(r) < limit else None)
            return pl.Series(out, dtype=result.polars())

        x, y = _exact(a), _exact(b)
        value = pl.struct(x.alias("a"), y.alias("b")).map_batches(apply, return_dtype=result.polars())
        if self.ansi:
            inputs = x.is_not_null() & y.is_not_null()
            if op in "/%":
                self._guard(inputs & (y.cast(pl.Float64) == 0), reach, "division by zero", node)
            self._guard(inputs & value.is_null() & (y.cast(pl.Float64) != 0), reach, f"{result} overflow", node)
        return Typed(value, result)

    def _Add(self, node: E.Add, reach: pl.Expr | None) -> Typed:
        return self._arith("+", node, reach)

    def _Sub(self, node: E.Sub, reach: pl.Expr | None) -> Typed:
        return self._arith("-", node, reach)

    def _Mul(self, node: E.Mul, reach: pl.Expr | None) -> Typed:
        return self._arith("*", node, reach)

    def _Div(self, node: E.Div, reach: pl.Expr | None) -> Typed:
        return self._arith("/", node, reach)

    def _Mod(self, node: E.Mod, reach: pl.Expr | None) -> Typed:
        return self._arith("%", node, reach)

    # -- comparisons and logic --------------------------------------------------------

    def comparable(self, a: Typed, b: Typed, node: E.Expression, reach: pl.Expr | None) -> tuple[pl.Expr, pl.Expr]:
        """Both sides brought to one type as Spark's comparison coercion does, or refused."""
        ta, tb = a.type, b.type
        if "void" in (ta.name, tb.name):
            return a.expr, b.expr
        if ta.is_numeric and tb.is_numeric:
            common = wider_numeric(ta, tb)
            return cast_expr(a, common), cast_expr(b, common)
        if ta == tb or {ta.name, tb.name} <= {"string"}:
            return a.expr, b.expr
        if {ta.name, tb.name} == {"timestamp", "date"}:
            return cast_expr(a, TIMESTAMP), cast_expr(b, TIMESTAMP)
        if ta == STRING and tb.name in ("boolean", "timestamp", "date") or tb.is_numeric and ta == STRING:
            return self.cast(a, tb, node, reach).expr, b.expr
        if tb == STRING and ta.name in ("boolean", "timestamp", "date") or ta.is_numeric and tb == STRING:
            return a.expr, self.cast(b, ta, node, reach).expr
        raise SqlError(f"`{sql_text(node)}` compares a {ta} with a {tb}, which Spark refuses "
                       "(cannot resolve: data type mismatch); cast one side explicitly", node)

    def _compare(self, node: E.Binary, reach: pl.Expr | None, op: Callable[[pl.Expr, pl.Expr], pl.Expr]) -> Typed:
        a, b = self.compile(node.this, reach), self.compile(node.expression, reach)
        x, y = self.comparable(a, b, node, reach)
        return Typed(op(x, y), BOOLEAN)

    def _EQ(self, node: E.EQ, reach: pl.Expr | None) -> Typed:
        return self._compare(node, reach, lambda x, y: x == y)

    def _NEQ(self, node: E.NEQ, reach: pl.Expr | None) -> Typed:
        return self._compare(node, reach, lambda x, y: x != y)

    def _GT(self, node: E.GT, reach: pl.Expr | None) -> Typed:
        return self._compare(node, reach, lambda x, y: x > y)

    def _GTE(self, node: E.GTE, reach: pl.Expr | None) -> Typed:
        return self._compare(node, reach, lambda x, y: x >= y)

    def _LT(self, node: E.LT, reach: pl.Expr | None) -> Typed:
        return self._compare(node, reach, lambda x, y: x < y)

    def _LTE(self, node: E.LTE, reach: pl.Expr | None) -> Typed:
        return self._compare(node, reach, lambda x, y: x <= y)

    def _NullSafeEQ(self, node: E.NullSafeEQ, reach: pl.Expr | None) -> Typed:
        return self._compare(node, reach, lambda x, y: x.eq_missing(y))

    def _And(self, node: E.And, reach: pl.Expr | None) -> Typed:
        left = self.condition(node.this, reach)
        right_reach = left.fill_null(True) if reach is None else reach & left.fill_null(True)
        return Typed(left & self.condition(node.expression, right_reach), BOOLEAN)

    def _Or(self, node: E.Or, reach: pl.Expr | None) -> Typed:
        left = self.condition(node.this, reach)
        right_reach = ~left.fill_null(False) if reach is None else reach & ~left.fill_null(False)
        return Typed(left | self.condition(node.expression, right_reach), BOOLEAN)

    def _Not(self, node: E.Not, reach: pl.Expr | None) -> Typed:
        return Typed(~self.condition(node.this, reach), BOOLEAN)

    def _Is(self, node: E.Is, reach: pl.Expr | None) -> Typed:
        x = self.compile(node.this, reach)
        target = node.expression
        if isinstance(target, E.Null):
            return Typed(x.expr.is_null(), BOOLEAN)
        if isinstance(target, E.Boolean):
            if x.type not in (BOOLEAN, NULL):
                raise SqlError(f"`{sql_text(node)}`: IS TRUE/FALSE needs a boolean, not a {x.type}", node)
            return Typed((x.expr == pl.lit(bool(target.this))).fill_null(False), BOOLEAN)
        raise SqlError(f"`{sql_text(node)}` is not supported: use IS [NOT] NULL, IS [NOT] TRUE/FALSE", node)

    def _In(self, node: E.In, reach: pl.Expr | None) -> Typed:
        if node.args.get("query") is not None or node.args.get("unnest") is not None:
            raise SqlError("IN (subquery) is not supported: list the values", node)
        x = self.compile(node.this, reach)
        items = [self.compile(v, reach) for v in node.expressions]
        kinds = {_family(t.type) for t in items if t.type.name != "void"}
        if len(kinds) > 1:
            raise SqlError(f"`{sql_text(node)}` mixes values of types {', '.join(sorted(str(t.type) for t in items))}"
                           ", which Spark refuses in one IN list; write them all of one type", node)
        if not items:
            raise SqlError("IN () needs at least one value", node)
        out: pl.Expr | None = None
        for item in items:
            a, b = self.comparable(x, item, node, reach)
            term = a == b
            out = term if out is None else out | term
        assert out is not None
        # SQL: not found and a null in the list (or a null input) is null, not false
        has_null = any(t.type.name == "void" for t in items)
        if has_null:
            out = pl.when(out.fill_null(False)).then(True).otherwise(None)
        return Typed(pl.when(x.expr.is_null()).then(None).otherwise(out).cast(pl.Boolean), BOOLEAN)

    def _Between(self, node: E.Between, reach: pl.Expr | None) -> Typed:
        x = self.compile(node.this, reach)
        lo, hi = self.compile(node.args["low"], reach), self.compile(node.args["high"], reach)
        a1, b1 = self.comparable(x, lo, node, reach)
        a2, b2 = self.comparable(x, hi, node, reach)
        return Typed((a1 >= b1) & (a2 <= b2), BOOLEAN)

    def _Like(self, node: E.Like, reach: pl.Expr | None, escape: str = "\\") -> Typed:
        x = self.compile(node.this, reach)
        pattern = node.expression
        if not (isinstance(pattern, E.Literal) and pattern.is_string):
            raise SqlError("LIKE needs a string literal pattern", node)
        if x.type not in (STRING, NULL):
            raise SqlError(f"`{sql_text(node)}`: LIKE needs a string, not a {x.type}", node)
        regex = like_regex(str(pattern.this), escape, node)
        out = x.expr.str.contains(regex)
        return Typed(~out if node.args.get("negate") else out, BOOLEAN)

    def _Escape(self, node: E.Escape, reach: pl.Expr | None) -> Typed:
        like, esc = node.this, node.expression
        if not isinstance(like, E.Like) or not (isinstance(esc, E.Literal) and esc.is_string and len(esc.this) == 1):
            raise SqlError("ESCAPE needs LIKE and a one-character string", node)
        return self._Like(like, reach, str(esc.this))

    # -- conditionals -----------------------------------------------------------------

    def _branches(self, whens: list[tuple[pl.Expr, E.Expression]], default: E.Expression | None,
                  node: E.Expression, reach: pl.Expr | None) -> Typed:
        taken: pl.Expr | None = None  # an earlier WHEN was true
        values: list[Typed] = []
        for cond, value in whens:
            here = cond.fill_null(False) if taken is None else ~taken & cond.fill_null(False)
            values.append(self.compile(value, here if reach is None else reach & here))
            taken = cond.fill_null(False) if taken is None else taken | cond.fill_null(False)
        rest = ~taken if taken is not None else None
        default_t = self.compile(default, rest if reach is None else (reach & rest if rest is not None else reach)) \
            if default is not None else Typed(pl.lit(None), NULL)
        result = common_type([*values, default_t], node)
        out: Any = None
        for (cond, _), v in zip(whens, values):
            out = (pl.when(cond) if out is None else out.when(cond)).then(cast_expr(v, result))
        out = out.otherwise(cast_expr(default_t, result)) if out is not None else cast_expr(default_t, result)
        return Typed(out, result)

    def _Case(self, node: E.Case, reach: pl.Expr | None) -> Typed:
        operand = node.this
        whens: list[tuple[pl.Expr, E.Expression]] = []
        for branch in node.args.get("ifs") or []:
            if operand is not None:
                a, b = self.compile(operand, reach), self.compile(branch.this, reach)
                x, y = self.comparable(a, b, branch.this, reach)
                cond = x == y
            else:
                cond = self.condition(branch.this, reach)
            whens.append((cond, branch.args["true"]))
        return self._branches(whens, node.args.get("default"), node, reach)

    def _If(self, node: E.If, reach: pl.Expr | None) -> Typed:
        cond = self.condition(node.this, reach)
        return self._branches([(cond, node.args["true"])], node.args.get("false"), node, reach)

    def _Coalesce(self, node: E.Coalesce, reach: pl.Expr | None) -> Typed:
        args = [node.this, *node.expressions]
        compiled: list[Typed] = []
        missing: pl.Expr | None = None
        for arg in args:
            r = reach if missing is None else (missing if reach is None else reach & missing)
            t = self.compile(arg, r)
            compiled.append(t)
            missing = t.expr.is_null() if missing is None else missing & t.expr.is_null()
        result = common_type(compiled, node)
        # A when-chain, not pl.coalesce: Polars shortens coalesce(<all-null column>, <literal>)
        # to one row, which then fails to broadcast inside a larger expression.
        values = [cast_expr(t, result) for t in compiled]
        out: Any = None
        for v in values[:-1]:
            out = (pl.when(v.is_not_null()) if out is None else out.when(v.is_not_null())).then(v)
        return Typed(values[-1] if out is None else out.otherwise(values[-1]), result)

    def _Nullif(self, node: E.Nullif, reach: pl.Expr | None) -> Typed:
        a, b = self.compile(node.this, reach), self.compile(node.expression, reach)
        x, y = self.comparable(a, b, node, reach)
        return Typed(pl.when((x == y).fill_null(False)).then(None).otherwise(a.expr).cast(a.type.polars()), a.type)

    # -- functions ----------------------------------------------------------------------

    def _Abs(self, node: E.Abs, reach: pl.Expr | None) -> Typed:
        x = self.compile(node.this, reach)
        self._numeric(x, node)
        if x.type.is_integral and self.ansi:
            self._guard(x.expr == INTEGER_BOUNDS[x.type.name][0], reach, f"{x.type} overflow", node)
        if x.type.name == "decimal":
            return Typed(x.expr.map_batches(lambda s: pl.Series([None if v is None else abs(v) for v in s],
                                                                dtype=s.dtype), return_dtype=x.type.polars()), x.type)
        return Typed(x.expr.abs(), x.type)

    def _Round(self, node: E.Round, reach: pl.Expr | None) -> Typed:
        x = self.compile(node.this, reach)
        self._numeric(x, node)
        places = 0
        if node.args.get("decimals") is not None:
            d = self.compile(node.args["decimals"], reach)
            if not (d.is_literal and isinstance(d.constant, int)):
                raise SqlError("round's second argument must be an integer literal", node)
            places = d.constant
        if x.type.name == "decimal":
            p, s = x.type.precision, x.type.scale
            new_scale = max(min(s, places), 0) if places >= 0 else 0
            result = decimal(p - s + 1 + new_scale, new_scale) if places >= 0 else decimal(p - s + 1, 0)
            return Typed(_round_decimal(_exact(x), places, result), result)
        if x.type.is_integral:
            if places >= 0:
                return Typed(x.expr, x.type)
            return Typed(_round_python(x.expr, places, x.type.polars()), x.type)
        return Typed(_round_python(x.expr, places, x.type.polars()), x.type)

    def _floor_ceil(self, node: E.Expression, reach: pl.Expr | None, up: bool) -> Typed:
        if node.args.get("decimals") is not None:
            raise SqlError(f"{'ceil' if up else 'floor'} with a scale is not supported", node)
        x = self.compile(node.this, reach)
        self._numeric(x, node)
        if x.type.name == "decimal":
            result = decimal(x.type.precision - x.type.scale + 1, 0)
            rounding = pydecimal.ROUND_CEILING if up else pydecimal.ROUND_FLOOR
            return Typed(_exact(x).map_batches(
                lambda s: pl.Series([None if v is None else v.quantize(1, rounding=rounding) for v in s],
                                    dtype=result.polars()), return_dtype=result.polars()), result)
        if x.type.is_integral:
            return Typed(x.expr.cast(pl.Int64), BIGINT)
        f = x.expr.cast(pl.Float64)
        rounded = f.ceil() if up else f.floor()
        lo, hi = INTEGER_BOUNDS["bigint"]
        if self.ansi:
            self._guard(f.is_nan() | ~rounded.is_between(float(lo), float(hi), closed="left"), reach,
                        "bigint overflow", node)
        return Typed(pl.when(f.is_nan()).then(0).otherwise(rounded.clip(float(lo), float(hi))).cast(pl.Int64,
                                                                                                     strict=False),
                     BIGINT)

    def _Floor(self, node: E.Floor, reach: pl.Expr | None) -> Typed:
        return self._floor_ceil(node, reach, up=False)

    def _Ceil(self, node: E.Ceil, reach: pl.Expr | None) -> Typed:
        return self._floor_ceil(node, reach, up=True)

    def _string_fn(self, node: E.Func, reach: pl.Expr | None, fn: Callable[[pl.Expr], pl.Expr]) -> Typed:
        x = self.compile(node.this, reach)
        if x.type not in (STRING, NULL):
            x = self.cast(x, STRING, node, reach)
        return Typed(fn(x.expr.cast(pl.String)), STRING)

    def _Lower(self, node: E.Lower, reach: pl.Expr | None) -> Typed:
        return self._string_fn(node, reach, lambda e: e.str.to_lowercase())

    def _Upper(self, node: E.Upper, reach: pl.Expr | None) -> Typed:
        return self._string_fn(node, reach, lambda e: e.str.to_uppercase())

    def _timestamp(self, node: E.Expression, reach: pl.Expr | None) -> pl.Expr:
        x = self.compile(node, reach)
        if x.type == STRING:
            x = self.cast(x, TIMESTAMP, node, reach)
        if x.type not in (TIMESTAMP, DATE):
            raise SqlError(f"`{sql_text(node)}` is a {x.type}, not a timestamp", node)
        return cast_expr(x, TIMESTAMP)

    def _Hour(self, node: E.Hour, reach: pl.Expr | None) -> Typed:
        return Typed(self._timestamp(node.this, reach).dt.hour().cast(pl.Int32), INT)

    def _Minute(self, node: E.Minute, reach: pl.Expr | None) -> Typed:
        return Typed(self._timestamp(node.this, reach).dt.minute().cast(pl.Int32), INT)

    def _TimestampTrunc(self, node: E.TimestampTrunc, reach: pl.Expr | None) -> Typed:
        unit = node.args.get("unit")
        name = (unit.name if unit is not None else "").lower()
        every = {"year": "1y", "yyyy": "1y", "yy": "1y", "quarter": "1q", "month": "1mo", "mon": "1mo", "mm": "1mo",
                 "week": "1w", "day": "1d", "dd": "1d", "hour": "1h", "minute": "1m", "second": "1s",
                 "millisecond": "1ms", "microsecond": "1us"}.get(name)
        if every is None:
            raise SqlError(f"date_trunc unit {name!r} is not one Spark knows", node)
        return Typed(self._timestamp(node.this, reach).dt.truncate(every), TIMESTAMP)

    def _TryCast(self, node: E.TryCast, reach: pl.Expr | None) -> Typed:
        x = self.compile(node.this, reach)
        target = spark_type(node.args["to"], node)
        if node.args.get("safe"):  # try_cast: NULL on failure in either mode
            return _with_ansi(self, False).cast(x, target, node, reach)
        return self.cast(x, target, node, reach)

    _Cast = _TryCast

    def cast(self, x: Typed, target: SType, node: E.Expression, reach: pl.Expr | None) -> Typed:
        """CAST with Spark's rules; in ANSI mode a value that cannot be cast is an error."""
        src = x.type
        if src == target:
            return x
        if src.name == "void":
            return Typed(pl.lit(None, dtype=target.polars()), target)
        if x.is_literal and src == STRING:  # a string literal is cast once, here, and refused if invalid
            value = cast_string_constant(str(x.constant), target)
            if value is None:
                if self.ansi:
                    raise SqlError(f"'{x.constant}' cannot be cast to {target} (Spark's ANSI mode: "
                                   "CAST_INVALID_INPUT)", node)
                return Typed(pl.lit(None, dtype=target.polars()), target)
            return Typed(pl.lit(value, dtype=target.polars()), target, value, True)
        out, invalid = cast_with_failures(x, target, node)
        if invalid is not None:
            if self.ansi:
                self._guard(invalid, reach, f"invalid cast to {target} (a value that is no {target})", node)
            out = pl.when(invalid).then(None).otherwise(out)
        return Typed(out.cast(target.polars()), target)

    def _Anonymous(self, node: E.Anonymous, reach: pl.Expr | None) -> Typed:
        raise SqlError(f"unknown function {node.name}(): goldstream runs no UDFs and computes only the functions "
                       "listed in docs/query-language.md", node)


def check_functions(tree: E.Expression, allowed: tuple[str, ...] = ()) -> None:
    """Refuse, before any schema is known, a function goldstream does not compute: a UDF,
    or a Spark function outside the subset (`allowed`: names the caller handles itself)."""
    for n in tree.walk():
        if isinstance(n, E.Anonymous) and n.name.lower() not in allowed:
            raise SqlError(f"unknown function {n.name}(): goldstream runs no UDFs and computes only the functions "
                           "listed in docs/query-language.md", n)
        if isinstance(n, E.Func) and not isinstance(n, E.Anonymous) and not isinstance(n, E.AggFunc) \
                and not hasattr(ScalarCompiler, f"_{type(n).__name__}") and type(n).__name__ not in allowed:
            raise SqlError(f"the function {n.sql_name()}() is not supported in goldstream's Spark SQL subset "
                           "(docs/query-language.md lists the functions it computes)", n)


def _with_ansi(c: ScalarCompiler, ansi: bool) -> ScalarCompiler:
    other = ScalarCompiler(c.resolve, ansi, c.call)
    other.guards = c.guards
    return other


def _family(t: SType) -> str:
    if t.is_numeric:
        return "number"
    return "timestamp" if t.is_temporal else t.name


def common_type(values: list[Typed], node: E.Expression) -> SType:
    """The type of CASE/COALESCE branches: numbers widen, one other type, NULL fits any."""
    types = [v.type for v in values if v.type.name != "void"]
    if not types:
        return NULL
    out = types[0]
    for t in types[1:]:
        if out.is_numeric and t.is_numeric:
            out = wider_numeric(out, t)
        elif {out.name, t.name} == {"timestamp", "date"}:
            out = TIMESTAMP
        elif out != t:
            raise SqlError(f"`{sql_text(node)}` mixes a {out} and a {t}, which have no common type in Spark; "
                           "cast one of them", node)
    return out


def number_literal(text: str, node: E.Expression) -> Typed:
    """A numeric literal typed as Spark types it: an integer is int (bigint, then decimal
    when larger), a number with a point is a decimal of its digits, one with an exponent
    is a double."""
    body = text.lstrip("-+")
    if re.fullmatch(r"\d+", body):
        value = int(text)
        for t in (INT, BIGINT):
            lo, hi = INTEGER_BOUNDS[t.name]
            if lo <= value <= hi:
                return Typed(pl.lit(value, dtype=t.polars()), t, value, True)
        digits = len(body.lstrip("0")) or 1
        if digits > 38:
            raise SqlError(f"numeric literal {text} has more than 38 digits", node)
        d = pydecimal.Decimal(text)
        t = decimal(digits, 0)
        return Typed(pl.lit(d, dtype=t.polars()), t, d, True)
    if re.fullmatch(r"(\d+\.\d*|\.\d+)", body):
        d = pydecimal.Decimal(text)
        integral, _, fraction = body.partition(".")
        scale = len(fraction)
        precision = max(len(integral.lstrip("0")) + scale, scale, 1)
        if precision > 38:
            return _double_literal(text, node)
        t = decimal(precision, scale)
        return Typed(pl.lit(d, dtype=t.polars()), t, d, True)
    return _double_literal(text, node)


def _double_literal(text: str, node: E.Expression) -> Typed:
    value = float(text)
    if math.isinf(value):
        raise SqlError(f"numeric literal {text} does not fit in the range of a double, which Spark refuses", node)
    return Typed(pl.lit(value, dtype=pl.Float64), DOUBLE, value, True)


def spark_type(node: E.DataType, where: E.Expression) -> SType:
    """The Spark type a CAST names."""
    name = node.this.name if hasattr(node.this, "name") else str(node.this)
    simple = {"BOOLEAN": BOOLEAN, "TINYINT": SType("tinyint"), "SMALLINT": SType("smallint"), "INT": INT,
              "BIGINT": BIGINT, "FLOAT": SType("float"), "DOUBLE": DOUBLE, "TEXT": STRING, "VARCHAR": STRING,
              "STRING": STRING, "TIMESTAMP": TIMESTAMP, "TIMESTAMPLTZ": TIMESTAMP, "DATE": DATE}
    if name in simple:
        return simple[name]
    if name == "DECIMAL":
        params = [int(str(p.this.this if hasattr(p.this, "this") else p.this)) for p in node.expressions]
        precision, scale = (params + [10, 0][len(params):])[:2] if params else (10, 0)
        if not 1 <= precision <= 38 or not 0 <= scale <= precision:
            raise SqlError(f"decimal({precision},{scale}) is not a valid decimal type", where)
        return SType("decimal", precision, scale)
    raise SqlError(f"CAST to {node.sql(dialect='spark')} is not supported", where)


def cast_expr(t: Typed, target: SType) -> pl.Expr:
    """A value already known to fit `target` (a widening) in target's Polars type."""
    if t.type == target:
        return t.expr
    if t.type.name == "void":
        return pl.lit(None, dtype=target.polars())
    if target.name == "decimal":
        if t.is_literal and t.constant is not None:
            return pl.lit(pydecimal.Decimal(str(t.constant)), dtype=target.polars())
        return t.expr.cast(target.polars())
    if t.type.name == "decimal" and target.is_fractional:
        return t.expr.cast(pl.Float64).cast(target.polars())
    return t.expr.cast(target.polars())


def _exact(t: Typed) -> pl.Expr:
    """A numeric value as a Polars Decimal (exact for integers and decimals)."""
    if t.type.name == "decimal":
        return t.expr
    if t.type.is_integral:
        return t.expr.cast(pl.Decimal(38, 0))
    return t.expr


def _remainder(x: pl.Expr, y: pl.Expr, integral: bool) -> pl.Expr:
    """Java's %: the remainder has the dividend's sign (Polars' % follows the divisor's). For
    doubles it is IEEE fmod, exact: Polars' floor modulo computes x - y * floor(x / y) in
    floating point, which loses a tiny dividend (1e-20 % -1.0 would be 0, not 1e-20)."""
    if integral:
        r = x % y
        return pl.when((r != 0) & ((r < 0) != (x < 0))).then(r - y).otherwise(r)
    return pl.struct(x.alias("x"), y.alias("y")).map_batches(_fmod, return_dtype=pl.Float64)


def _fmod(pairs: pl.Series) -> pl.Series:
    """Java's double % per row (math.fmod is C's fmod): x % 0, inf % y and NaN give NaN."""
    def one(a: float | None, b: float | None) -> float | None:
        if a is None or b is None:
            return None
        try:
            return math.fmod(a, b)
        except ValueError:  # a zero divisor or an infinite dividend
            return math.nan
    return pl.Series(pairs.name, [one(a, b) for a, b in zip(pairs.struct.field("x").to_list(),
                                                          pairs.struct.field("y").to_list())], dtype=pl.Float64)


def _round_half_up(value: float | None, places: int) -> float | None:
    """Spark's round of a double: HALF_UP on its shortest decimal form (Java's Double.toString)."""
    if value is None or not math.isfinite(value):
        return value
    d = pydecimal.Decimal(repr(value)).quantize(pydecimal.Decimal(1).scaleb(-places), rounding=pydecimal.ROUND_HALF_UP,
                                                 context=_DECIMAL_CONTEXT)
    return float(d)


def _round_python(expr: pl.Expr, places: int, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_integer():
        def apply_int(s: pl.Series) -> pl.Series:
            q = 10 ** (-places)  # HALF_UP at a negative scale: away from zero on a tie
            return pl.Series([None if v is None else (abs(v) + q // 2) // q * q * (1 if v >= 0 else -1)
                              for v in s], dtype=dtype)
        return expr.map_batches(apply_int, return_dtype=dtype)
    return expr.map_batches(lambda s: pl.Series([_round_half_up(v, places) for v in s], dtype=dtype),
                            return_dtype=dtype)


def _round_decimal(expr: pl.Expr, places: int, result: SType) -> pl.Expr:
    quantum = pydecimal.Decimal(1).scaleb(-max(places, 0))

    def apply(s: pl.Series) -> pl.Series:
        out = []
        for v in s:
            if v is None:
                out.append(None)
            elif places >= 0:
                out.append(pydecimal.Decimal(v).quantize(quantum, rounding=pydecimal.ROUND_HALF_UP))
            else:
                q = pydecimal.Decimal(1).scaleb(-places)
                out.append((pydecimal.Decimal(v) / q).quantize(1, rounding=pydecimal.ROUND_HALF_UP) * q)
        return pl.Series(out, dtype=result.polars())

    return expr.map_batches(apply, return_dtype=result.polars())


def cast_string_constant(text: str, target: SType) -> Any:
    """A string literal cast to `target` as Spark casts it (None: invalid)."""
    s = text.strip()
    try:
        if target == BOOLEAN:
            low = s.lower()
            return True if low in _TRUE_STRINGS else False if low in _FALSE_STRINGS else None
        if target.is_integral:
            value = int(s) if re.fullmatch(r"[+-]?\d+", s) else None
            lo, hi = INTEGER_BOUNDS[target.name]
            return value if value is not None and lo <= value <= hi else None
        if target.is_fractional:
            if s.lower() in ("nan", "infinity", "+infinity", "-infinity", "inf", "+inf", "-inf"):
                return float(s.lower().replace("infinity", "inf"))
            return float(s) if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[dDfF]?", s) else None
        if target.name == "decimal":
            d = pydecimal.Decimal(s).quantize(pydecimal.Decimal(1).scaleb(-target.scale),
                                              rounding=pydecimal.ROUND_HALF_UP)
            return d if abs(d) < pydecimal.Decimal(10) ** (target.precision - target.scale) else None
        if target in (TIMESTAMP, DATE):
            series = pl.Series([s]).str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
            value = series[0]
            if value is None:
                return None
            return value.date() if target == DATE else value
        if target == STRING:
            return text
    except (ValueError, ArithmeticError, pydecimal.InvalidOperation):
        return None
    return None


def cast_with_failures(x: Typed, target: SType, node: E.Expression) -> tuple[pl.Expr, pl.Expr | None]:
    """`x` cast to `target`, and the rows where the cast is invalid (None: it cannot fail)."""
    src, e = x.type, x.expr
    if target == STRING:
        if src == BOOLEAN:
            return pl.when(e).then(pl.lit("true")).otherwise(pl.when(e.is_not_null()).then(pl.lit("false"))), None
        return e.cast(pl.String), None
    if src == STRING:
        trimmed = e.str.strip_chars()
        if target == BOOLEAN:
            low = trimmed.str.to_lowercase()
            out = pl.when(low.is_in(_TRUE_STRINGS)).then(True).when(low.is_in(_FALSE_STRINGS)).then(False)
            return out, e.is_not_null() & ~low.is_in(_TRUE_STRINGS + _FALSE_STRINGS)
        if target.is_integral or target.is_fractional:
            out = trimmed.cast(target.polars(), strict=False)
            return out, e.is_not_null() & out.is_null()
        if target.name == "decimal":
            out = trimmed.cast(pl.Float64, strict=False).cast(target.polars(), strict=False)
            return out, e.is_not_null() & out.is_null()
        if target in (TIMESTAMP, DATE):
            out = trimmed.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
            out = out.dt.date() if target == DATE else out
            return out, e.is_not_null() & out.is_null()
    if src == BOOLEAN and target.is_numeric:
        return e.cast(pl.Int32).cast(target.polars()), None
    if src.is_numeric and target == BOOLEAN:
        return e != 0, None
    if src.is_numeric and target.is_fractional:
        return cast_expr(x, target), None
    if src.is_numeric and target.is_integral:
        lo, hi = INTEGER_BOUNDS[target.name]
        f = e.cast(pl.Float64) if not src.is_integral else e.cast(pl.Int128)
        if src.is_integral:
            bad = ~f.is_between(lo, hi)
            return e.cast(target.polars(), strict=False), bad
        truncated = pl.when(f < 0).then(f.ceil()).otherwise(f.floor())
        bad = f.is_nan() | ~truncated.is_between(float(lo), float(hi))
        return truncated.cast(target.polars(), strict=False), bad
    if src.is_numeric and target.name == "decimal":
        out = e.cast(pl.Float64).round(target.scale, mode="half_away_from_zero").cast(target.polars(), strict=False) \
            if not src.is_integral else e.cast(target.polars(), strict=False)
        return out, e.is_not_null() & out.is_null()
    if src.is_temporal and target.is_temporal:
        return (e.dt.date() if target == DATE else e.cast(pl.Datetime("us", "UTC"))), None
    raise SqlError(f"CAST from {src} to {target} is not supported", node)


def like_regex(pattern: str, escape: str, node: E.Expression) -> str:
    """A LIKE pattern as an anchored regex: % any run, _ one character, `escape` quotes."""
    out, i = ["(?s)^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == escape:
            if i + 1 >= len(pattern) or pattern[i + 1] not in "%_" + escape:
                raise SqlError(f"LIKE pattern {pattern!r}: the escape character must precede %, _ or itself", node)
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    out.append("$")
    return "".join(out)


def _describe(node: E.Expression) -> str:
    if isinstance(node, E.Func):
        return f"the function {node.sql_name() if hasattr(node, 'sql_name') else type(node).__name__}()"
    return f"`{sql_text(node)}` ({type(node).__name__})"
