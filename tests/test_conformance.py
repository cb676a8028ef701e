"""Gold must equal what Spark produced, row for row, for every conformance case.

Cases are copied into tests/conformance so the suite is self-contained; any case that
appears in ../shared/conformance is run as well. A case holding Spark's per-aircraft
sessions (`aircraft_flights`) is also replayed with examples/flights.toml.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from gold_compare import assert_gold_equal
from conformance_cases import conformance_cases
from reference import read_delta_commits, reference_gold_frame
from testsupport import ROOT
from testsupport.config import QUERIES
from testsupport.gold import read_gold
from testsupport.process import goldstream

CASES = conformance_cases()


def test_cases_are_present() -> None:
    names = {c.name for c in CASES}
    assert {"synthetic_small", "opensky_paris_30min", "opensky_paris_flights"} <= names


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_replay_equals_spark(case: Path, tmp_path: Path, example_config: Path) -> None:
    gold_root = tmp_path / "gold"
    proc = goldstream("replay", "--config", str(example_config), "--silver", str(case / "silver"),
                      "--gold-root", str(gold_root), "--json")
    summary = {s["query"]: s for s in json.loads(proc.stdout.splitlines()[-1])["summary"]}
    meta = json.loads((case / "case.json").read_text())
    for q in QUERIES:
        expected = pl.read_parquet(case / "expected" / f"{q}.parquet")
        actual = read_gold(gold_root / q)
        assert actual.height == meta["expected_rows"][q]
        assert_gold_equal(actual, expected)
        assert summary[q]["rows_in"] == meta["rows"]
        assert summary[q]["windows_emitted"] == meta["expected_rows"][q]
        assert summary[q]["silver_version"] == meta["silver_versions"] - 1


FLIGHTS_CASES = [c for c in CASES if (c / "expected" / "aircraft_flights.parquet").is_file()]
FLIGHTS_CONFIG = ROOT / "examples" / "flights.toml"
# examples/flights.toml's conditions for the reference, in SQL's three-valued logic.
_CONDITIONS: dict[str, Any] = {
    "icao24 IS NOT NULL": lambda r: r["icao24"] is not None,
    "on_ground = false": lambda r: None if r["on_ground"] is None else r["on_ground"] is False,
    "altitude_meters > 12000 OR altitude_meters < -100": lambda r: None if r["altitude_meters"] is None else
    math.isnan(r["altitude_meters"]) or r["altitude_meters"] > 12000 or r["altitude_meters"] < -100,
}


def test_flights_case_is_present() -> None:
    assert [c.name for c in FLIGHTS_CASES] == ["opensky_paris_flights"]


@pytest.mark.parametrize("case", FLIGHTS_CASES, ids=[c.name for c in FLIGHTS_CASES])
def test_flights_example_equals_spark_across_a_restart(case: Path, tmp_path: Path) -> None:
    """Sessions per aircraft equal Spark's rows, replayed in two runs (the second rebuilds the
    open sessions from Silver with Gold's offsets); the example's other query (distinct
    aircraft, percentiles, max_by, conditions) equals the brute-force reference."""
    gold_root = tmp_path / "gold"
    meta = json.loads((case / "case.json").read_text())
    middle = meta["silver_versions"] // 2
    for stop in (["--to-version", str(middle)], []):
        proc = goldstream("replay", "--config", str(FLIGHTS_CONFIG), "--silver", str(case / "silver"),
                          "--gold-root", str(gold_root), "--json", *stop)
    summary = {s["query"]: s for s in json.loads(proc.stdout.splitlines()[-1])["summary"]}
    sessions = read_gold(gold_root / "aircraft_flights")
    assert sessions.height == meta["expected_rows"]["aircraft_flights"]
    assert_gold_equal(sessions, pl.read_parquet(case / "expected" / "aircraft_flights.parquet"))
    assert summary["aircraft_flights"]["silver_version"] == meta["silver_versions"] - 1

    query = next(q for q in tomllib.loads(FLIGHTS_CONFIG.read_text())["queries"] if q["name"] == "country_aircraft")
    query["filter_py"] = _CONDITIONS[query["filter"]]
    query["reads"] = ["icao24", "on_ground", "altitude_meters"]
    for agg in query["aggregates"]:
        if "where" in agg:
            agg["where_py"] = _CONDITIONS[agg["where"]]
    expected = reference_gold_frame(read_delta_commits(str(case / "silver")), query)
    assert_gold_equal(read_gold(gold_root / "country_aircraft"), expected)
