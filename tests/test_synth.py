"""The synthetic Silver generator: deterministic, exact schema, every corner case present."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from goldstream.demo.synth import (
    DEFAULT_START,
    SILVER_SCHEMA,
    SynthSummary,
    generate_silver,
    synth_commit_frames,
)

COMMITS = 200
ROWS = 1000
SEED = 11
INTERVAL_S = 10.0
US = 1_000_000

DELTA_TYPES = {
    "icao24": "string",
    "callsign": "string",
    "origin_country": "string",
    "event_timestamp": "timestamp",
    "longitude": "double",
    "latitude": "double",
    "altitude_meters": "double",
    "velocity_kmh": "double",
    "on_ground": "boolean",
    "vertical_rate": "double",
    "true_track": "double",
}


@pytest.fixture(scope="module")
def frames() -> list[pl.DataFrame]:
    return list(synth_commit_frames(COMMITS, ROWS, SEED, commit_interval_s=INTERVAL_S))


@pytest.fixture(scope="module")
def rows(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """All rows, tagged with their commit index."""
    return pl.concat([f.with_columns(pl.lit(i, pl.Int64).alias("commit")) for i, f in enumerate(frames)])


def _share(rows: pl.DataFrame, expr: pl.Expr) -> float:
    return rows.select(expr.sum()).item() / rows.height


def test_same_seed_same_frames(frames: list[pl.DataFrame]) -> None:
    again = list(synth_commit_frames(COMMITS, ROWS, SEED, commit_interval_s=INTERVAL_S))
    assert len(again) == len(frames)
    for a, b in zip(frames, again, strict=True):
        assert_frame_equal(a, b, check_exact=True)
        # Same bytes, not just equal values (NaN and nulls included).
        assert a.write_ipc(None).getvalue() == b.write_ipc(None).getvalue()


def test_other_seed_other_frames(frames: list[pl.DataFrame]) -> None:
    other = list(synth_commit_frames(3, ROWS, SEED + 1, commit_interval_s=INTERVAL_S))
    assert not any(a.height and a.equals(b) for a, b in zip(frames, other, strict=False))


def test_commit_depends_only_on_seed_and_index(frames: list[pl.DataFrame]) -> None:
    shorter = list(synth_commit_frames(5, ROWS, SEED, commit_interval_s=INTERVAL_S))
    for a, b in zip(frames, shorter, strict=False):
        assert_frame_equal(a, b, check_exact=True)


def test_schema_is_exact(frames: list[pl.DataFrame]) -> None:
    assert list(SILVER_SCHEMA.names()) == list(DELTA_TYPES)
    assert SILVER_SCHEMA["event_timestamp"] == pl.Datetime("us", "UTC")
    for f in frames:
        assert f.schema == SILVER_SCHEMA


def test_some_commits_are_empty(frames: list[pl.DataFrame]) -> None:
    empty = [f for f in frames if f.height == 0]
    assert 1 <= len(empty) <= COMMITS * 0.08
    assert all(f.height in (0, ROWS) for f in frames)


@pytest.mark.parametrize(
    ("column", "low", "high"),
    [
        ("altitude_meters", 0.04, 0.06),
        ("velocity_kmh", 0.015, 0.025),
        ("on_ground", 0.015, 0.025),
        ("origin_country", 0.0003, 0.003),
        ("event_timestamp", 0.0003, 0.003),
    ],
)
def test_null_rates(rows: pl.DataFrame, column: str, low: float, high: float) -> None:
    assert low <= _share(rows, pl.col(column).is_null()) <= high


def test_empty_string_and_null_country_are_both_present(rows: pl.DataFrame) -> None:
    countries = rows.get_column("origin_country")
    assert (countries == "").sum() > 0
    assert countries.null_count() > 0


def test_country_mix_is_skewed(rows: pl.DataFrame) -> None:
    counts = rows.filter(pl.col("origin_country").is_not_null() & (pl.col("origin_country") != ""))
    counts = counts.get_column("origin_country").value_counts(sort=True)
    assert 15 <= counts.height <= 25
    assert counts.item(0, "origin_country") == "United States"
    assert counts.item(0, "count") > 2 * counts.item(1, "count")
    assert counts.item(0, "count") > 10 * counts.item(counts.height - 1, "count")


def test_values_beyond_and_at_thresholds(rows: pl.DataFrame) -> None:
    alt, vel = pl.col("altitude_meters"), pl.col("velocity_kmh")
    counts = rows.select(
        (alt > 12000).sum().alias("alt_high"),
        (alt < -100).sum().alias("alt_low"),
        (alt == 12000).sum().alias("alt_at_high"),
        (alt == -100).sum().alias("alt_at_low"),
        (vel > 1000).sum().alias("vel_high"),
        (vel < 0).sum().alias("vel_low"),
        (vel == 1000).sum().alias("vel_at_high"),
        (vel == 0).sum().alias("vel_at_zero"),
        alt.is_nan().sum().alias("alt_nan"),
        vel.is_nan().sum().alias("vel_nan"),
    ).row(0, named=True)
    assert all(n > 0 for n in counts.values()), counts
    # Anomalies are exceptional, not the norm (NaN compares greater than 12000 in Polars too).
    assert counts["alt_high"] < 0.01 * rows.height
    assert counts["alt_nan"] < 0.001 * rows.height


def test_minute_boundary_timestamps(rows: pl.DataFrame) -> None:
    ts = pl.col("event_timestamp")
    on_minute = _share(rows, (ts.dt.epoch("us") % (60 * US)) == 0)
    assert 0.005 <= on_minute <= 0.02


def _lateness_us(rows: pl.DataFrame) -> pl.Series:
    """How far each row's event time lies before the start of its commit's clock slot."""
    start_us = (DEFAULT_START - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    slot = pl.lit(start_us) + pl.col("commit") * round(INTERVAL_S * US)
    return rows.select(slot - pl.col("event_timestamp").dt.epoch("us")).to_series()


def test_event_times_follow_the_commit_clock_with_late_rows(rows: pl.DataFrame) -> None:
    lateness = _lateness_us(rows).drop_nulls()
    slot_us = round(INTERVAL_S * US)
    assert (lateness >= -slot_us).all()  # nothing from the future
    late = (lateness > 0).sum() / lateness.len()
    very_late = (lateness > 10 * 60 * US).sum() / lateness.len()
    assert 0.02 <= late <= 0.05
    assert 0 < very_late <= 0.003
    assert lateness.max() <= 61 * 60 * US


def test_generate_silver_writes_one_delta_version_per_commit(tmp_path: Path) -> None:
    # Seed 113 is the first whose commit 0 is empty (found by search; stable because
    # the generator is deterministic): version 0 must still create the full schema.
    seed, commits, per_commit = 113, 40, 300
    out = str(tmp_path / "silver")
    frames = list(synth_commit_frames(commits, per_commit, seed))
    assert frames[0].height == 0, "seed 113 no longer starts with an empty commit"

    summary = generate_silver(out, commits, per_commit, seed)

    dt = DeltaTable(out)
    assert dt.version() == commits - 1
    assert len(dt.history()) == commits
    fields = json.loads(dt.schema().to_json())["fields"]
    assert {f["name"]: f["type"] for f in fields} == DELTA_TYPES
    assert [f["name"] for f in fields] == list(DELTA_TYPES)

    table = pl.from_arrow(dt.to_pyarrow_table())
    assert isinstance(table, pl.DataFrame)
    expected = pl.concat(frames)
    assert table.height == expected.height == summary.rows_written
    key = list(DELTA_TYPES)
    assert_frame_equal(table.sort(key, nulls_last=True), expected.sort(key, nulls_last=True))

    # Empty commits are real versions without an `add` action.
    log = sorted((tmp_path / "silver" / "_delta_log").glob("*.json"))
    adds = [sum('"add"' in line for line in p.read_text().splitlines()) for p in log]
    assert len(log) == commits
    assert adds == [1 if f.height else 0 for f in frames]
    assert adds[0] == 0

    assert summary == SynthSummary(
        versions_written=commits,
        rows_written=expected.height,
        empty_commits=sum(f.height == 0 for f in frames),
        first_event_time=expected.get_column("event_timestamp").min(),  # type: ignore[arg-type]
        last_event_time=expected.get_column("event_timestamp").max(),  # type: ignore[arg-type]
    )


def test_start_and_interval_move_the_clock() -> None:
    start = datetime(2030, 1, 1, 12, tzinfo=UTC)
    frames = list(synth_commit_frames(20, 200, 3, start=start, commit_interval_s=60.0))
    ts = pl.concat(frames).get_column("event_timestamp").drop_nulls()
    median = ts.sort()[ts.len() // 2]
    assert start <= median < start + timedelta(minutes=20)


@pytest.mark.parametrize("kwargs", [{"commits": -1}, {"rows_per_commit": -1}, {"commit_interval_s": 0.0}])
def test_bad_arguments_are_refused(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"commits": 1, "rows_per_commit": 1, "commit_interval_s": 1.0} | kwargs
    with pytest.raises(ValueError):
        list(synth_commit_frames(int(args["commits"]), int(args["rows_per_commit"]), 0,
                                 commit_interval_s=args["commit_interval_s"]))


@pytest.mark.slow  # ~1 min, ~2 GB; still part of the default run
def test_a_five_million_row_commit_is_generated(tmp_path: Path) -> None:
    """One commit's random bytes once overflowed `random.randbytes` (a C int of bits)."""
    import subprocess
    import sys

    out = tmp_path / "big"
    done = subprocess.run([sys.executable, "-m", "goldstream", "generate-silver", "--out", str(out), "--commits", "1",
                           "--rows-per-commit", "5000000"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert pl.scan_delta(str(out)).select(pl.len()).collect().item() == 5_000_000


def test_random_bytes_drawn_in_chunks_are_the_same_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawing a commit's randomness in bounded chunks leaves every seeded table unchanged."""
    from goldstream.demo import synth

    whole = next(synth_commit_frames(1, 5000, SEED))
    monkeypatch.setattr(synth, "RANDOM_BYTES_CHUNK", 4 * 1000 + 4)  # a few chunks per column
    assert_frame_equal(next(synth_commit_frames(1, 5000, SEED)), whole)
