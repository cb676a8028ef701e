"""Spark SQL queries give Spark's Gold, row for row: every conformance case that holds a
`queries.toml` of SQL queries (Spark 4.3.0 ran the same text with spark.sql over the
watermarked stream) is replayed by goldstream and compared with Spark's rows and types.

A case's `[tables]` may name a dimension by its Parquet file (what Spark read); the Delta
table of the same rows beside it (`dims/<name>/`) is what goldstream joins.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import polars as pl
import pytest

from conformance_cases import CONFORMANCE_DIRS, conformance_cases
from gold_compare import assert_gold_equal
from goldstream.config import load_settings
from goldstream.sink.definition import fingerprint
from testsupport import ROOT
from testsupport.gold import read_gold
from testsupport.process import goldstream


def sql_cases() -> list[Path]:
    found: dict[str, Path] = {}
    for d in CONFORMANCE_DIRS:
        if d.is_dir():
            for c in sorted(d.iterdir()):
                if (c / "queries.toml").is_file() and (c / "expected").is_dir():
                    found[c.name] = c
    return [found[k] for k in sorted(found)]


CASES = sql_cases()


def test_sql_case_is_present() -> None:
    assert "opensky_paris_30min_sql" in {c.name for c in CASES}


def delta_tables(case: Path, tables: dict[str, str]) -> dict[str, str]:
    """Each [tables] entry as the Delta table holding the same rows."""
    out = {}
    for name, uri in tables.items():
        path = case / uri
        delta = path.with_suffix("") if path.suffix == ".parquet" else path
        assert (delta / "_delta_log").is_dir(), f"{case.name}: no Delta table for {name} at {delta}"
        out[name] = str(delta)
    return out


def write_config(case: Path, tmp_path: Path) -> Path:
    spec = tomllib.loads((case / "queries.toml").read_text())
    lines = ["[tables]"]
    lines += [f"{name} = {json.dumps(uri)}" for name, uri in delta_tables(case, spec.get("tables", {})).items()]
    for q in spec["queries"]:
        lines.append("\n[[queries]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in q.items()]
    config = tmp_path / "sql.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sql_replay_equals_spark(case: Path, tmp_path: Path) -> None:
    meta = json.loads((case / "case.json").read_text())
    gold_root = tmp_path / "gold"
    proc = goldstream("replay", "--config", str(write_config(case, tmp_path)), "--silver",
                      str(case / meta["silver"]), "--gold-root", str(gold_root), "--json")
    summary = {s["query"]: s for s in json.loads(proc.stdout.splitlines()[-1])["summary"]}
    for name, rows in meta["expected_rows"].items():
        expected = pl.read_parquet(case / "expected" / f"{name}.parquet")
        actual = read_gold(gold_root / name)
        assert actual.height == rows == expected.height
        assert actual.schema == expected.schema  # names, order and Spark's types (max_seats int32)
        assert_gold_equal(actual, expected)
        assert summary[name]["windows_emitted"] == rows


SEED_SQL = ROOT / "examples" / "seed.toml"


@pytest.mark.parametrize("case", conformance_cases(), ids=[c.name for c in conformance_cases()])
def test_seed_queries_in_sql_give_the_toml_queries_gold(case: Path, tmp_path: Path, example_config: Path) -> None:
    """examples/seed.toml (SQL) and config.example.toml (TOML) write identical Gold, on every
    conformance Silver (NaN, nulls, late rows, sliding windows), without sharing a fingerprint."""
    for config, root in ((SEED_SQL, "sql"), (example_config, "toml")):
        goldstream("replay", "--config", str(config), "--silver", str(case / "silver"),
                   "--gold-root", str(tmp_path / root))
    for name in ("country_stats", "country_anomalies"):
        sql, toml = read_gold(tmp_path / "sql" / name), read_gold(tmp_path / "toml" / name)
        assert sql.schema == toml.schema
        assert_gold_equal(sql, toml)
        assert sql.height > 0
    settings = [load_settings(c) for c in (SEED_SQL, example_config)]
    prints = [{q.name: fingerprint(q) for q in s.queries} for s in settings]
    assert all(prints[0][n] != prints[1][n] for n in prints[0])


SESSIONS_SQL = """
SELECT session_window.start AS window_start, session_window.end AS window_end, icao24,
       count(*) AS positions, max(altitude_meters) AS max_altitude, min(altitude_meters) AS min_altitude,
       avg(velocity_kmh) AS avg_velocity, count_if(on_ground) AS ground_positions
FROM silver
GROUP BY session_window(event_timestamp, '5 minutes'), icao24
"""


def test_session_window_in_sql_equals_spark(tmp_path: Path) -> None:
    """Spark's per-aircraft sessions (the opensky_paris_flights case) from a SQL session_window."""
    case = next(c for c in conformance_cases() if c.name == "opensky_paris_flights")
    config = tmp_path / "sessions.toml"
    config.write_text('[[queries]]\nname = "aircraft_flights"\nwatermark_delay = "10 minutes"\n'
                      f"sql = {json.dumps(SESSIONS_SQL)}\n")
    goldstream("replay", "--config", str(config), "--silver", str(case / "silver"), "--gold-root", str(tmp_path / "g"))
    expected = pl.read_parquet(case / "expected" / "aircraft_flights.parquet")
    actual = read_gold(tmp_path / "g" / "aircraft_flights")
    assert actual.schema == expected.schema
    assert_gold_equal(actual, expected)
