"""A row dated far beyond the wall clock (a broken device clock, 9999-12-31) moves the
watermark as in Spark, but never silently: the commit is logged as a WARNING naming the
version, the time and the `max_event_time_skew` remedy, counted in a metric and shown by
`status` (whose lag then is negative, not 0 s); `--flush` refuses windows that end
beyond what a Delta timestamp can hold and writes nothing."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from goldstream.config import load_settings
from goldstream.demo.synth import synth_commit_frames
from goldstream.runner import Pipeline
from stream_helpers import log_versions
from testsupport import ROOT
from testsupport.config import QUERIES, seed_queries, write_config
from testsupport.process import cli_env
from testsupport.silver import FastSilver

FAR = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


def _silver_with_a_far_future_row(path: Path, far: datetime = FAR) -> tuple[FastSilver, int]:
    frames = list(synth_commit_frames(12, 50, seed=31))
    table = FastSilver(path, frames[0].clear())
    for f in frames[:8]:
        table.append(f)
    jump = frames[8].with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(far)).otherwise(pl.col("event_timestamp"))
        .cast(frames[8]["event_timestamp"].dtype).alias("event_timestamp"))
    jumped_at = table.append(jump)
    for f in frames[9:]:
        table.append(f)
    return table, jumped_at


@pytest.fixture
def jumped(tmp_path: Path) -> tuple[Path, int]:
    table, version = _silver_with_a_far_future_row(tmp_path / "silver")
    cfg = write_config(tmp_path / "c.toml", tmp_path / "silver", tmp_path / "gold", list(seed_queries().values()))
    return cfg, version


def test_a_far_future_commit_is_warned_about_counted_and_shown(jumped: tuple[Path, int],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    cfg, version = jumped
    caplog.set_level(logging.WARNING)
    pipeline = Pipeline(load_settings(cfg))
    pipeline.start()
    pipeline.replay()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "ahead" in r.getMessage()]
    for name in QUERIES:
        mine = [w for w in warnings if repr(name) in w]
        assert len(mine) == 1, warnings
        assert f"Silver version {version}" in mine[0] and "9999-12-31T23:59:59" in mine[0]
        assert "max_event_time_skew" in mine[0]
        assert pipeline.progress.metrics.registry.get_sample_value(
            "goldstream_future_event_commits_total", {"query": name}) == 1
        assert pipeline.progress.metrics.registry.get_sample_value(
            "goldstream_lag_seconds", {"query": name}) < 0  # type: ignore[operator]

    proc = subprocess.run([sys.executable, "-m", "goldstream", "status", "--config", str(cfg), "--json"],
                          cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for row in json.loads(proc.stdout):
        assert row["lag_seconds"] < 0  # event time ahead of the wall clock, not "0 s behind"
        assert row["max_event_time"].startswith("9999-12-31T23:59:59")
        assert "ahead of the wall clock" in row["event_time_warning"]
        assert "max_event_time_skew" in row["event_time_warning"]


@pytest.mark.parametrize("threshold, warned", [(None, True), ("30d", False)], ids=["default-1d", "30d"])
def test_the_warning_threshold_is_configurable(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                               threshold: str | None, warned: bool) -> None:
    _silver_with_a_far_future_row(tmp_path / "silver", datetime.now(timezone.utc) + timedelta(days=10))
    extra = {} if threshold is None else {"future_event_time_warning": threshold}
    cfg = write_config(tmp_path / "c.toml", tmp_path / "silver", tmp_path / "gold", list(seed_queries().values()),
                       **extra)
    caplog.set_level(logging.WARNING)
    pipeline = Pipeline(load_settings(cfg))
    pipeline.start()
    pipeline.replay()
    assert bool([r for r in caplog.records if "ahead of the wall clock" in r.getMessage()]) is warned


def test_flush_refuses_windows_ending_beyond_year_9999(jumped: tuple[Path, int]) -> None:
    cfg, _ = jumped
    tables = [cfg.parent / "gold" / q for q in QUERIES]
    replay = [sys.executable, "-m", "goldstream", "replay", "--config", str(cfg)]
    assert subprocess.run(replay, cwd=ROOT, env=cli_env(), capture_output=True, timeout=300).returncode == 0
    before = [log_versions(t) for t in tables]
    proc = subprocess.run([*replay, "--flush"], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "9999-12-31" in proc.stderr and "--flush" in proc.stderr and "Traceback" not in proc.stderr
    assert [log_versions(t) for t in tables] == before  # nothing written, for any query
