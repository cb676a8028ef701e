"""The query language's conditions and newer functions, as a user meets them: errors in the
configuration name the query, the field and what to do (a condition that does not parse,
the position in its string); errors only Silver can reveal (an unknown column, a condition
that is not boolean, a function on a type it does not take) stop the query at start,
before anything is written. Null and NaN in conditions follow Spark's rules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from goldstream.config import QuerySpec, load_settings
from goldstream.errors import ConfigError
from goldstream.sql.condition import Condition
from goldstream.sink.definition import changes, definition, fingerprint
from silver_cases import cli, frames, summary
from testsupport.config import example_doc, seed_query_list, write_config
from testsupport.silver import append_commits


def _config_error(tmp_path: Path, query_changes: dict[str, Any], aggregates: list[dict[str, Any]] | None = None) -> str:
    doc = example_doc()
    query = {**doc["queries"][0], **query_changes}
    if aggregates is not None:
        query["aggregates"] = aggregates
    doc["queries"] = [query]
    with pytest.raises(ConfigError) as refused:
        load_settings(write_config(tmp_path / "bad.toml", doc=doc))
    return str(refused.value)


@pytest.mark.parametrize(("changes", "aggregates", "expected"), [
    ({"filter": "on_ground = false AND altitude_meters >"}, None,
     "queries.0: query 'country_stats': filter: line 1, column 39: cannot parse the condition: > is incomplete: "
     "its right-hand side is missing"),
    ({"filter": "on_ground = false ORDER BY altitude_meters"}, None,
     "filter: `on_ground = false ORDER BY altitude_meters` is not a single condition"),
    ({"filter": "on_ground = false /* unclosed"}, None,
     "filter: line 1, column 19: unclosed /* comment (Spark refuses it: UNCLOSED_BRACKETED_COMMENT)"),
    ({}, [{"name": "high", "fn": "count_if", "where": "altitude_meters > 12000 OR"}],
     "query 'country_stats': aggregate 'high' where: line 1, column 25: cannot parse the condition: OR is "
     "incomplete"),
    ({}, [{"name": "h", "fn": "count", "where": "my_udf(altitude_meters) > 1"}],
     "aggregate 'h' where: line 1, column 1: unknown function my_udf()"),
    ({}, [{"name": "p", "fn": "percentile", "column": "velocity_kmh", "p": 90}],
     "aggregate 'p': percentile needs 'p', a number between 0.0 and 1.0 (0.9 for the 90th percentile), got 90.0"),
    ({}, [{"name": "p", "fn": "percentile", "column": "velocity_kmh"}], "percentile needs 'p'"),
    ({}, [{"name": "m", "fn": "median", "column": "velocity_kmh", "p": 0.4}],
     "aggregate 'm': 'p' only apply to fn = 'percentile'"),
    ({}, [{"name": "c", "fn": "count_if"}],
     "aggregate 'c': count_if needs either a 'where' condition, or a 'column' with 'equals' or 'above'/'below'"),
    ({}, [{"name": "b", "fn": "max_by", "column": "callsign"}], "max_by"),
    ({}, [{"name": "d", "fn": "count_distinct"}], "aggregate 'd': fn = 'count_distinct' needs a 'column'"),
    ({"window": {"kind": "session"}}, None,
     "queries.0.window: a session window needs a gap, e.g. window = { kind = \"session\", gap = \"5m\" }"),
    ({"window": {"kind": "session", "gap": "5m", "size": "10m"}}, None,
     "queries.0.window: a session window has no size or slide"),
    ({"window": {"kind": "session", "gap": "0s"}}, None, "a session gap must be positive whole milliseconds, got 0us"),
    ({"window": {"kind": "tumbling", "size": "1m", "gap": "5m"}}, None,
     "queries.0.window: a tumbling window has no gap; gap applies to kind = 'session'"),
])
def test_configuration_errors_name_query_field_and_fix(tmp_path: Path, changes: dict[str, Any],
                                                       aggregates: list[dict[str, Any]] | None, expected: str) -> None:
    message = _config_error(tmp_path, changes, aggregates)
    assert expected in message, message
    assert "Traceback" not in message


def test_errors_only_silver_reveals_stop_the_query_at_start(tmp_path: Path) -> None:
    stats, anomalies = seed_query_list()
    query = {**stats, "filter": "altitude_meters > 0 AND squawk = '7700'", "aggregates": [
        {"name": "n", "fn": "count", "where": "velocity_kmh + 1"},
        {"name": "p50_country", "fn": "median", "column": "origin_country"},
        {"name": "bad_compare", "fn": "count_if", "where": "on_ground = 1"},
    ]}
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, frames(2))
    proc = cli(write_config(tmp_path / "c.toml", queries=[query, anomalies]), silver, gold)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "column 'squawk' (filter of query 'country_stats') is missing; Silver has:" in err
    assert "column 'origin_country' (aggregate 'p50_country' of query 'country_stats') has type string; expected " \
           "byte or decimal or double or float or integer or long or short" in err
    assert "Traceback" not in err
    assert not gold.exists()

    query["filter"] = "altitude_meters > 0"
    query["aggregates"] = [query["aggregates"][0], query["aggregates"][2]]
    proc = cli(write_config(tmp_path / "c.toml", queries=[query, anomalies]), silver, gold)
    assert proc.returncode == 2, proc.stderr
    assert "aggregate 'n' where of query 'country_stats', 'velocity_kmh + 1': line 1, column 1: " \
           "`velocity_kmh + 1` is a double, not a condition" in proc.stderr
    assert "aggregate 'bad_compare' where of query 'country_stats', 'on_ground = 1': line 1, column 1: " \
           "`on_ground = 1` compares a boolean with a int, which Spark refuses" in proc.stderr
    assert not gold.exists()


def test_filtered_rows_are_counted_and_the_rest_aggregated(tmp_path: Path) -> None:
    stats, anomalies = seed_query_list()
    filtered = {**stats, "filter": "on_ground = false AND altitude_meters IS NOT NULL"}
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    commits = frames(6)
    append_commits(silver, commits)
    result = summary(cli(write_config(tmp_path / "c.toml", queries=[filtered, anomalies]), silver, gold, "--json"))
    rows = pl.concat(commits)
    kept = rows.filter((pl.col("on_ground") == False) & pl.col("altitude_meters").is_not_null())  # noqa: E712
    assert result["country_stats"]["rows_in"] == rows.height
    assert result["country_stats"]["rows_filtered"] == rows.height - kept.height > 0
    assert result["country_anomalies"]["rows_filtered"] == 0


NAN = math.nan


@pytest.mark.parametrize(("text", "expected"), [
    ("x > 1", [True, False, None, True]),  # NaN is above every number
    ("x = x", [True, True, None, True]),  # NaN equals NaN
    ("NOT x > 1", [False, True, None, False]),
    ("x > 1 OR b", [True, True, True, True]),  # null OR true is true
    ("x > 1 AND b", [True, False, None, True]),  # null AND true is null; false AND null is false
    ("x IN (1, 5)", [True, True, None, False]),
    ("x BETWEEN 0 AND 2", [False, True, None, False]),
    ("x IS NULL", [False, False, True, False]),
    ("x / 2 > 0.4", [True, True, None, True]),
    ("-7 % 2 = -1 AND b IS NOT NULL", [True, True, True, True]),  # % keeps the dividend's sign, as Java's
])
def test_conditions_follow_spark_null_and_nan_rules(text: str, expected: list[bool | None]) -> None:
    rows = pl.DataFrame({"x": [5.0, 1.0, None, NAN], "b": [True, True, True, True]})
    expr, _ = Condition.parse(text).compile(dict(rows.schema))
    assert rows.select(expr)[:, 0].to_list() == expected


def test_a_changed_filter_or_window_kind_is_a_changed_definition() -> None:
    """Gold written under one filter (or window) must not be continued under another; a query
    without a filter keeps the fingerprint it had before filters existed."""
    stats = seed_query_list()[0]
    plain = QuerySpec.model_validate(stats)
    filtered = QuerySpec.model_validate({**stats, "filter": "on_ground = false"})
    sessions = QuerySpec.model_validate({**stats, "window": {"kind": "session", "gap": "5m"}})
    assert "filter" not in definition(plain)
    assert changes(definition(plain), definition(filtered)) == ['filter: Gold has null, config has "on_ground = false"']
    assert changes(definition(plain), definition(sessions)) == [
        "session gap: Gold has null, config has 5m", 'window kind: Gold has "tumbling", config has "session"',
        "window size: Gold has 1m, config has null", "window slide: Gold has 1m, config has null"]
    assert len({fingerprint(q) for q in (plain, filtered, sessions)}) == 3
