"""A TOML query's conditions (`filter`, an aggregate's `where`) in the one SQL path.

They are Spark SQL boolean expressions, parsed by the same parser as SQL queries
(sql/dialect.py) and compiled by the same compiler (sql/scalar.py), so they mean what
Spark means, implicit casts, refusals and ANSI errors included. Parsing needs no schema
(validate-config); compiling does (at start, against Silver's columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import sqlglot.expressions as E

from goldstream.sql.dialect import GoldSpark, parse_condition
from goldstream.sql.errors import SqlError
from goldstream.sql.scalar import Guard, ScalarCompiler, Typed, check_functions
from goldstream.sql.types import from_polars

ConditionError = SqlError


@dataclass(frozen=True)
class Condition:
    """A parsed condition: its text, its tree, and the Silver columns it reads."""

    text: str
    node: E.Expression
    columns: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Condition:
        node = parse_condition(text)
        for c in node.find_all(E.Column):
            if c.table:
                raise SqlError(f"`{c.sql(dialect=GoldSpark)}`: a condition names Silver's columns without a table",
                               c)
        if any(isinstance(n, (E.Select, E.Subquery, E.Window)) for n in node.walk()):
            raise SqlError("a condition holds no subquery or window function", node)
        if any(isinstance(n, E.AggFunc) for n in node.walk()):
            raise SqlError("a condition is evaluated per row: it holds no aggregate", node)
        check_functions(node)
        return cls(text, node, tuple(dict.fromkeys(c.name for c in node.find_all(E.Column))))

    @property
    def canonical(self) -> str:
        """The condition as the parser read it, rendered again (what an exported job runs)."""
        return self.node.sql(dialect=GoldSpark, comments=False)

    def compile(self, schema: dict[str, pl.DataType], ansi: bool = True) -> tuple[pl.Expr, list[Guard]]:
        """Its Polars expression over rows of `schema` (null where SQL gives null) and its
        ANSI guards; SqlError where Spark refuses it (a type mismatch, not a boolean)."""
        def resolve(c: E.Column) -> Typed:
            if c.name not in schema:
                raise SqlError(f"unknown column {c.name!r}", c)
            return Typed(pl.col(c.name), from_polars(schema[c.name]))

        compiler = ScalarCompiler(resolve, ansi)
        expr = compiler.condition(self.node)
        return expr, compiler.guards


def spark_condition(text: str) -> str:
    """The condition as an exported Spark job receives it: the parser's reading rendered
    again, without comments, so Spark evaluates exactly what goldstream parsed (never the raw
    text, where Spark's lexer could see a comment or a call goldstream did not). SqlError for
    anything the parser refuses. The one place the export renders conditions."""
    return Condition.parse(text).canonical
