"""The `run` daemon and `status`, as real subprocesses on real Delta tables.

- `status --json` reports the lag of a Gold table built with a known gap.
- SIGTERM / SIGINT: exit 0 with no partial commit (Gold equals the oracle for the Silver
  version its `txn` records, and no orphaned data file).
- The opt-in idle timeout closes windows when Silver goes quiet; without it nothing
  changes (Spark parity), in the same process.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from gold_compare import assert_gold_equal
from goldstream.config import load_settings
from goldstream.demo.synth import DEFAULT_START, synth_commit_frames
from goldstream.runner import Pipeline
from goldstream.runner.status import fmt_us
from reference import read_delta_commits, reference_gold, reference_gold_frame
from stream_helpers import Proc, log_versions, orphan_files, wait_caught_up, wait_until
from testsupport.config import QUERIES, seed_queries, write_config
from testsupport.gold import read_gold, txn_version
from testsupport.process import cli_env, goldstream
from testsupport.silver import fast_silver


def test_status_reports_the_lag_of_a_known_gap(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    table = fast_silver(silver, list(synth_commit_frames(40, 80, seed=12)))
    processed, latest = 28, table.version  # Gold through 28, Silver at 40: a gap of 12 versions
    cfg = write_config(tmp_path / "c.toml", silver, gold)
    p = Pipeline(load_settings(cfg))
    p.start()
    p.replay(to_version=processed)

    proc = goldstream("status", "--config", str(cfg), "--json", timeout=120)
    status = {r["query"]: r for r in json.loads(proc.stdout)}
    commits = read_delta_commits(str(silver))[: processed + 1]
    for name, query in seed_queries().items():
        stats: dict[str, Any] = {}
        reference_gold(commits, query, stats=stats)
        max_event = max(int(c["event_timestamp"].dt.epoch("us").max()) for c in commits  # type: ignore[arg-type]
                        if c is not None and c["event_timestamp"].drop_nulls().len())
        s = status[name]
        assert s["gold"] == str(gold / name)
        assert s["silver_latest_version"] == latest == 40
        assert s["processed_through_version"] == processed
        assert s["lag_versions"] == latest - processed == 12
        assert s["watermark"] == fmt_us(stats["watermark_us"])
        assert s["max_event_time"] == fmt_us(max_event)
        assert s["open_windows"] == stats["open_windows"] > 0
        assert s["state_rows"] > 0 and s["state_bytes"] > 8 * s["state_rows"]
        assert s["lag_seconds"] > 0 and s["last_gold_commit"] is not None
    # status only reads: Gold is untouched
    assert txn_version(gold, "country_stats") == processed


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_run_cleanly_with_a_prefix_consistent_gold(tmp_path: Path, sig: signal.Signals) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    table = fast_silver(silver, list(synth_commit_frames(80, 60, seed=13)))
    cfg = write_config(tmp_path / "c.toml", silver, gold, max_commits_per_batch=2)
    proc = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "run",
                env=cli_env(GOLDSTREAM_SOURCE__POLL_INTERVAL="0.05s"))
    try:
        wait_until(lambda: log_versions(gold / "country_anomalies") >= 3, "a few Gold commits", proc)
        t0 = time.monotonic()
        proc.signal(sig)
        assert proc.wait(timeout=60) == 0, proc.describe()
        print(f"\n{sig.name}: exited 0 after {time.monotonic() - t0:.2f} s")  # contract: < 10 s; not asserted
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopped cleanly" in proc.stdout() and "error" not in proc.stderr().lower()
    commits = read_delta_commits(str(silver))
    progress = proc.progress()
    for name, query in seed_queries().items():
        through = txn_version(gold, name)
        assert through is not None and through < table.version, "stopped mid-stream, not at the end"
        expected = reference_gold_frame(commits[: through + 1], query)
        assert_gold_equal(read_gold(gold / name), expected)
        assert not orphan_files(gold / name), "a data file was written without its commit"
        mine = [p for p in progress if p["name"] == name]
        assert [p["batchId"] for p in mine] == list(range(len(mine)))
        last = mine[-1]
        assert last["id"] == f"goldstream-{name}" and last["sources"][0]["endOffset"] >= through
        assert set(last["durationMs"]) >= {"triggerExecution", "addBatch", "getBatch"}
        assert {"numRowsTotal", "numRowsDroppedByWatermark"} <= set(last["stateOperators"][0])
        assert last["sink"]["numOutputRows"] >= 0 and last["eventTime"]["watermark"]


def test_idle_timeout_closes_windows_only_where_configured(tmp_path: Path) -> None:
    """Two copies of one query in one daemon, one with `idle_timeout`: when Silver goes quiet
    the first emits every window (as `--flush` would), the other keeps Spark's behaviour."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    base = int(DEFAULT_START.timestamp() * 1e6)
    i = pl.int_range(0, 60, eager=True)
    rows = pl.DataFrame({
        "event_timestamp": (base + i * 200_000).cast(pl.Datetime("us", "UTC")),  # 5 rows a second
        "origin_country": pl.Series(["France", "Spain", "Japan"])[(i % 3).cast(pl.UInt32)],
        "altitude_meters": (i * 100).cast(pl.Float64),
        "velocity_kmh": (i * 7).cast(pl.Float64),
        "on_ground": i % 4 == 0,
    })
    table = fast_silver(silver, [rows.slice(5 * k, 5) for k in range(12)])  # one commit per second
    query = {
        "name": "idle_off", "event_time": "event_timestamp", "keys": ["origin_country"], "window": {"kind": "tumbling", "size": "1s"},
        "watermark_delay": "500ms",
        "aggregates": [{"name": "n", "fn": "count"}, {"name": "avg_alt", "fn": "avg", "column": "altitude_meters"}],
    }
    queries = [query, {**query, "name": "idle_on", "idle_timeout": "300ms"}]
    cfg = write_config(tmp_path / "c.toml", silver, gold, queries)
    commits = read_delta_commits(str(silver))
    flushed, live = reference_gold_frame(commits, query, flush=True), reference_gold_frame(commits, query)
    assert flushed.height > live.height

    proc = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "run",
                env=cli_env(GOLDSTREAM_SOURCE__POLL_INTERVAL="0.05s"))
    try:
        wait_caught_up(proc, gold, ["idle_off", "idle_on"], table.version)

        def idle_on_rows() -> int:
            return read_gold(gold / "idle_on").height if log_versions(gold / "idle_on") else 0

        wait_until(lambda: idle_on_rows() >= flushed.height, "idle_on to close every window", proc)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.describe()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_gold_equal(read_gold(gold / "idle_on"), flushed)
    assert_gold_equal(read_gold(gold / "idle_off"), live)  # idle for as long, and nothing changed
    assert "idle for" in proc.stdout()
    # the advanced watermark is part of the offsets: a restart does not emit those windows again
    before = DeltaTable(str(gold / "idle_on")).version()
    again = Pipeline(load_settings(cfg))
    again.start()
    again.replay()
    assert DeltaTable(str(gold / "idle_on")).version() == before
    assert_gold_equal(read_gold(gold / "idle_on"), flushed)


def test_liveness_is_refreshed_by_progress_within_a_batch(tmp_path: Path) -> None:
    """A long batch is not a stuck loop: each Silver commit read, each query processed and
    each Gold commit is a sign of life, so /healthz stays fresh while a batch moves and
    goes stale only when nothing does (a hung storage call)."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    table = fast_silver(silver, list(synth_commit_frames(30, 40, seed=21)))
    cfg = write_config(tmp_path / "c.toml", silver, gold, list(seed_queries().values()), max_commits_per_batch=1000)
    pipeline = Pipeline(load_settings(cfg))
    signs: list[str] = []
    keep_alive = pipeline.supervisor.keep_alive
    pipeline.supervisor.keep_alive = lambda: (signs.append("alive"), keep_alive())[-1]  # type: ignore[method-assign]
    pipeline.start()
    opened = len(signs)
    assert opened >= len(QUERIES)  # opening Silver and each Gold table
    assert pipeline.step()  # every commit in one batch
    assert pipeline.cursor == table.version + 1
    assert len(signs) - opened >= table.version + len(QUERIES)  # per commit read, per query processed
