"""Validate the oracle (tests/reference.py) itself.

* against Spark: every conformance case (../shared/conformance/*/ and
  tests/conformance/*/), both seed queries of config.example.toml;
* on small hand-made histories pinning Spark's window and watermark rules one by one;
* and the comparator (tests/gold_compare.py) on frames that must / must not match.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from testsupport.config import seed_queries

try:  # tests/ is on sys.path (pytest's rootdir-less import / conftest.py)
    from conformance_cases import CONFORMANCE_DIRS as CONFORMANCE_ROOTS
    from gold_compare import assert_gold_equal
    from reference import read_delta_commits, reference_frame, reference_gold, windows_of
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.conformance_cases import CONFORMANCE_DIRS as CONFORMANCE_ROOTS
    from tests.gold_compare import assert_gold_equal
    from tests.reference import read_delta_commits, reference_frame, reference_gold, windows_of

QUERIES = seed_queries()


def _fingerprint(case: Path) -> str:
    """Content hash of a case (case.json, expected/*, the Delta log), to skip copies."""
    h = hashlib.sha256()
    for f in sorted([case / "case.json", *(case / "expected").glob("*"), *(case / "silver" / "_delta_log").glob("*.json")]):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _cases() -> list[tuple[str, Path]]:
    """(test id, case dir); a case identical to one already found is run once."""
    cases: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for root in CONFORMANCE_ROOTS:
        if not root.is_dir():
            continue
        for case in sorted(p for p in root.iterdir() if (p / "silver" / "_delta_log").is_dir()):
            fp = _fingerprint(case)
            if fp in seen:
                continue
            seen.add(fp)
            same_name = any(p.name == case.name for _, p in cases)
            cases.append((f"{root.parent.name}-{case.name}" if same_name else case.name, case))
    return cases


@functools.lru_cache(maxsize=None)
def _commits(case: str) -> list[pl.DataFrame | None]:
    return read_delta_commits(str(Path(case) / "silver"))


CASES = _cases()
CASE_PARAMS = [
    pytest.param(str(case), name, id=f"{case_id}-{name}")
    for case_id, case in CASES
    for name in QUERIES
    if (case / "expected" / f"{name}.parquet").exists()
]


def test_conformance_cases_found():
    assert CASE_PARAMS, f"no conformance case under {CONFORMANCE_ROOTS}"


@pytest.mark.parametrize(("case", "query_name"), CASE_PARAMS)
def test_oracle_matches_spark(case: str, query_name: str):
    commits = _commits(case)
    query = QUERIES[query_name]
    expected = pl.read_parquet(Path(case) / "expected" / f"{query_name}.parquet")
    silver_schema = next(c.schema for c in commits if c is not None)
    actual = reference_frame(reference_gold(commits, query), query, silver_schema)
    assert_gold_equal(actual, expected, keys=query["keys"])


@pytest.mark.parametrize("case", [str(c) for _, c in CASES], ids=[i for i, _ in CASES])
def test_read_delta_commits_matches_case_json(case: str):
    info = json.loads((Path(case) / "case.json").read_text())
    commits = _commits(case)
    assert len(commits) == info["silver_versions"]
    assert sum(c.height for c in commits if c is not None) == info["rows"]


# --------------------------------------------------------------------------- hand-made cases

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
US = 1_000_000
T0_US = int(T0.timestamp()) * US


def at(seconds: float) -> datetime:
    return T0 + timedelta(microseconds=round(seconds * US))


def row(seconds, country="FR", alt=1000.0, vel=500.0, ground=False):
    return {
        "event_timestamp": None if seconds is None else at(seconds),
        "origin_country": country,
        "altitude_meters": alt,
        "velocity_kmh": vel,
        "on_ground": ground,
    }


STATS = QUERIES["country_stats"]  # tumbling 1m, delay 2m
ANOM = QUERIES["country_anomalies"]  # sliding 5m/1m, delay 6m


def by_window(rows, key="origin_country"):
    return {(r["window_start"] - T0_US) // (60 * US): r for r in rows if r[key] == "FR"}


def test_window_assignment_half_open_and_epoch_aligned():
    m = 60 * US
    assert windows_of(0, m, m) == [(0, m)]
    assert windows_of(m, m, m) == [(m, 2 * m)]
    assert windows_of(m - 1, m, m) == [(0, m)]
    assert windows_of(-1, m, m) == [(-m, 0)]
    assert windows_of(m, 5 * m, m) == [(k * m, k * m + 5 * m) for k in range(-3, 2)]
    # S/L not an integer: ceil(S/L) = 3 or floor(S/L) = 2 windows depending on t
    assert windows_of(4 * m + 5, 5 * m, 2 * m) == [(0, 5 * m), (2 * m, 7 * m), (4 * m, 9 * m)]
    assert windows_of(7 * m + 5, 5 * m, 2 * m) == [(4 * m, 9 * m), (6 * m, 11 * m)]


def test_boundary_row_goes_to_next_window_and_emission_waits_for_watermark():
    commits = [[row(59.999999), row(60.0)], [row(180.0)], [row(239.999)], [row(240.0)]]
    out = reference_gold(commits, STATS)
    # commit 1: watermark = 180s - 2m = 60s -> [0, 60s) closes (end <= watermark);
    # commit 2: 119.999s < 120s keeps [60s, 120s) open; commit 3 closes it.
    assert [(r["window_start"] - T0_US) // US for r in out] == [0, 60]
    assert out[0]["flight_count"] == 1 and out[1]["flight_count"] == 1


def test_late_rows_dropped_but_count_towards_watermark():
    commits = [[row(0)], [row(300)], [row(10), row(250)], [row(600)]]
    stats = {}
    out = reference_gold(commits, STATS, stats=stats)
    w = by_window(out)
    assert w[0]["flight_count"] == 1  # the late row at 10s did not reach it
    assert w[4]["flight_count"] == 1  # 250s was on time (watermark was 180s)
    assert stats["late_pairs"] == 1


def test_sliding_row_late_for_some_windows_only():
    # watermark after commit 0: 12:10 - 6m = 12:04 -> windows ending <= 12:04 are closed
    commits = [[row(600)], [row(150)]]  # 12:02:30 belongs to windows starting 11:58..12:02
    out = reference_gold(commits, ANOM, flush=True)
    starts = sorted((r["window_start"] - T0_US) // (60 * US) for r in out)
    starts = [s for s in starts if s <= 2]  # drop the windows of the row at 12:10
    # windows [11:58,12:03) and [11:59,12:04) are late; [12:00..12:02] starts get the row
    assert starts == [0, 1, 2]


def test_watermark_truncated_to_milliseconds():
    # max event time 12:03:00.000999 -> 12:03:00.000 -> watermark exactly 12:01:00
    commits = [[row(30)], [row(180.000999)]]
    stats = {}
    out = reference_gold(commits, STATS, stats=stats)
    assert stats["watermark_us"] == T0_US + 60 * US
    assert len(out) == 1


def test_null_event_time_dropped_and_empty_commits_change_nothing():
    commits = [None, [row(None)], [], pl.DataFrame(schema={"event_timestamp": pl.Datetime("us", "UTC"), "origin_country": pl.String, "altitude_meters": pl.Float64, "velocity_kmh": pl.Float64, "on_ground": pl.Boolean}), [row(0)]]
    stats = {}
    assert reference_gold(commits, STATS, stats=stats) == []
    assert stats["null_event_time"] == 1 and stats["open_windows"] == 1
    assert len(reference_gold(commits, STATS, flush=True)) == 1


def test_null_and_empty_keys_are_separate_groups():
    out = reference_gold([[row(0, None), row(1, ""), row(2, None)]], STATS, flush=True)
    counts = {r["origin_country"]: r["flight_count"] for r in out}
    assert counts == {None: 2, "": 1}


def test_aggregates_nulls():
    rows = [row(0, alt=None, vel=None, ground=None), row(1, alt=100.0, vel=None, ground=True)]
    (a,) = reference_gold([rows], ANOM, flush=True)[:1]
    assert a["total_observations"] == 2
    assert a["avg_altitude"] == 100.0 and a["avg_velocity"] is None
    assert a["stddev_altitude"] is None and a["max_velocity"] is None
    (s,) = reference_gold([rows], STATS, flush=True)
    assert (s["ground_count"], s["airborne_count"]) == (1, 0)


def test_anomaly_thresholds_strict_and_nan():
    nan = math.nan
    rows = [
        row(0, alt=12000.0, vel=1000.0),
        row(1, alt=-100.0, vel=0.0),
        row(2, alt=12000.5, vel=-0.5),  # both anomalies
        row(3, alt=nan, vel=None),  # NaN altitude is an anomaly, null velocity is not
    ]
    out = reference_gold([rows], ANOM, flush=True)
    first = min(out, key=lambda r: r["window_start"])
    assert first["altitude_anomalies"] == 2 and first["velocity_anomalies"] == 1
    assert first["anomaly_rate"] == 3 / 4
    assert math.isnan(first["max_altitude"]) and first["min_altitude"] == -100.0
    assert math.isnan(first["avg_altitude"]) and math.isnan(first["stddev_altitude"])
    only_nan = reference_gold([[row(0, alt=nan), row(1, alt=nan)]], ANOM, flush=True)[0]
    assert math.isnan(only_nan["min_altitude"])


def test_stddev_is_sample_and_exact_for_constant_values():
    rows = [row(i, alt=0.1, vel=float(v)) for i, v in enumerate([2, 4, 4, 4, 5, 5, 7, 9])]
    (s,) = reference_gold([rows], ANOM, flush=True)[:1]
    assert s["stddev_altitude"] == 0.0
    assert math.isclose(s["stddev_velocity"], math.sqrt(32 / 7), rel_tol=1e-15)


def test_reference_frame_schema():
    out = reference_gold([[row(0)]], ANOM, flush=True)
    df = reference_frame(out, ANOM)
    assert df.columns[:3] == ["window_start", "window_end", "origin_country"]
    assert df.schema["window_start"] == pl.Datetime("us", "UTC")
    assert df.schema["total_observations"] == pl.Int64 and df.schema["anomaly_rate"] == pl.Float64


# --------------------------------------------------------------------------- the comparator


def _gold(**over):
    base = {
        "window_start": [T0, T0],
        "window_end": [T0 + timedelta(minutes=1)] * 2,
        "origin_country": [None, "FR"],
        "flight_count": [1, 2],
        "avg_altitude": [None, 1.5],
        "x": [math.nan, 3.0],
    }
    base.update(over)
    return pl.DataFrame(base, schema_overrides={"window_start": pl.Datetime("us", "UTC"), "window_end": pl.Datetime("us", "UTC"), "flight_count": pl.Int64})


def test_assert_gold_equal_accepts_reordered_and_close_rows():
    a = _gold()
    e = _gold(avg_altitude=[None, 1.5 * (1 + 5e-10)]).reverse()
    assert_gold_equal(a, e)


@pytest.mark.parametrize(
    "other",
    [
        {"avg_altitude": [None, 1.5 * (1 + 1e-8)]},
        {"avg_altitude": [0.0, 1.5]},
        {"x": [1.0, 3.0]},
        {"flight_count": [1, 3]},
        {"origin_country": ["", "FR"]},
    ],
)
def test_assert_gold_equal_rejects_differences(other):
    with pytest.raises(AssertionError):
        assert_gold_equal(_gold(), _gold(**other))


def test_assert_gold_equal_rejects_schema_and_count_differences():
    with pytest.raises(AssertionError, match="dtypes"):
        assert_gold_equal(_gold().with_columns(pl.col("flight_count").cast(pl.Int32)), _gold())
    with pytest.raises(AssertionError, match="columns"):
        assert_gold_equal(_gold().select(pl.all().exclude("x")), _gold())
    with pytest.raises(AssertionError, match="row count"):
        assert_gold_equal(_gold().head(1), _gold())
