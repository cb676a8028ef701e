"""Restarts that do not depend on how a query started, and replay bounds that cannot lose data.

Real Delta tables, real `goldstream` processes and real signals:
- a query's start ('latest', a snapshot for 'earliest' on a cleaned-up log) is recorded in
  Gold before any row is read, and every later start (a restart after SIGTERM or SIGKILL,
  a rebuild after a storage failure) reads exactly the same input;
- `replay --to-version N --flush` below Gold's position is refused before anything is
  written, `--to-version N` below it processes nothing and says so;
- an interrupted `replay` exits 130/143 naming the version it reached, and resuming gives
  the same Gold.
"""

from __future__ import annotations

import json
import signal
from datetime import timedelta
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from gold_compare import assert_gold_equal
from goldstream.config import load_settings
from goldstream.demo.synth import DEFAULT_START, synth_commit_frames
from goldstream.runner import Pipeline
from reference import read_delta_commits, reference_gold_frame
from stream_helpers import Proc, log_versions, wait_until
from testsupport import ROOT
from testsupport.config import QUERIES, seed_queries, write_config
from testsupport.gold import read_gold, txn_version
from testsupport.process import cli_env
from testsupport.silver import FastSilver
BASE_US = int(DEFAULT_START.timestamp() * 1e6)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "goldstream", *args], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=300)


def _minute_rows(minute: int, n: int = 6) -> pl.DataFrame:
    """`n` rows a few seconds apart inside one minute of event time: no window closes while
    the stream stays within a minute or two of them."""
    i = pl.int_range(0, n, eager=True)
    return pl.DataFrame({
        "event_timestamp": (BASE_US + minute * 60_000_000 + i * 1_000_000).cast(pl.Datetime("us", "UTC")),
        "origin_country": pl.Series(["France", "Spain", "Japan"])[(i % 3).cast(pl.UInt32)],
        "altitude_meters": (i * 1000.0 + minute),
        "velocity_kmh": (i * 90.0),
        "on_ground": i % 4 == 0,
    })


def _gold_versions(gold: Path) -> dict[str, int]:
    return {q: DeltaTable(str(gold / q)).version() for q in QUERIES}


def _expected(commits: list[pl.DataFrame | None], flush: bool = False) -> dict[str, pl.DataFrame]:
    return {name: reference_gold_frame(commits, q, flush=flush) for name, q in seed_queries().items()}


# -- the start is recorded before any row is read ----------------------------------------------


def test_latest_start_survives_a_sigterm_before_the_first_window_closes(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    table = FastSilver(silver, _minute_rows(0))
    for m in range(3):
        table.append(_minute_rows(m))  # history before the start: never read
    started_after = table.version
    cfg = write_config(tmp_path / "c.toml", silver, gold, list(seed_queries().values()), starting_version="latest")
    proc = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "run",
                env=cli_env(GOLDSTREAM_SOURCE__POLL_INTERVAL="0.05s"))
    try:
        wait_until(lambda: all(log_versions(gold / q) for q in QUERIES), "Gold to be created", proc)
        for _ in range(3):
            table.append(_minute_rows(10))  # read by this run; no window closes
        wait_until(lambda: all(v >= table.version for v in proc.processed_through().values())
                   and len(proc.processed_through()) == len(QUERIES), "the new commits to be processed", proc)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.describe()
    finally:
        if proc.poll() is None:
            proc.kill()

    status = _cli("status", "--config", str(cfg), "--json")
    assert status.returncode == 0, status.stderr
    for row in json.loads(status.stdout):  # nothing committed past the start: the whole run is lag
        assert row["processed_through_version"] == started_after
        assert row["lag_versions"] == table.version - started_after == 3

    for m in (11, 20):
        table.append(_minute_rows(m))  # closes minute 10's windows
    done = _cli("replay", "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    commits = [None] * (started_after + 1) + read_delta_commits(str(silver))[started_after + 1:]
    for name, expected in _expected(commits).items():
        assert expected.height > 0
        assert_gold_equal(read_gold(gold / name), expected)


def test_latest_start_survives_a_rebuild_after_a_storage_failure(tmp_path: Path) -> None:
    """The supervisor rebuilds the stream from Gold after a transient failure: the same
    start as a fresh process, not 'latest' resolved again."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    table = FastSilver(silver, _minute_rows(0))
    table.append(_minute_rows(0))
    started_after = table.version
    cfg = write_config(tmp_path / "c.toml", silver, gold, list(seed_queries().values()), starting_version="latest")
    p = Pipeline(load_settings(cfg))
    p.start()
    table.append(_minute_rows(5))
    assert p.step()
    p.supervisor.reopen()  # what a transient storage failure does
    table.append(_minute_rows(6))
    table.append(_minute_rows(20))
    p.replay()
    commits = [None] * (started_after + 1) + read_delta_commits(str(silver))[started_after + 1:]
    for name, expected in _expected(commits).items():
        assert expected.height > 0
        assert_gold_equal(read_gold(gold / name), expected)


def _cleaned_up_silver(path: Path, commits: int, checkpoint_at: int) -> list[pl.DataFrame | None]:
    """A Silver whose log was cleaned up to a checkpoint: the JSON of every version up to
    and including `checkpoint_at` is gone. Returns every version's rows, as written."""
    frames = list(synth_commit_frames(commits, 60, seed=17))
    table = FastSilver(path, frames[0])
    for f in frames[1:checkpoint_at + 1]:
        table.append(f)
    table.checkpoint()
    for f in frames[checkpoint_at + 1:]:
        table.append(f)
    written = read_delta_commits(str(path))
    for v in range(checkpoint_at + 1):
        (path / "_delta_log" / f"{v:020d}.json").unlink()
    return written


def test_snapshot_start_survives_restarts_and_a_sigkill(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    written = _cleaned_up_silver(silver, 60, checkpoint_at=30)
    snapshot = pl.concat([c for c in written[:31] if c is not None])
    expected = _expected([snapshot, *written[31:]])
    cfg = write_config(tmp_path / "c.toml", silver, gold, list(seed_queries().values()),
                       starting_version="earliest", max_commits_per_batch=2)

    first = _cli("replay", "--config", str(cfg), "--to-version", "35")
    assert first.returncode == 0, first.stderr
    proc = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "run",
                env=cli_env(GOLDSTREAM_SOURCE__POLL_INTERVAL="0.05s"))
    try:
        wait_until(lambda: min(proc.processed_through().values(), default=-1) >= 40
                   and len(proc.processed_through()) == len(QUERIES), "run to get past version 40", proc)
        proc.kill()  # SIGKILL, mid-stream
    finally:
        if proc.poll() is None:
            proc.kill()
    last = _cli("replay", "--config", str(cfg))
    assert last.returncode == 0, last.stderr
    for name in QUERIES:
        assert txn_version(gold, name) == len(written) - 1
        assert_gold_equal(read_gold(gold / name), expected[name])


# -- --flush and --to-version below Gold's position ---------------------------------------------


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[pl.DataFrame | None]]:
    """A Silver of 60 versions whose Gold is at its latest version (a template, copied per test)."""
    root = tmp_path_factory.mktemp("replayed")
    silver, gold = root / "silver", root / "gold"
    frames = list(synth_commit_frames(60, 80, seed=19))
    table = FastSilver(silver, frames[0])
    for f in frames[1:]:
        table.append(f)
    cfg = write_config(root / "c.toml", silver, gold, list(seed_queries().values()))
    done = _cli("replay", "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    return root, read_delta_commits(str(silver))


def _copy(template: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(template / "silver", to / "silver")
    shutil.copytree(template / "gold", to / "gold")
    return write_config(to / "c.toml", to / "silver", to / "gold", list(seed_queries().values()))


@pytest.mark.parametrize("to_version", [58, 50, 3], ids=["just-below", "rebuild-range", "below-low"])
def test_flush_below_golds_position_is_refused_before_anything_is_written(
        replayed: tuple[Path, list[pl.DataFrame | None]], tmp_path: Path, to_version: int) -> None:
    cfg = _copy(replayed[0], tmp_path)
    gold = tmp_path / "gold"
    before = _gold_versions(gold)
    refused = _cli("replay", "--config", str(cfg), "--to-version", str(to_version), "--flush")
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    for q in QUERIES:
        assert f"query {q!r}" in refused.stderr
    assert f"--to-version {to_version}" in refused.stderr and "Silver version 59" in refused.stderr
    assert "nothing was written" in refused.stderr.lower()
    assert _gold_versions(gold) == before


@pytest.mark.parametrize("to_version", [50, 3])
def test_to_version_below_golds_position_processes_nothing(
        replayed: tuple[Path, list[pl.DataFrame | None]], tmp_path: Path, to_version: int) -> None:
    cfg = _copy(replayed[0], tmp_path)
    gold = tmp_path / "gold"
    before = _gold_versions(gold)
    done = _cli("replay", "--config", str(cfg), "--to-version", str(to_version))
    assert done.returncode == 0, done.stderr
    for q in QUERIES:
        assert f"{q}: Gold already holds Silver through version 59, past --to-version {to_version}" in done.stdout
    assert _gold_versions(gold) == before
    for name, expected in _expected(replayed[1]).items():
        assert_gold_equal(read_gold(gold / name), expected)


def test_flush_at_golds_position_closes_complete_windows_and_they_stay_final(
        replayed: tuple[Path, list[pl.DataFrame | None]], tmp_path: Path) -> None:
    cfg = _copy(replayed[0], tmp_path)
    gold = tmp_path / "gold"
    done = _cli("replay", "--config", str(cfg), "--to-version", "59", "--flush")
    assert done.returncode == 0, done.stderr
    flushed = _expected(replayed[1], flush=True)
    for name, expected in flushed.items():
        assert_gold_equal(read_gold(gold / name), expected)
    # later commits: rows of flushed windows are late, nothing is emitted twice
    table = FastSilver.__new__(FastSilver)
    table.path, table.version, table.checkpoint_every = tmp_path / "silver", 59, 0
    for f in synth_commit_frames(90, 80, seed=23, start=DEFAULT_START + timedelta(minutes=9)):
        table.append(f)
    again = _cli("replay", "--config", str(cfg))
    assert again.returncode == 0, again.stderr
    for name in QUERIES:
        gold_rows = read_gold(gold / name)
        keys = ["window_start", "window_end", "origin_country"]
        assert gold_rows.select(keys).is_duplicated().sum() == 0
        assert gold_rows.height > flushed[name].height
        assert_gold_equal(gold_rows.join(flushed[name].select(keys), on=keys, how="semi", nulls_equal=True),
                          flushed[name])


def test_queries_at_different_positions(replayed: tuple[Path, list[pl.DataFrame | None]], tmp_path: Path) -> None:
    """One query at 59, a new one: --to-version 50 --flush would flush the first one's
    windows incomplete, so nothing is written, not even the new query's Gold."""
    template = replayed[0]
    cfg = _copy(template, tmp_path)
    queries = list(seed_queries().values())
    extra = {**queries[0], "name": "stats_copy"}
    cfg = write_config(tmp_path / "c2.toml", tmp_path / "silver", tmp_path / "gold", [*queries, extra])
    refused = _cli("replay", "--config", str(cfg), "--to-version", "50", "--flush")
    assert refused.returncode == 2, refused.stderr
    assert not (tmp_path / "gold" / "stats_copy").exists()
    done = _cli("replay", "--config", str(cfg), "--to-version", "50")
    assert done.returncode == 0, done.stderr
    expected = reference_gold_frame(replayed[1][:51], extra)
    assert_gold_equal(read_gold(tmp_path / "gold" / "stats_copy"), expected)
    assert txn_version(tmp_path / "gold", "stats_copy") == 50
    assert _gold_versions(tmp_path / "gold") == _gold_versions(template / "gold")


# -- an interrupted replay says so --------------------------------------------------------------


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_interrupted_replay_exits_with_the_signal_and_resumes(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    frames = list(synth_commit_frames(300, 60, seed=29))
    table = FastSilver(silver, frames[0])
    for f in frames[1:]:
        table.append(f)
    cfg = write_config(tmp_path / "c.toml", silver, gold, list(seed_queries().values()), max_commits_per_batch=1)
    proc = Proc(["replay", "--config", str(cfg)], tmp_path / "logs", "replay")
    try:
        wait_until(lambda: min(proc.processed_through().values(), default=-1) >= 5
                   and len(proc.processed_through()) == len(QUERIES), "a few batches", proc)
        proc.signal(sig)
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == code, proc.describe()
    reached = {q: txn_version(gold, q) for q in QUERIES}
    assert all(v is not None and v < table.version for v in reached.values()), "stopped before the end"
    err = proc.stderr()
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err
    for q, v in reached.items():
        assert f"{q}: Silver processed through version {v} of {table.version}" in err
    done = _cli("replay", "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    for name, expected in _expected(read_delta_commits(str(silver))).items():
        assert_gold_equal(read_gold(gold / name), expected)
