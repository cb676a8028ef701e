"""SQL semantics through the engine's one-pass row pass (merge of `engine` into main): a
SQL WHERE comes after the watermark (rows failing it still move the clock, but do not set
a pane's restart point), a TOML filter before it; ANSI errors name the Silver version that
raised them however the commits are batched."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from goldstream.config import QuerySpec
from goldstream.engine.sessions import windowed_operator
from goldstream.engine.state import WindowedAggregation

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
SCHEMA = {"ts": pl.Datetime("us", "UTC"), "k": pl.String(), "x": pl.Int64()}


def _rows(spec: list[tuple[int, int, str, int]]) -> pl.DataFrame:
    """(version, minute, k, x) per row."""
    return pl.DataFrame({"__version": [s[0] for s in spec], "ts": [T0 + dt.timedelta(minutes=s[1]) for s in spec],
                         "k": [s[2] for s in spec], "x": [s[3] for s in spec]},
                        schema={"__version": pl.Int64, **SCHEMA})


def _sql(where: str, select: str = "count(*) AS n") -> QuerySpec:
    return QuerySpec.model_validate({"name": "q", "watermark_delay": "1 minute", "sql":
                                     f"SELECT window.start AS ws, k, {select} FROM silver {where} "
                                     "GROUP BY window(ts, '1 minute'), k"})


def _toml(condition: str) -> QuerySpec:
    return QuerySpec.model_validate({"name": "q", "event_time": "ts", "keys": ["k"], "watermark_delay": "1 minute",
                                     "window": {"kind": "tumbling", "size": "1m"}, "filter": condition,
                                     "aggregates": [{"name": "n", "fn": "count"}]})


def _batches(data: list[tuple[int, int, str, int]], batching: str) -> list[list[tuple[int, int, str, int]]]:
    return [data] if batching == "one" else [[r for r in data if r[0] == v] for v in sorted({r[0] for r in data})]


@pytest.mark.parametrize("batching", ["one", "each"])
@pytest.mark.parametrize(("sql", "late"), [(True, 1), (False, 0)])
def test_sql_where_follows_the_watermark_a_toml_filter_precedes_it(batching: str, sql: bool, late: int) -> None:
    # version 1's row fails the condition but is 10 minutes ahead: for SQL it moves the
    # watermark, so version 2's row (minute 2) is late; for a TOML filter it moves nothing
    data = [(0, 0, "a", 1), (0, 1, "a", 1), (1, 10, "b", 1), (2, 2, "a", 1), (3, 20, "a", 1)]
    engine = WindowedAggregation(_sql("WHERE k = 'a'") if sql else _toml("k = 'a'"), input_schema=dict(SCHEMA))
    results = [engine.process(_rows(b)) for b in _batches(data, batching)]
    assert sum(r.rows_late for r in results) == late
    assert sum(r.rows_filtered for r in results) == 1
    assert pl.concat([r.closed for r in results])["n"].sum() == 3 - late


@pytest.mark.parametrize("batching", ["one", "each"])
def test_rows_failing_a_sql_where_do_not_set_the_restart_point(batching: str) -> None:
    data = [(0, 5, "b", 1), (1, 5, "a", 1), (2, 6, "b", 1)]
    engine = WindowedAggregation(_sql("WHERE k = 'a'"), input_schema=dict(SCHEMA))
    for b in _batches(data, batching):
        engine.process(_rows(b))
    assert engine.oldest_version_in_state() == 1


@pytest.mark.parametrize("batching", ["one", "each"])
def test_sql_session_where_follows_the_watermark(batching: str) -> None:
    q = QuerySpec.model_validate({"name": "q", "watermark_delay": "1 minute", "sql":
                                  "SELECT session_window.start AS ws, session_window.end AS we, k, count(*) AS n "
                                  "FROM silver WHERE k = 'a' GROUP BY session_window(ts, '2 minutes'), k"})
    engine = windowed_operator(q, input_schema=dict(SCHEMA))
    data = [(0, 0, "a", 1), (1, 30, "b", 1), (2, 1, "a", 1), (3, 40, "a", 1)]
    results = [engine.process(_rows(b)) for b in _batches(data, batching)]
    assert sum(r.rows_late for r in results) == 1


@pytest.mark.parametrize("batching", ["one", "each"])
def test_an_ansi_error_names_its_silver_version(batching: str) -> None:
    engine = WindowedAggregation(_sql("", "count(*) AS n, sum(10 / x) AS s"), input_schema=dict(SCHEMA))
    data = [(0, 0, "a", 1), (1, 1, "a", 2), (2, 2, "a", 0), (3, 3, "a", 0)]
    with pytest.raises(Exception, match="division by zero in `10 / x` at Silver version 2 "):
        for b in _batches(data, batching):
            engine.process(_rows(b))
