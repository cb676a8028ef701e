"""A query's Spark SQL text → goldstream's plan, without reading any table.

`SqlQuery.parse(text)` checks the statement against the subset goldstream computes
exactly as Spark does, and splits it into what the engine already knows how to run:

- the window (`window(ts, size[, slide])` or `session_window(ts, gap)` in GROUP BY),
  its event-time column, and the other GROUP BY expressions as keys;
- the row-level work, in terms of the base tables only (CTEs and subqueries in FROM,
  which may only project and filter, are inlined): the WHERE conditions, the joins with
  dimension tables, each key's expression and each aggregate's argument expressions;
- each aggregate call as a function of goldstream's registry over such an argument
  (`FILTER (WHERE c)` folded into the argument as `CASE WHEN c THEN x END`);
- the Gold columns: SELECT items, in order, as expressions over window bounds, keys and
  aggregates (Spark's lateral column aliases resolved to the earlier item).

Types are only known once Silver's (and the dimensions') schema is (sql/compile.py).
Anything outside the subset is an SqlError naming the construct, where and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

import sqlglot.expressions as E

from goldstream.identifiers import check_identifier
from goldstream.sql.dialect import GoldSpark, parse_query
from goldstream.sql.errors import SqlError
from goldstream.sql.scalar import check_functions

STREAM = "silver"
WINDOW_START, WINDOW_END = "__window_start", "__window_end"

_UNITS = {"microsecond": 1, "us": 1, "millisecond": 1000, "ms": 1000, "second": 10**6, "sec": 10**6, "s": 10**6,
          "minute": 60 * 10**6, "min": 60 * 10**6, "m": 60 * 10**6, "hour": 3600 * 10**6, "h": 3600 * 10**6,
          "day": 86400 * 10**6, "d": 86400 * 10**6, "week": 7 * 86400 * 10**6}


def _col(name: str, table: str | None = None) -> E.Column:
    """A column node, quoted only when its name needs it (so messages read as written)."""
    return E.column(name, table=table, quoted=not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name))


def render(node: E.Expression) -> str:
    return node.sql(dialect=GoldSpark)


@dataclass(frozen=True)
class JoinSpec:
    """`JOIN table alias ON silver-side = table.column [AND ...]`, inner or left."""

    table: str
    how: str  # "inner" | "left"
    keys: tuple[tuple[E.Expression, str], ...]  # (expression over the stream side, dimension column)


@dataclass(frozen=True)
class AggCall:
    """One aggregate: a registry function (`fn`, with `options`) over derived row columns."""

    name: str  # internal column: __a<i>
    fn: str
    inputs: tuple[tuple[str, E.Expression], ...]  # (registry argument, expression over base tables)
    options: tuple[tuple[str, object], ...] = ()
    spark: str = ""  # the call as written (for explain and messages)
    arg_type_of: str | None = None  # the registry argument whose type decides the result type


@dataclass(frozen=True)
class SqlQuery:
    text: str
    canonical: str
    window_kind: str
    size: timedelta | None
    slide: timedelta | None
    gap: timedelta | None
    event_time: str
    keys: tuple[E.Expression, ...]
    where: tuple[E.Expression, ...]
    joins: tuple[JoinSpec, ...]
    aggregates: tuple[AggCall, ...]
    outputs: tuple[tuple[str, E.Expression], ...]
    tables: tuple[str, ...] = field(default=())  # dimension tables it reads

    @property
    def key_names(self) -> list[str]:
        return [f"__k{i}" for i in range(len(self.keys))]

    def base_columns(self) -> list[tuple[str | None, str]]:
        """Every (table, column) the row-level work reads (table None: unqualified)."""
        seen: dict[tuple[str | None, str], None] = {(STREAM, self.event_time): None}
        nodes: list[E.Expression] = [*self.keys, *self.where]
        nodes += [e for a in self.aggregates for _, e in a.inputs]
        nodes += [e for j in self.joins for e, _ in j.keys]
        for n in nodes:
            for c in n.find_all(E.Column):
                seen[(c.table or None, c.name)] = None
        for j in self.joins:
            for _, col in j.keys:
                seen[(j.table, col)] = None
        return list(seen)

    @classmethod
    def parse(cls, text: str) -> SqlQuery:
        tree = parse_query(text)
        if not isinstance(tree, E.Select):
            raise SqlError(f"a query is one SELECT; this is a {type(tree).__name__.upper()} "
                           "(UNION and other set operations are not supported)", tree)
        return _Translator(text, tree).translate()


@dataclass
class _Scope:
    """What a FROM clause makes visible, in terms of the base tables."""

    relations: dict[str, str]  # alias or name (lower case) -> base table
    derived: dict[str, E.Expression]  # column name (lower) -> its expression over base tables
    passthrough: bool  # a `*` passed the base tables' columns through
    derived_alias: str | None
    where: list[E.Expression]
    joins: list[JoinSpec]


class _Translator:
    def __init__(self, text: str, tree: E.Select) -> None:
        self.text = text
        self.tree = tree
        self.ctes: dict[str, E.Expression] = {}

    # -- the outer SELECT -----------------------------------------------------------------

    def translate(self) -> SqlQuery:
        tree = self.tree
        check_functions(tree, allowed=("window", "session_window", *_ANON, "Filter", "Distinct", "Star"))
        for cte in (tree.args.get("with_") or tree.args.get("with") or E.With()).expressions:
            self.ctes[cte.alias_or_name.lower()] = cte.this
        self._refuse_modifiers(tree, outer=True)
        scope = self._from(tree)
        if tree.args.get("where") is not None:
            scope.where.append(self._base(tree.args["where"].this, scope))
        group = tree.args.get("group")
        aggregates_used = any(_is_aggregate(n) for item in tree.expressions for n in item.walk())
        if group is None or not group.expressions:
            if aggregates_used:
                raise SqlError("an aggregate with no window: a streaming aggregation in append mode needs an "
                               "event-time window; add GROUP BY window(<event time>, '1 minute') (or "
                               "session_window)", next(n for item in tree.expressions for n in item.walk()
                                                       if _is_aggregate(n)))
            raise SqlError("the query has no GROUP BY window(...): goldstream computes windowed aggregates; add "
                           "GROUP BY window(<event time>, '<size>') and aggregates", tree)
        windows = [g for g in group.expressions if _window_call(g)]
        if len(windows) != 1:
            raise SqlError("GROUP BY needs exactly one window(...) or session_window(...)" if not windows else
                           "GROUP BY has more than one window", group)
        window = windows[0]
        keys = []
        for g in group.expressions:
            if g is window:
                continue
            if any(_window_ref(c) for c in g.find_all(E.Column)):
                raise SqlError(f"`{render(g)}`: the window column used as a key; the window is already part of "
                               "every group (select window.start / window.end instead)", g)
            keys.append(self._base(g, scope))
        kind, size, slide, gap, ts = self._window(window, scope)
        self.keys = keys
        self.aggs: list[AggCall] = []
        outputs: list[tuple[str, E.Expression]] = []
        lateral: dict[str, E.Expression] = {}
        for item in tree.expressions:
            name = self._output_name(item)
            body = item.this if isinstance(item, E.Alias) else item
            post = self._post(body, scope, lateral)
            if name.lower() in {n.lower() for n, _ in outputs}:
                raise SqlError(f"two SELECT items are named {name!r}; Gold columns need distinct names", item)
            outputs.append((name, post))
            lateral[name.lower()] = post
        return SqlQuery(
            text=self.text, canonical=render(tree), window_kind=kind, size=size, slide=slide, gap=gap,
            event_time=ts, keys=tuple(keys), where=tuple(scope.where), joins=tuple(scope.joins),
            aggregates=tuple(self.aggs), outputs=tuple(outputs),
            tables=tuple(dict.fromkeys(j.table for j in scope.joins)))

    def _refuse_modifiers(self, sel: E.Select, outer: bool) -> None:
        checks = [("order", "ORDER BY", "a stream has no order: each window is appended once, when it closes; "
                   "sort when reading Gold"),
                  ("sort", "SORT BY", "a stream has no order"), ("cluster", "CLUSTER BY", "a stream has no order"),
                  ("distribute", "DISTRIBUTE BY", "goldstream decides the partitioning"),
                  ("limit", "LIMIT", "a limit over a stream depends on arrival order; Spark refuses it in append "
                   "mode with aggregation"),
                  ("offset", "OFFSET", "a stream has no order"),
                  ("having", "HAVING", "not supported yet: filter when reading Gold"),
                  ("qualify", "QUALIFY", "window functions are not supported"),
                  ("laterals", "LATERAL VIEW", "not supported")]
        for key, what, why in checks:
            value = sel.args.get(key)
            if value:
                node = value[0] if isinstance(value, list) else value
                raise SqlError(f"{what} is not supported: {why}", node if isinstance(node, E.Expression) else sel)
        if sel.args.get("distinct"):
            raise SqlError("SELECT DISTINCT over a whole query is not supported: a streaming deduplication is not a "
                           "windowed aggregate (count(DISTINCT x) inside a window is)", sel)
        for n in sel.walk():
            if isinstance(n, E.Window):
                raise SqlError("window functions (OVER ...) are not supported over a stream", n)
            if isinstance(n, (E.Subquery, E.Select)) and n is not sel and _in_expression(n, sel):
                raise SqlError("subqueries in expressions are not supported (only in FROM)", n)
        if not outer and sel.args.get("group"):
            raise SqlError("a CTE or subquery may only project and filter; aggregate in the outer query", sel)

    # -- FROM, joins, CTEs --------------------------------------------------------------------

    def _from(self, sel: E.Select) -> _Scope:
        source = sel.args.get("from_") or sel.args.get("from")
        if source is None:
            raise SqlError("the query reads no table: FROM silver", sel)
        scope = self._relation(source.this)
        for join in sel.args.get("joins") or []:
            self._join(join, scope)
        return scope

    def _relation(self, rel: E.Expression) -> _Scope:
        alias = rel.alias_or_name.lower() if rel.alias_or_name else None
        if isinstance(rel, E.Table):
            if rel.args.get("db") or rel.args.get("catalog"):
                raise SqlError(f"`{render(rel)}`: a table is named by its [tables] name, without database", rel)
            name = rel.name.lower()
            if name in self.ctes:
                inner = self.ctes[name]
                return self._derived(inner, alias or name)
            if name != STREAM:
                raise SqlError(f"the query reads from {rel.name!r}: the FROM clause starts with the stream `silver` "
                               "(a dimension table joins it with JOIN ... ON)", rel)
            return _Scope({name: STREAM, (alias or name): STREAM}, {}, True, None, [], [])
        if isinstance(rel, E.Subquery):
            return self._derived(rel.this, alias)
        raise SqlError(f"`{render(rel)}` is not supported in FROM", rel)

    def _derived(self, body: E.Expression, alias: str | None) -> _Scope:
        if not isinstance(body, E.Select):
            raise SqlError("a CTE or subquery must be one SELECT", body)
        self._refuse_modifiers(body, outer=False)
        if any(_is_aggregate(n) for n in body.walk()):
            raise SqlError("a CTE or subquery may only project and filter; aggregate in the outer query",
                           next(n for n in body.walk() if _is_aggregate(n)))
        inner = self._from(body)
        derived: dict[str, E.Expression] = {}
        passthrough = False
        for item in body.expressions:
            if isinstance(item, E.Star) or (isinstance(item, E.Column) and isinstance(item.this, E.Star)):
                passthrough = True
                if inner.derived_alias is not None:
                    derived.update(inner.derived)
                continue
            name = self._output_name(item)
            derived[name.lower()] = self._base(item.this if isinstance(item, E.Alias) else item, inner)
        where = list(inner.where)
        if body.args.get("where") is not None:
            where.append(self._base(body.args["where"].this, inner))
        return _Scope(inner.relations, derived, passthrough, alias, where, inner.joins)

    def _join(self, join: E.Join, scope: _Scope) -> None:
        kind = (join.args.get("kind") or "").upper()
        side = (join.args.get("side") or "").upper()
        if kind in ("CROSS",) or (not join.args.get("on") and not join.args.get("using")):
            raise SqlError("a join needs ON <stream column> = <dimension column>: a cross join is not supported",
                           join)
        if side not in ("", "LEFT") or kind not in ("", "INNER", "OUTER"):
            raise SqlError(f"{' '.join(x for x in (side, kind) if x)} JOIN is not supported: a stream joins a "
                           "dimension table INNER or LEFT (OUTER)", join)
        rel = join.this
        if not isinstance(rel, E.Table):
            raise SqlError("a join's right side is a dimension table named in [tables] (not a subquery)", rel)
        name = rel.name.lower()
        if name == STREAM or name in self.ctes:
            raise SqlError("a stream-stream join (the stream joined with itself or a CTE of it) is not supported: "
                           "join dimension tables only", rel)
        alias = (rel.alias_or_name or name).lower()
        scope.relations[alias] = name
        scope.relations[name] = name
        if join.args.get("using"):
            raise SqlError("JOIN ... USING is not supported: write ON s.col = d.col", join)
        keys: list[tuple[E.Expression, str]] = []
        for cond in _conjuncts(join.args["on"]):
            if not isinstance(cond, E.EQ):
                raise SqlError(f"`{render(cond)}`: a join condition must be equalities joined by AND (a "
                               "non-equality join would compare every row with every dimension row)", cond)
            sides = [cond.this, cond.expression]
            dim_side = [s for s in sides if isinstance(s, E.Column) and (s.table or "").lower() == alias]
            if len(dim_side) != 1:
                raise SqlError(f"`{render(cond)}`: one side must be a column of {alias!r} (qualified), the other "
                               "an expression over the stream", cond)
            other = sides[1] if dim_side[0] is sides[0] else sides[0]
            if any((c.table or "").lower() == alias for c in other.find_all(E.Column)):
                raise SqlError(f"`{render(cond)}` compares the dimension with itself", cond)
            keys.append((self._base(other, scope), dim_side[0].name))
        scope.joins.append(JoinSpec(name, "left" if side == "LEFT" else "inner", tuple(keys)))

    # -- expressions -------------------------------------------------------------------------

    def _base(self, node: E.Expression, scope: _Scope) -> E.Expression:
        """`node` with every column reference rewritten in terms of the base tables."""
        node = node.copy()

        def rewrite(n: E.Expression) -> E.Expression:
            if not isinstance(n, E.Column) or isinstance(n.this, E.Star):
                if isinstance(n, E.Star):
                    raise SqlError("`*` is only allowed as a CTE's SELECT item (and inside count(*))", n)
                return n
            qualifier = (n.table or "").lower() or None
            name = n.name
            if qualifier is not None and qualifier in ("window", "session_window"):
                return n
            if qualifier is None or qualifier == scope.derived_alias:
                if name.lower() in scope.derived:
                    return scope.derived[name.lower()].copy()
                if qualifier is not None and not scope.passthrough:
                    raise SqlError(f"{scope.derived_alias!r} has no column {name!r}", n)
                if not scope.passthrough:
                    raise SqlError(f"unknown column {name!r}", n)
                return _col(name)
            if qualifier in scope.relations:
                return _col(name, scope.relations[qualifier])
            raise SqlError(f"unknown table or alias {qualifier!r} in `{render(n)}`", n)

        return node.transform(rewrite)

    def _window(self, call: E.Expression, scope: _Scope) -> tuple[str, timedelta | None, timedelta | None,
                                                                   timedelta | None, str]:
        name = call.name.lower()
        args = list(call.expressions)
        ts = self._base(args[0], scope) if args else None
        if not isinstance(ts, E.Column) or (ts.table and ts.table != STREAM):
            raise SqlError(f"{name}'s first argument must be a timestamp column of the stream", call)
        literals = args[1:]
        for a in literals:
            if not (isinstance(a, E.Literal) and a.is_string):
                raise SqlError(f"{name}'s durations must be string literals like '1 minute'", a)
        durations = [_duration(str(a.this), a) for a in literals]
        if name == "session_window":
            if len(durations) != 1:
                raise SqlError("session_window(ts, '<gap>') takes a timestamp and a gap", call)
            return "session", None, None, durations[0], ts.name
        if len(durations) == 1:
            return "tumbling", durations[0], None, None, ts.name
        if len(durations) == 2:
            size, slide = durations
            return ("tumbling" if size == slide else "sliding"), size, (None if size == slide else slide), None, ts.name
        raise SqlError("window(ts, size[, slide]) takes a timestamp and one or two durations (a start offset is not "
                       "supported)", call)

    def _output_name(self, item: E.Expression) -> str:
        if isinstance(item, E.Alias):
            name = item.alias
        elif isinstance(item, E.Column) and not isinstance(item.this, E.Star):
            name = item.name
        else:
            raise SqlError(f"`{render(item)}` needs a name: write `{render(item)} AS <name>` (it becomes a Gold "
                           "column)", item)
        try:
            return check_identifier(name)
        except ValueError as err:
            raise SqlError(f"column name {name!r}: {err}", item) from None

    def _post(self, node: E.Expression, scope: _Scope, lateral: dict[str, E.Expression]) -> E.Expression:
        """A SELECT item over window bounds (__window_start/end), keys (__k<i>) and aggregates (__a<i>)."""
        if isinstance(node, E.Column) and _window_ref(node) and isinstance(node.this, E.Identifier) \
                and not node.table:
            raise SqlError("selecting the `window` struct is not supported: select window.start and window.end", node)
        if _is_aggregate(node):
            return E.column(self._aggregate(node, scope))
        if isinstance(node, E.Column):
            if _window_ref(node):
                field_ = node.name.lower()
                if field_ not in ("start", "end"):
                    raise SqlError(f"the window has fields start and end, not {node.name!r}", node)
                return E.column(WINDOW_START if field_ == "start" else WINDOW_END)
        key = self._key_of(node, scope)
        if key is not None:
            return E.column(key)
        if isinstance(node, E.Column) and not node.table and node.name.lower() in lateral:
            return lateral[node.name.lower()].copy()
        if isinstance(node, E.Column):
            raise SqlError(f"column {node.name!r} is neither in GROUP BY nor inside an aggregate", node)
        if isinstance(node, E.Star):
            raise SqlError("SELECT * is not supported in an aggregating query: name the Gold columns", node)
        out = node.copy()
        for key_, child in list(out.args.items()):
            if isinstance(child, E.Expression):
                out.set(key_, self._post(child, scope, lateral))
            elif isinstance(child, list):
                out.set(key_, [self._post(c, scope, lateral) if isinstance(c, E.Expression) else c for c in child])
        return out

    def _key_of(self, node: E.Expression, scope: _Scope) -> str | None:
        if isinstance(node, (E.Literal, E.Boolean, E.Null)):
            return None
        try:
            base = self._base(node, scope)
        except SqlError:
            return None
        for i, k in enumerate(self.keys):
            if base == k:
                return f"__k{i}"
        return None

    def _aggregate(self, node: E.Expression, scope: _Scope) -> str:
        spark = render(node)
        condition = None
        if isinstance(node, E.Filter):
            condition = self._base(node.expression.this, scope)
            node = node.this
        for inner in list(node.walk())[1:]:
            if _is_aggregate(inner):
                raise SqlError("an aggregate inside an aggregate is not supported", inner)
        name = f"__a{len(self.aggs)}"

        def arg(e: E.Expression) -> E.Expression:
            base = self._base(e, scope)
            if condition is None:
                return base
            return E.Case(ifs=[E.If(this=condition.copy(), true=base)])

        def when(c: E.Expression) -> E.Expression:
            return c if condition is None else E.and_(E.paren(condition.copy()), E.paren(c))

        fn_name = type(node).__name__
        if isinstance(node, E.Count):
            target = node.this
            if isinstance(target, E.Distinct):
                values = target.expressions
                if len(values) != 1:
                    raise SqlError("count(DISTINCT ...) of several columns is not supported", node)
                call = AggCall(name, "count_distinct", (("column", arg(values[0])),), spark=spark)
            elif target is None or isinstance(target, E.Star):
                if condition is None:
                    call = AggCall(name, "count", (), spark=spark)
                else:
                    call = AggCall(name, "count_if", (("column", condition.copy()),), (("equals", True),),
                                   spark=spark)
            else:
                if node.expressions:
                    raise SqlError("count of several expressions is not supported", node)
                present = E.Not(this=E.Is(this=E.paren(self._base(target, scope)), expression=E.Null()))
                call = AggCall(name, "count_if", (("column", when(present)),), (("equals", True),), spark=spark)
        elif isinstance(node, E.CountIf):
            call = AggCall(name, "count_if", (("column", when(self._base(node.this, scope))),), (("equals", True),),
                           spark=spark)
        elif fn_name in _SIMPLE or (isinstance(node, E.Anonymous) and node.name.lower() in _ANON):
            fn = _SIMPLE.get(fn_name) or _ANON[node.name.lower()]
            values = [node.this] if not isinstance(node, E.Anonymous) else list(node.expressions)
            if len(values) != 1 or (not isinstance(node, E.Anonymous) and node.expressions):
                raise SqlError(f"{spark} takes one argument", node)
            if isinstance(values[0], E.Distinct):
                raise SqlError(f"{fn}(DISTINCT ...) is not supported (count(DISTINCT x) is)", node)
            call = AggCall(name, fn, (("column", arg(values[0])),), spark=spark, arg_type_of="column")
        elif isinstance(node, E.Quantile):
            p = node.args.get("quantile")
            if not (isinstance(p, E.Literal) and not p.is_string):
                raise SqlError("percentile(x, p) needs p as a number literal between 0 and 1", node)
            call = AggCall(name, "percentile", (("column", arg(node.this)),), (("p", float(p.this)),), spark=spark)
        elif isinstance(node, (E.ArgMax, E.ArgMin)):
            fn = "max_by" if isinstance(node, E.ArgMax) else "min_by"
            by = self._base(node.expression, scope)
            if condition is not None:
                by = E.Case(ifs=[E.If(this=condition.copy(), true=by)])
            call = AggCall(name, fn, (("column", self._base(node.this, scope)), ("by", by)), spark=spark,
                           arg_type_of="column")
        else:
            raise SqlError(f"the aggregate {spark} is not supported; goldstream computes count, count_if, "
                           "count(DISTINCT), sum, avg, min, max, stddev, percentile, median, max_by and min_by",
                           node)
        self.aggs.append(call)
        return name


# sqlglot node -> registry function (one argument)
_SIMPLE = {"Sum": "sum", "Avg": "avg", "Min": "min", "Max": "max", "Stddev": "stddev", "StddevSamp": "stddev",
           "Median": "median"}
_ANON = {"mean": "avg", "std": "stddev"}
_AGGREGATE_NODES = (E.Count, E.CountIf, E.Sum, E.Avg, E.Min, E.Max, E.Stddev, E.StddevSamp, E.Median, E.Quantile,
                    E.ArgMax, E.ArgMin, E.AggFunc, E.Filter)


def _is_aggregate(n: E.Expression) -> bool:
    if isinstance(n, E.Anonymous):
        return n.name.lower() in _ANON
    return isinstance(n, _AGGREGATE_NODES)


def _window_call(n: E.Expression) -> bool:
    return isinstance(n, E.Anonymous) and n.name.lower() in ("window", "session_window")


def _window_ref(c: E.Column) -> bool:
    return (c.table or "").lower() in ("window", "session_window") or \
        (not c.table and c.name.lower() in ("window", "session_window"))


def _in_expression(n: E.Expression, sel: E.Select) -> bool:
    """Whether a subquery sits inside an expression (not a FROM/JOIN or CTE)."""
    parent = n.parent
    while parent is not None and parent is not sel:
        if isinstance(parent, (E.From, E.Join, E.CTE, E.With)):
            return False
        parent = parent.parent
    return True


def _conjuncts(n: E.Expression) -> list[E.Expression]:
    if isinstance(n, E.And):
        return _conjuncts(n.this) + _conjuncts(n.expression)
    if isinstance(n, E.Paren):
        return _conjuncts(n.this)
    return [n]


def _duration(text: str, node: E.Expression) -> timedelta:
    """A Spark interval string: '1 minute', '5 minutes', '1 hour 30 minutes', 'interval 10 seconds'."""
    body = text.strip().lower().removeprefix("interval").strip()
    parts = re.findall(r"(\d+)\s*([a-z]+?)s?\b", body)
    if not parts or re.sub(r"(\d+)\s*([a-z]+)", "", body).strip():
        raise SqlError(f"{text!r} is not a duration like '1 minute' or '10 seconds'", node)
    total = 0
    for amount, unit in parts:
        if unit not in _UNITS:
            raise SqlError(f"{text!r}: unknown unit {unit!r} (use seconds, minutes, hours, days)", node)
        total += int(amount) * _UNITS[unit]
    if total <= 0:
        raise SqlError(f"{text!r} must be positive", node)
    return timedelta(microseconds=total)
