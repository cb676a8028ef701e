"""Scalar SQL expressions against a row-at-a-time reference of Spark's semantics.

Random expressions over columns with nulls, NaN, infinities, zeros and integer extremes
are compiled (goldstream/sql/scalar.py, vectorised Polars) and evaluated by the reference
below (plain Python, one row at a time, Spark 4's rules: `/` in double, integers widen
and fail on overflow in ANSI mode, `%` keeps the dividend's sign, three-valued logic with
short-circuit, NaN equal to NaN and above every number). Both must give the same value
on every row, and in ANSI mode fail on exactly the same inputs.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
import sqlglot.expressions as E
from hypothesis import given, settings
from hypothesis import strategies as st

from goldstream.sql.dialect import parse_condition
from goldstream.sql.errors import SqlError
from goldstream.sql.scalar import ScalarCompiler, Typed
from goldstream.sql.types import BIGINT, BOOLEAN, DOUBLE, INT, STRING, from_polars

INT_MIN, INT_MAX = -2**31, 2**31 - 1
LONG_MIN, LONG_MAX = -2**63, 2**63 - 1
SCHEMA = {"d1": pl.Float64, "d2": pl.Float64, "i1": pl.Int32, "i2": pl.Int32, "l1": pl.Int64, "b1": pl.Boolean,
          "s1": pl.String}
doubles = st.one_of(st.none(), st.sampled_from([0.0, -0.0, 1.5, -2.0, 3.0, math.nan, math.inf, -math.inf, 1e308]),
                    st.floats(-1e6, 1e6, allow_nan=False))
ints = st.one_of(st.none(), st.sampled_from([0, 1, -1, 7, -7, INT_MAX, INT_MIN]), st.integers(-1000, 1000))
longs = st.one_of(st.none(), st.sampled_from([0, 3, -3, LONG_MAX, LONG_MIN, 2**40]), st.integers(-10**6, 10**6))
rows = st.fixed_dictionaries({"d1": doubles, "d2": doubles, "i1": ints, "i2": ints, "l1": longs,
                              "b1": st.one_of(st.none(), st.booleans()),
                              "s1": st.one_of(st.none(), st.sampled_from(["a", "abc", "TRUE", "", "x%y"]))})

NUMERIC_COLUMNS = ["d1", "d2", "i1", "i2", "l1"]


def numeric(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(NUMERIC_COLUMNS), st.sampled_from(["0", "2", "-3", "2147483647", "1.5e0"]))
    if depth <= 0:
        return leaf
    sub = numeric(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "%"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda x: f"abs({x})"),
        st.tuples(sub, sub).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        st.tuples(sub, sub).map(lambda t: f"nullif({t[0]}, {t[1]})"),
        st.tuples(condition(depth - 1), sub, sub).map(lambda t: f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"),
    )


def condition(depth: int) -> st.SearchStrategy[str]:
    leaf_num = numeric(0) if depth <= 0 else numeric(depth - 1)
    leaf = st.one_of(
        st.just("b1"),
        st.tuples(leaf_num, st.sampled_from(["=", "<>", "<", "<=", ">", ">=", "<=>"]), leaf_num)
        .map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        leaf_num.map(lambda x: f"{x} IS NULL"),
        st.tuples(leaf_num, leaf_num, leaf_num).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
        leaf_num.map(lambda x: f"{x} IN (0, 2, -3)"),
        st.sampled_from(["s1 LIKE 'a%'", "s1 = 'abc'", "b1 = 'TRUE'", "s1 IS NOT NULL"]),
    )
    if depth <= 0:
        return leaf
    sub = condition(depth - 1)
    return st.one_of(leaf, st.tuples(sub, sub).map(lambda t: f"({t[0]} AND {t[1]})"),
                     st.tuples(sub, sub).map(lambda t: f"({t[0]} OR {t[1]})"), sub.map(lambda x: f"NOT ({x})"))


# -- the reference: one row at a time, Spark's rules ------------------------------------------

class AnsiFailure(Exception):
    pass


_TYPES = {"d1": "double", "d2": "double", "i1": "int", "i2": "int", "l1": "bigint", "b1": "boolean", "s1": "string"}
_RANK = {"int": 0, "bigint": 1, "double": 2}


def _wrap(v: int, t: str, ansi: bool) -> int:
    lo, hi = (INT_MIN, INT_MAX) if t == "int" else (LONG_MIN, LONG_MAX)
    if lo <= v <= hi:
        return v
    if ansi:
        raise AnsiFailure(f"{t} overflow")
    return (v - lo) % (hi - lo + 1) + lo


def _cmp(a: Any, b: Any) -> int:
    """Spark's ordering of two non-null numbers: NaN equals NaN and is above everything."""
    an, bn = isinstance(a, float) and math.isnan(a), isinstance(b, float) and math.isnan(b)
    if an or bn:
        return 0 if an and bn else (1 if an else -1)
    return (a > b) - (a < b)


class Reference:
    def __init__(self, row: dict[str, Any], ansi: bool) -> None:
        self.row, self.ansi = row, ansi

    def type(self, n: E.Expression) -> str:
        if isinstance(n, E.Paren):
            return self.type(n.this)
        if isinstance(n, E.Column):
            return _TYPES[n.name]
        if isinstance(n, E.Literal):
            return "string" if n.is_string else ("int" if n.this.lstrip("-").isdigit() else "double")
        if isinstance(n, E.Neg):
            return self.type(n.this)
        if isinstance(n, E.Div):
            return "double"
        if isinstance(n, (E.Add, E.Sub, E.Mul, E.Mod)):
            return max(self.type(n.this), self.type(n.expression), key=_RANK.__getitem__)
        if isinstance(n, (E.Abs, E.Nullif)):
            return self.type(n.this)
        if isinstance(n, E.Coalesce):
            return max([self.type(n.this), *(self.type(e) for e in n.expressions)], key=_RANK.__getitem__)
        if isinstance(n, E.Case):
            return max([self.type(i.args["true"]) for i in n.args["ifs"]] + [self.type(n.args["default"])],
                       key=_RANK.__getitem__)
        return "boolean"

    def eval(self, n: E.Expression) -> Any:
        if isinstance(n, E.Paren):
            return self.eval(n.this)
        if isinstance(n, E.Column):
            return self.row[n.name]
        if isinstance(n, E.Literal):
            return n.this if n.is_string else (int(n.this) if n.this.lstrip("-").isdigit() else float(n.this))
        if isinstance(n, E.Neg):
            v = self.eval(n.this)
            return None if v is None else (-v if isinstance(v, float) else _wrap(-v, self.type(n), self.ansi))
        if isinstance(n, (E.Add, E.Sub, E.Mul, E.Div, E.Mod)):
            t = self.type(n)
            b = self.eval(n.expression)
            a = self.eval(n.this)
            if a is None or b is None:
                return None
            if isinstance(n, (E.Div, E.Mod)) and b == 0:
                if self.ansi:
                    raise AnsiFailure("division by zero")
                return None
            if t == "double" or isinstance(n, E.Div):
                a, b = float(a), float(b)
                if isinstance(n, E.Div):
                    return a / b
                if isinstance(n, E.Mod):
                    return _java_double_remainder(a, b)
                with_inf = {E.Add: lambda: a + b, E.Sub: lambda: a - b, E.Mul: lambda: a * b}[type(n)]
                return with_inf()
            if isinstance(n, E.Mod):
                return _wrap((abs(a) % abs(b)) * (1 if a >= 0 else -1), t, self.ansi)  # Java: dividend's sign
            return _wrap({E.Add: a + b, E.Sub: a - b, E.Mul: a * b}[type(n)], t, self.ansi)
        if isinstance(n, E.Abs):
            v = self.eval(n.this)
            if v is None:
                return None
            return abs(v) if isinstance(v, float) else _wrap(abs(v), self.type(n), self.ansi)
        if isinstance(n, E.Coalesce):
            for e in [n.this, *n.expressions]:
                v = self.eval(e)
                if v is not None:
                    return v
            return None
        if isinstance(n, E.Nullif):
            a, b = self.eval(n.this), self.eval(n.expression)
            return None if a is not None and b is not None and _cmp(a, b) == 0 else a
        if isinstance(n, E.Case):
            for branch in n.args["ifs"]:
                if self.eval(branch.this) is True:
                    return self.eval(branch.args["true"])
            return self.eval(n.args["default"])
        if isinstance(n, E.And):
            a = self.eval(n.this)
            if a is False:
                return False
            b = self.eval(n.expression)
            return False if b is False else (None if a is None or b is None else True)
        if isinstance(n, E.Or):
            a = self.eval(n.this)
            if a is True:
                return True
            b = self.eval(n.expression)
            return True if b is True else (None if a is None or b is None else False)
        if isinstance(n, E.Not):
            v = self.eval(n.this)
            return None if v is None else not v
        if isinstance(n, E.Is):
            return self.eval(n.this) is None
        if isinstance(n, E.NullSafeEQ):
            a, b = self.eval(n.this), self.eval(n.expression)
            return a is None and b is None if a is None or b is None else _cmp(a, b) == 0
        if isinstance(n, (E.EQ, E.NEQ, E.LT, E.LTE, E.GT, E.GTE)):
            a, b = self.eval(n.this), self.eval(n.expression)
            if a is None or b is None:
                return None
            if isinstance(a, bool) and isinstance(b, str):
                b = {"true": True, "false": False}[b.lower()]
            if isinstance(a, str):
                c = (a > b) - (a < b)
            else:
                c = _cmp(a, b)
            return {E.EQ: c == 0, E.NEQ: c != 0, E.LT: c < 0, E.LTE: c <= 0, E.GT: c > 0, E.GTE: c >= 0}[type(n)]
        if isinstance(n, E.Between):
            x, lo, hi = self.eval(n.this), self.eval(n.args["low"]), self.eval(n.args["high"])
            ge = None if x is None or lo is None else _cmp(x, lo) >= 0
            le = None if x is None or hi is None else _cmp(x, hi) <= 0
            return False if ge is False or le is False else (None if ge is None or le is None else True)
        if isinstance(n, E.In):
            x = self.eval(n.this)
            if x is None:
                return None
            return any(_cmp(x, self.eval(v)) == 0 for v in n.expressions)
        if isinstance(n, E.Like):
            s = self.eval(n.this)
            return None if s is None else s.startswith("a")
        raise NotImplementedError(type(n).__name__)


def _compile(text: str, ansi: bool) -> tuple[Typed, list[Any]]:
    def resolve(c: E.Column) -> Typed:
        return Typed(pl.col(c.name), from_polars(SCHEMA[c.name]()))
    compiler = ScalarCompiler(resolve, ansi)
    node = parse_condition(text)
    typed = compiler.compile(node)
    return typed, compiler.guards


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-12)
    return a == b


def check(text: str, data: list[dict[str, Any]], ansi: bool) -> None:
    frame = pl.DataFrame(data, schema=SCHEMA)
    typed, guards = _compile(text, ansi)
    out = frame.with_columns(typed.expr.alias("v"), *(g.bad.alias(f"g{i}") for i, g in enumerate(guards)))
    node = parse_condition(text)
    for i, row in enumerate(data):
        ref = Reference(row, ansi)
        try:
            expected: Any = ref.eval(node)
            failed = False
        except AnsiFailure:
            failed = True
        hit = any(out[f"g{j}"][i] for j in range(len(guards)))
        assert hit == failed, f"{text} on {row}: reference {'fails' if failed else 'passes'}, goldstream guard {hit}"
        if not failed:
            assert _same(out["v"][i], expected), f"{text} on {row}: goldstream {out['v'][i]!r}, Spark {expected!r}"


@settings(max_examples=150, deadline=None)
@given(text=numeric(2), data=st.lists(rows, min_size=1, max_size=8), ansi=st.booleans())
def test_numeric_expressions_follow_spark(text: str, data: list[dict[str, Any]], ansi: bool) -> None:
    check(text, data, ansi)


@settings(max_examples=150, deadline=None)
@given(text=condition(2), data=st.lists(rows, min_size=1, max_size=8), ansi=st.booleans())
def test_conditions_follow_spark(text: str, data: list[dict[str, Any]], ansi: bool) -> None:
    check(text, data, ansi)


@pytest.mark.parametrize("text, t", [
    ("i1 + i2", INT), ("i1 + l1", BIGINT), ("i1 / i2", DOUBLE), ("d1 % i1", DOUBLE), ("i1 = '5'", BOOLEAN),
    ("100.0 * l1", None), ("lower(s1)", STRING), ("round(d1, 1)", DOUBLE), ("floor(d1)", BIGINT),
])
def test_result_types_are_sparks(text: str, t: Any) -> None:
    typed, _ = _compile(text, True)
    if t is None:
        assert str(typed.type) == "decimal(25,1)"  # decimal(4,1) * decimal(20,0)
    else:
        assert typed.type == t


@pytest.mark.parametrize("text, why", [
    ("b1 = 1", "compares a boolean with a int"),
    ("d1 > 1e309", "does not fit in the range of a double"),
    ("i1 IN ('1', 1)", "mixes values"),
    ("b1 = 'maybe'", "cannot be cast to boolean"),
    ("my_udf(d1) > 0", "unknown function"),
])
def test_spark_refusals(text: str, why: str) -> None:
    with pytest.raises(SqlError, match=why):
        _compile(text, True)


def test_round_is_half_up_on_the_decimal_form() -> None:
    """Spark rounds a double's shortest decimal form HALF_UP: round(2.675, 2) is 2.68
    (binary rounding would give 2.67), round(-2.5) is -3."""
    frame = pl.DataFrame({"d1": [2.675, -2.5, 0.125, None, math.nan]}, schema={"d1": pl.Float64})
    two, _ = _compile("round(d1, 2)", True)
    zero, _ = _compile("round(d1)", True)
    assert frame.select(two.expr).to_series().to_list()[:4] == [2.68, -2.5, 0.13, None]
    assert frame.select(zero.expr).to_series().to_list()[:2] == [3.0, -3.0]


def _java_double_remainder(a: float, b: float) -> float:
    """Java's double %: C's fmod (x % inf is x); an infinite dividend, a zero divisor or a
    NaN gives NaN."""
    try:
        return math.fmod(a, b)
    except ValueError:
        return math.nan
