"""The projection step of a SQL query, before the engine's row pass: Silver rows joined
with their dimension rows, and each key and aggregate argument computed as a column.

This is the engine's one touch point with SQL (engine/state.py calls `prepare` on the
rows it groups, `passed` for the WHERE, `guards` for ANSI errors, `gold` on the windows
it emits). Dimension tables are read once per Delta version (sql/dimensions.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from goldstream.errors import SourceError
from goldstream.sql.errors import SqlError

# sqlglot (behind sql.compile) is imported only by queries that hold SQL: a TOML query
# without conditions starts without it.

DIM_PREFIX = "__dim."
GUARD = "__guard"


def split_schema(schema: dict[str, pl.DataType]) -> tuple[dict[str, pl.DataType], dict[str, dict[str, pl.DataType]]]:
    """An engine input schema → (Silver's columns, each dimension's columns); dimensions'
    columns are listed as `__dim.<table>.<column>` (Stream.open adds them)."""
    silver: dict[str, pl.DataType] = {}
    dims: dict[str, dict[str, pl.DataType]] = {}
    for name, dtype in schema.items():
        if name.startswith(DIM_PREFIX):
            table, _, column = name[len(DIM_PREFIX):].partition(".")
            dims.setdefault(table, {})[column] = dtype
        else:
            silver[name] = dtype
    return silver, dims


@dataclass
class SqlRows:
    """A SQL query's row-level work, typed against the engine's input schema."""

    compiled: Any  # sql.compile.CompiledSql
    dimensions: Any = None  # sql.dimensions.Dimensions: the frames joined per batch
    # SQL: the watermark sees every row, before WHERE and joins (withWatermark comes first);
    # a TOML `filter` removes rows before the watermark (they are no input at all).
    watermark_first: bool = True

    @classmethod
    def build(cls, query: Any, input_schema: dict[str, pl.DataType], dimensions: Any = None) -> SqlRows:
        from goldstream.sql.compile import compile_sql
        silver, dims = split_schema(input_schema)
        try:
            compiled = compile_sql(query.sql_query, silver, dims, ansi=query.ansi)
        except SqlError as err:
            raise SourceError(f"query {query.name!r}: its SQL does not fit the tables' schemas: {err}. Fix the "
                              "query (config) or the table; nothing was written.") from None
        return cls(compiled, dimensions)

    @classmethod
    def for_conditions(cls, query: Any, input_schema: dict[str, pl.DataType]) -> SqlRows | None:
        """A TOML query's `filter` and aggregates' `where`, compiled by the SQL path (None:
        it has none). Each `where` becomes a boolean column the aggregate reads."""
        if query.filter is None and not any(a.where is not None for a in query.aggregates):
            return None
        from goldstream.functions.aggregate import where_column
        from goldstream.sql.compile import CompiledSql
        from goldstream.sql.condition import Condition
        silver, _ = split_schema(input_schema)
        guards: list[Any] = []
        passed = None
        try:
            if query.filter is not None:
                passed, found = Condition.parse(query.filter).compile(silver, query.ansi)
                guards += found
            derived = []
            for a in query.aggregates:
                if a.where is not None:
                    expr, found = Condition.parse(a.where).compile(silver, query.ansi)
                    derived.append((where_column(a.name), expr.alias(where_column(a.name))))
                    reach = None if passed is None else passed.fill_null(False)
                    guards += [g if reach is None else type(g)(g.bad & reach, g.message) for g in found]
        except SqlError as err:
            raise SourceError(f"query {query.name!r}: a condition does not fit Silver's schema: {err}") from None
        if passed is None and not derived:
            return None
        compiled = CompiledSql(tuple(derived), {name: pl.Boolean() for name, _ in derived}, passed, tuple(guards),
                               (), (), {}, (), {})
        return cls(compiled, None, watermark_first=False)

    def prepare(self, rows: pl.LazyFrame) -> pl.LazyFrame:
        """Rows joined with the dimensions' current versions, plus the derived columns."""
        from goldstream.sql.compile import MATCHED, dim_column
        for j in self.compiled.joins:
            if self.dimensions is None:
                raise RuntimeError(f"table {j.table!r} is joined but no dimension tables are open")
            frame = self.dimensions.frame(j.table)
            needed = list(dict.fromkeys([*j.right, *j.columns]))
            dim = frame.lazy().select(
                *(pl.col(c).alias(dim_column(j.table, c)) for c in needed),
                pl.lit(True).alias(f"{MATCHED}.{j.table}"))
            rows = rows.join(dim, left_on=list(j.left), right_on=[dim_column(j.table, c) for c in j.right],
                             how="left", coalesce=False, suffix=f"__{j.table}")
        return rows.with_columns(e for _, e in self.compiled.derived)

    @property
    def passed(self) -> pl.Expr | None:
        return self.compiled.passed

    def guard_partials(self) -> list[pl.Expr]:
        """Per group of the row pass: did any row hit each ANSI error."""
        return [g.bad.any().alias(f"{GUARD}{i}") for i, g in enumerate(self.compiled.guards)]

    def guard_names(self) -> list[str]:
        return [f"{GUARD}{i}" for i in range(len(self.compiled.guards))]

    def check_guards(self, partials: pl.DataFrame, version_column: str, query: str) -> None:
        """Stop with the first ANSI error of the batch: its Silver version and expression."""
        for i, g in enumerate(self.compiled.guards):
            name = f"{GUARD}{i}"
            if name in partials.columns:
                hit = partials.filter(pl.col(name))
                if hit.height:
                    raise AnsiError(f"query {query!r}: {g.message} at Silver version {hit[version_column].min()} "
                                    "(Spark's ANSI mode stops the query here; set `ansi = false` on the query for "
                                    "Spark's legacy NULL instead). Nothing of this batch was written.")

    def gold(self, frame: pl.DataFrame, query: str) -> pl.DataFrame:
        """The engine's closed windows → Gold columns, names and Spark types (a TOML query's
        windows are already Gold's)."""
        if not self.compiled.gold:
            return frame
        out = frame.select(*(e for _, e in self.compiled.gold), *(g.bad.alias(f"{GUARD}{i}")
                                                                 for i, g in enumerate(self.compiled.gold_guards)))
        for i, g in enumerate(self.compiled.gold_guards):
            hit = out.filter(pl.col(f"{GUARD}{i}"))
            if hit.height:
                raise AnsiError(f"query {query!r}: {g.message} in the window starting "
                                f"{frame.filter(out[f'{GUARD}{i}'])['window_start'][0]} (Spark's ANSI mode stops "
                                "the query here; set `ansi = false` for Spark's legacy NULL). Nothing of this batch "
                                "was written.")
        return out.select(list(self.compiled.gold_types))


class AnsiError(SourceError):
    """An expression failed as Spark's ANSI mode fails it (division by zero, overflow, cast)."""
