"""Invalid configuration (issue 7, case 11): refused with the field and the rule, exit 2,
before any storage is touched.

Each case is a real TOML file given to the real CLI: `validate-config` and `replay` both
fail with the same message, and neither the Silver path nor the Gold root is created.
An aggregate on a column Silver lacks can only be seen with Silver at hand: `replay`
refuses it at start, before any Gold table exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from silver_cases import cli, frames
from testsupport.config import example_doc, write_config
from testsupport.process import goldstream
from testsupport.silver import append_commits

Doc = dict[str, Any]


def _query(doc: Doc, name: str) -> Doc:
    return next(q for q in doc["queries"] if q["name"] == name)


def _set(path: Callable[[Doc], Doc], key: str, value: Any) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        path(doc)[key] = value
    return edit


def _rename_second(doc: Doc) -> None:
    doc["queries"][1]["name"] = doc["queries"][0]["name"]


def _same_gold(doc: Doc) -> None:
    for q in doc["queries"]:
        q["gold_path"] = "/tmp/goldstream-shared-gold"


CASES: dict[str, tuple[Callable[[Doc], None], list[str]]] = {
    "unknown_field": (_set(lambda d: d["source"], "polll_interval", "5s"),
                      ["source.polll_interval: unknown field; check the spelling"]),
    "bad_duration": (_set(lambda d: d["source"], "poll_interval", "5 secs"),
                     ["source.poll_interval: invalid duration '5 secs'", "use a number with a unit"]),
    "window_not_multiple_of_slide": (
        _set(lambda d: _query(d, "country_anomalies"), "window", {"kind": "sliding", "size": "5m", "slide": "2m"}),
        ["queries.1.window: window size 5m must be a multiple of slide 2m"]),
    "negative_delay": (_set(lambda d: _query(d, "country_stats"), "watermark_delay", "-2m"),
                       ["queries.0.watermark_delay: watermark_delay must not be negative, got -2m"]),
    "duplicate_query_names": (_rename_second,
                              ["queries: the name 'country_stats' is declared twice; query names must be unique"]),
    "two_queries_one_sink": (_same_gold, ["the Gold table of query 'country_stats' (/tmp/goldstream-shared-gold) "
                                          "and the Gold table of query 'country_anomalies' "
                                          "(/tmp/goldstream-shared-gold) are the same table /tmp/goldstream-shared-gold",
                                          "every table needs a location of its own"]),
    "negative_skew": (_set(lambda d: d["source"], "max_event_time_skew", "-1h"),
                      ["source.max_event_time_skew: max_event_time_skew must not be negative, got -1h"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_config_is_refused_before_storage(case: str, tmp_path: Path) -> None:
    edit, expected = CASES[case]
    doc = example_doc()
    edit(doc)
    config = write_config(tmp_path / "bad.toml", doc=doc)
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    checked = goldstream("validate-config", str(config), check=False)
    replayed = cli(config, silver, gold)
    for proc in (checked, replayed):
        assert proc.returncode == 2, proc.stderr
        assert f"invalid configuration in {config}:" in proc.stderr
        for part in expected:
            assert part in proc.stderr
        assert "Fix the file or the GOLDSTREAM_* environment variable" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not silver.exists() and not gold.exists()
    assert not Path("/tmp/goldstream-shared-gold").exists()


def test_invalid_env_override_is_refused_by_every_command(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    env = {"GOLDSTREAM_SOURCE__MAX_COMMITS_PER_BATCH": "0"}
    config = write_config(tmp_path / "ok.toml")
    for proc in (goldstream("validate-config", str(config), env=env, check=False),
                 cli(config, silver, gold, "--http-port", "0", command="run", env=env)):
        assert proc.returncode == 2
        assert "source.max_commits_per_batch: Input should be greater than or equal to 1 (value: '0')" in proc.stderr
    assert not silver.exists() and not gold.exists()


def test_aggregate_on_a_column_silver_lacks_is_refused_at_start(tmp_path: Path) -> None:
    doc = example_doc()
    _query(doc, "country_stats")["aggregates"].append({"name": "avg_temp", "fn": "avg", "column": "temperature"})
    config = write_config(tmp_path / "temp.toml", doc=doc)
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, frames(3))
    assert goldstream("validate-config", str(config), check=False).returncode == 0  # needs Silver to know
    proc = cli(config, silver, gold)
    assert proc.returncode == 2
    assert (f"Silver schema at {silver} version 0 (the schema is unchanged since, up to version 2) does not "
            "fit the queries") in proc.stderr
    assert "column 'temperature' (aggregate 'avg_temp' of query 'country_stats') is missing" in proc.stderr
    assert "Fix the Silver table or the query definitions (config)" in proc.stderr
    assert not gold.exists()
