"""The contract of every registered function, checked for each one, so that a function
cannot be added half-way: its state fields are the ones it declares (after update and
after merge), merging in parts gives what one pass gives, its finalized column has the
Gold type it declares for every Silver type it accepts, and it has a Spark SQL form.

A new function needs an entry in EXAMPLES below; the registry check fails until it has one.
"""

from __future__ import annotations

import math
from decimal import Decimal
from datetime import date, datetime, timezone
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from goldstream.config import AggregateSpec
from goldstream.functions.aggregate import AggregateFunction, where_column
from goldstream.functions.base import Function, NoSparkEquivalent
from goldstream.sql.condition import Condition, spark_condition
from goldstream.functions.projection import Projection
from goldstream.functions.registry import ARGUMENTS, FUNCTIONS, build
from goldstream.source.schema import polars_type

# Valid arguments for each function: every way it can be configured.
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "count": [{}, {"where": "y > 0"}],
    "count_if": [{"column": "x", "equals": True}, {"column": "x", "equals": "a"}, {"column": "x", "equals": 3.0},
                 {"column": "x", "above": 2.0, "below": 0.0}, {"column": "x", "below": 0.0},
                 {"where": "y > 0 OR y IS NULL"}, {"column": "x", "below": 0.0, "where": "NOT y < 1"}],
    "count_distinct": [{"column": "x"}, {"column": "x", "where": "y BETWEEN 0 AND 2"}],
    "avg": [{"column": "x"}, {"column": "x", "where": "y IN (1, 3)"}],
    "sum": [{"column": "x"}],
    "min": [{"column": "x"}, {"column": "x", "where": "y >= 1"}],
    "max": [{"column": "x"}],
    "stddev": [{"column": "x"}, {"column": "x", "where": "y <> 2"}],
    "percentile": [{"column": "x", "p": 0.9}, {"column": "x", "p": 0.0}, {"column": "x", "p": 1.0},
                   {"column": "x", "p": 0.25, "where": "y > 0"}],
    "median": [{"column": "x"}],
    "max_by": [{"column": "x", "by": "y"}, {"column": "x", "by": "y", "where": "y < 3"}],
    "min_by": [{"column": "x", "by": "y"}],
    "ratio": [{"numerator": ["a", "b"], "denominator": "c"}],
}
CASES = [(fn, args) for fn, examples in EXAMPLES.items() for args in examples]

_VALUES: dict[str, list[Any]] = {  # per Delta type: a null, duplicates, and NaN where it exists
    "boolean": [True, False, None, True, True, False],
    "string": ["a", "b", None, "a", "", "a"],
    "integer": [1, 5, None, 3, 3, -2],
    "float": [1.5, math.nan, None, -2.0, 2.5, 7.0],
    "timestamp": [datetime(2024, 1, 1, 12, tzinfo=timezone.utc), None, datetime(1969, 7, 20, tzinfo=timezone.utc),
                  datetime(2024, 1, 1, 12, tzinfo=timezone.utc), datetime(2030, 1, 1, tzinfo=timezone.utc),
                  datetime(2024, 1, 1, 11, 59, tzinfo=timezone.utc)],
    "date": [date(2024, 1, 1), None, date(1969, 7, 20), date(2024, 1, 1), date(2030, 1, 1), date(2000, 2, 29)],
    "binary": [b"a", b"", None, b"a", b"\x00", b"b"],
    "decimal": [Decimal("1.500"), Decimal("-2.125"), None, Decimal("1.500"), Decimal("999999999.999"),
                Decimal("0.001")],
}
# The column conditions and max_by/min_by order by: ties, a null, NaN.
_Y = [1.0, 3.0, None, 3.0, math.nan, 0.0]


def _function(fn: str, args: dict[str, Any]) -> Function:
    return build(AggregateSpec(name="out", fn=fn, **args))


def _silver(delta_type: str) -> pl.DataFrame:
    """Two groups of rows for column `x` read as `delta_type`, and the group key `g`."""
    dtype = polars_type("decimal(12,3)" if delta_type == "decimal" else delta_type)
    values = _VALUES["float" if dtype.is_float() else "integer" if dtype.is_integer() else delta_type]
    assert len(values) == len(_Y)
    x = pl.Series("x", values * 2).cast(dtype)
    return pl.DataFrame({"g": [0] * len(values) + [1] * len(values), "x": x, "y": _Y + _Y[::-1]})


def _aggregate_cases() -> list[tuple[str, dict[str, Any], str]]:
    out = []
    for fn, args in CASES:
        function = _function(fn, args)
        if isinstance(function, AggregateFunction):
            accepted = function.silver_inputs().get("x") or {"integer"}  # count reads no column
            out += [(fn, args, t) for t in sorted(accepted)]
    return out


def test_every_function_has_examples_and_is_registered() -> None:
    assert set(EXAMPLES) == set(FUNCTIONS)

    def concrete(cls: type[Function]) -> set[type[Function]]:
        below = {c for sub in cls.__subclasses__() for c in concrete(sub)}
        return below | ({cls} if "fn" in vars(cls) else set())

    assert concrete(Function) == set(FUNCTIONS.values())
    assert all(issubclass(f, (AggregateFunction, Projection)) for f in FUNCTIONS.values())


def test_config_takes_exactly_the_arguments_functions_declare() -> None:
    assert [f for f in AggregateSpec.model_fields if f not in ("name", "fn")] == list(ARGUMENTS)


@pytest.mark.parametrize(("fn", "args"), CASES)
def test_has_a_spark_sql_form_naming_its_inputs(fn: str, args: dict[str, Any]) -> None:
    function = _function(fn, args)
    try:
        sql = function.spark_sql()
    except NoSparkEquivalent as refused:  # then it names Spark's closest form, and says it differs
        assert refused.approximate and "not the exact" in str(refused)
        sql = refused.approximate
    assert sql.strip()
    for column in [*function.silver_inputs(), *function.finalized_inputs()]:
        assert f"`{column}`" in sql
    if args.get("where"):
        assert sql.endswith(f"FILTER (WHERE {spark_condition(args['where'])})")


def test_only_a_distinct_count_lacks_an_exact_spark_form() -> None:
    refused = [fn for fn, args in CASES if _refuses_spark(_function(fn, args))]
    assert set(refused) == {"count_distinct"}


def _refuses_spark(function: Function) -> bool:
    try:
        function.spark_sql()
    except NoSparkEquivalent:
        return True
    return False


@pytest.mark.parametrize(("fn", "args", "delta_type"), _aggregate_cases())
def test_aggregate_state_fields_merge_and_gold_type(fn: str, args: dict[str, Any], delta_type: str) -> None:
    rows = _silver(delta_type)
    input_schema = dict(rows.schema)
    function = _function(fn, args).typed(input_schema)  # as the engine builds it: knowing Silver's types
    assert isinstance(function, AggregateFunction)
    if function.where is not None:  # computed before the row pass, as the engine does (sql/rows.py)
        where, _ = Condition.parse(function.where).compile(input_schema)
        rows = rows.with_columns(where.alias(where_column(function.name)))
    fields = function.state_fields()

    # update: one row per group holding exactly the declared state fields
    state = rows.group_by("g", maintain_order=True).agg(*function.update())
    assert state.columns == ["g", *fields]

    # merge: state rows of the same group fold into the same fields and types; merging
    # state of parts (here: each half of every group) equals one update over all rows
    halves = rows.with_columns((pl.int_range(pl.len()).over("g") % 2).alias("half"))
    parts = halves.group_by("g", "half", maintain_order=True).agg(*function.update()).drop("half")
    merged = (parts.with_columns(function.merge_inputs(["g"]))
              .group_by("g", maintain_order=True).agg(*function.merge()))
    assert merged.schema == state.schema
    final = merged.select("g", function.finalize())
    assert_frame_equal(final, state.select("g", function.finalize()), rel_tol=1e-12)

    # finalize: the declared Gold type, without any cast
    assert final.columns == ["g", function.name]
    assert final.schema[function.name] == function.return_type(input_schema)


@pytest.mark.parametrize(("fn", "args"), [(fn, args) for fn, args in CASES if fn == "ratio"])
def test_projection_reads_declared_outputs_and_has_its_gold_type(fn: str, args: dict[str, Any]) -> None:
    function = _function(fn, args)
    assert isinstance(function, Projection)
    inputs = function.finalized_inputs()
    assert inputs
    finalized = pl.DataFrame({c: pl.Series([1, None, 0], dtype=pl.Int64) for c in inputs})
    out = finalized.select(function.evaluate())
    assert out.schema == {function.name: function.return_type({})}
