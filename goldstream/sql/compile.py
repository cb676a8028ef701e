"""An SqlQuery typed against Silver's (and its dimensions') schema: the Polars expressions
of the row pass and of the Gold columns, with Spark's result types.

Row side (`derived`): each key `__k<i>` and each aggregate argument `__a<i>.<arg>` is a
column computed from a Silver row (joined with its dimension rows), so the registry's
aggregates see a plain column; `passed` is the WHERE (and, for an inner join, "matched").
Gold side (`gold`): each SELECT item over the window bounds, the keys and the aggregates'
finalized values, cast to Spark's type for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import sqlglot.expressions as E

from goldstream.sql.errors import SqlError
from goldstream.sql.query import STREAM, WINDOW_END, WINDOW_START, AggCall, SqlQuery
from goldstream.sql.scalar import Guard, ScalarCompiler, Typed
from goldstream.sql.types import BIGINT, DOUBLE, TIMESTAMP, SType, decimal, from_polars

MATCHED = "__matched"


def dim_column(table: str, column: str) -> str:
    """The name a dimension's column has in the joined rows (apart from Silver's)."""
    return f"__dim.{table}.{column}"


def arg_column(agg: str, argument: str) -> str:
    return f"{agg}.{argument}"


@dataclass(frozen=True)
class CompiledJoin:
    table: str
    how: str
    left: tuple[pl.Expr, ...]  # over the stream's rows
    right: tuple[str, ...]  # dimension columns
    columns: tuple[str, ...]  # dimension columns the query reads


@dataclass(frozen=True)
class CompiledSql:
    derived: tuple[tuple[str, pl.Expr], ...]
    derived_types: dict[str, pl.DataType]
    passed: pl.Expr | None
    guards: tuple[Guard, ...]
    joins: tuple[CompiledJoin, ...]
    gold: tuple[tuple[str, pl.Expr], ...]
    gold_types: dict[str, pl.DataType]
    gold_guards: tuple[Guard, ...]
    agg_result_types: dict[str, SType]


def compile_sql(q: SqlQuery, silver: dict[str, pl.DataType], dims: dict[str, dict[str, pl.DataType]],
                ansi: bool = True) -> CompiledSql:
    """Type `q` over Silver's columns and each joined dimension's columns (SqlError if a
    column is unknown, ambiguous, or used as Spark would refuse)."""

    def resolve(c: E.Column) -> Typed:
        table, name = (c.table or None), c.name
        if table is None:
            in_silver = name in silver
            owners = [t for t in q.tables if name in dims.get(t, {})]
            if in_silver and owners or len(owners) > 1:
                raise SqlError(f"column {name!r} is ambiguous: it is in {', '.join(['silver'] * in_silver + owners)}; "
                               "qualify it (s.col / a.col)", c)
            if in_silver:
                return Typed(pl.col(name), from_polars(silver[name]))
            if owners:
                return Typed(pl.col(dim_column(owners[0], name)), from_polars(dims[owners[0]][name]))
            raise SqlError(f"unknown column {name!r}: Silver has {', '.join(silver)}", c)
        if table == STREAM:
            if name not in silver:
                raise SqlError(f"Silver has no column {name!r}; it has {', '.join(silver)}", c)
            return Typed(pl.col(name), from_polars(silver[name]))
        schema = dims.get(table)
        if schema is None:
            raise SqlError(f"unknown table {table!r}", c)
        if name not in schema:
            raise SqlError(f"table {table!r} has no column {name!r}; it has {', '.join(schema)}", c)
        return Typed(pl.col(dim_column(table, name)), from_polars(schema[name]))

    rows = ScalarCompiler(resolve, ansi)
    joins: list[CompiledJoin] = []
    passed: pl.Expr | None = None
    for j in q.joins:
        left = []
        for expr, col in j.keys:
            t = rows.compile(expr)
            if col not in dims.get(j.table, {}):
                raise SqlError(f"table {j.table!r} has no column {col!r}", expr)
            right_t = from_polars(dims[j.table][col])
            if not (t.type == right_t or t.type.is_numeric and right_t.is_numeric):
                raise SqlError(f"the join compares `{expr.sql(dialect='spark')}` ({t.type}) with {j.table}.{col} "
                               f"({right_t}); cast one side", expr)
            left.append(t.expr.cast(right_t.polars()))
        columns = tuple(dict.fromkeys(c for (tb, c) in q.base_columns() if tb == j.table or
                                      (tb is None and c in dims.get(j.table, {}) and c not in silver)))
        joins.append(CompiledJoin(j.table, j.how, tuple(left), tuple(c for _, c in j.keys), columns))
        if j.how == "inner":
            matched = pl.col(f"{MATCHED}.{j.table}").is_not_null()
            passed = matched if passed is None else passed & matched
    for w in q.where:
        cond = rows.condition(w, passed)
        passed = cond.fill_null(False) if passed is None else passed & cond.fill_null(False)
    derived: list[tuple[str, pl.Expr]] = []
    types: dict[str, pl.DataType] = {}
    key_types: dict[str, SType] = {}
    for name, node in zip(q.key_names, q.keys):
        t = rows.compile(node)
        derived.append((name, t.expr.alias(name)))
        types[name] = t.type.polars()
        key_types[name] = t.type
    result_types: dict[str, SType] = {}
    for agg in q.aggregates:
        arg_types: dict[str, SType] = {}
        for argument, node in agg.inputs:
            t = rows.compile(node, passed)
            col = arg_column(agg.name, argument)
            derived.append((col, t.expr.alias(col)))
            types[col] = t.type.polars()
            arg_types[argument] = t.type
        result_types[agg.name] = _result_type(agg, arg_types)

    def resolve_gold(c: E.Column) -> Typed:
        name = c.name
        if name in (WINDOW_START, WINDOW_END):
            return Typed(pl.col("window_start" if name == WINDOW_START else "window_end"), TIMESTAMP)
        if name in key_types:
            return Typed(pl.col(name), key_types[name])
        if name in result_types:
            return Typed(pl.col(name).cast(result_types[name].polars()), result_types[name])
        raise SqlError(f"unknown column {name!r}", c)

    post = ScalarCompiler(resolve_gold, ansi)
    gold: list[tuple[str, pl.Expr]] = []
    gold_types: dict[str, pl.DataType] = {}
    for name, node in q.outputs:
        t = post.compile(node)
        dtype = t.type.polars() if t.type.name != "void" else pl.Null()
        gold.append((name, t.expr.cast(dtype).alias(name)))
        gold_types[name] = dtype
    return CompiledSql(tuple(derived), types, passed, tuple(rows.guards), tuple(joins), tuple(gold), gold_types,
                       tuple(post.guards), result_types)


def _result_type(agg: AggCall, args: dict[str, SType]) -> SType:
    """Spark's result type of an aggregate over arguments of these types."""
    x = args.get("column")
    if agg.fn in ("count", "count_if", "count_distinct"):
        return BIGINT
    assert x is not None
    if agg.fn == "sum":
        if x.is_integral:
            return BIGINT
        if x.name == "decimal":
            return decimal(x.precision + 10, x.scale)
        _numeric(agg, x)
        return DOUBLE
    if agg.fn == "avg":
        if x.name == "decimal":
            return decimal(x.precision + 4, x.scale + 4)
        _numeric(agg, x)
        return DOUBLE
    if agg.fn in ("stddev", "percentile", "median"):
        _numeric(agg, x)
        return DOUBLE
    return x  # min, max, max_by, min_by keep the value's type


def _numeric(agg: AggCall, t: SType) -> None:
    if not (t.is_numeric or t.name == "void"):
        raise SqlError(f"{agg.spark} needs a number, and its argument is a {t}")
