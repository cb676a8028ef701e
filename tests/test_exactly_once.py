"""Exactly-once Gold under crashes and concurrent instances, with real processes.

- `run` over a Silver table another process keeps appending to, SIGKILLed at random
  instants (some inside a Gold commit, some between the late-sink and the Gold commit)
  and restarted: Gold and the late tables equal one uninterrupted `replay`.
- `replay` SIGKILLed and rerun: the same.
- Two instances of a query on one Gold table: no duplicate row, the loser exits 3.
- A changed query definition is refused at restart (exit 2), an unchanged one resumes.
- A restart reads only the Silver commits still feeding open windows.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from gold_compare import assert_gold_equal
from goldstream.config import Settings, load_settings
from goldstream.durations import parse_duration, to_us
from goldstream.errors import OwnershipLost, SinkError
from goldstream.runner import Pipeline
from goldstream.storage import Storage
from goldstream.demo.synth import DEFAULT_START, synth_commit_frames
from reference import read_delta_commits, reference_gold
from stream_helpers import (
    Proc,
    data_files,
    grow_until_one_stands_by,
    log_versions,
    orphan_files,
    wait_caught_up,
    wait_until,
)
from testsupport import ROOT
from testsupport.config import QUERIES, seed_queries, write_config
from testsupport.gold import read_gold, txn_version
from testsupport.process import cli_env, goldstream
from testsupport.silver import FastSilver, fast_silver
FAST_POLL = {"GOLDSTREAM_SOURCE__POLL_INTERVAL": "0.05s"}


def _queries_with_late_sinks(late_root: Path) -> list[dict[str, Any]]:
    seeds = seed_queries()
    return [{**seeds[q], "late_sink": str(late_root / q)} for q in QUERIES]


def _rows(df: pl.DataFrame) -> Counter:
    return Counter(df.rows())


def _assert_no_duplicate_windows(gold: pl.DataFrame, keys: list[str]) -> None:
    ids = gold.select("window_start", "window_end", *keys)
    dup = ids.filter(ids.is_duplicated())
    assert dup.height == 0, f"windows emitted more than once:\n{dup.unique()}"


def _assert_same_output(gold_root: Path, late_root: Path, ref_gold: Path, ref_late: Path) -> dict[str, int]:
    """Gold and late tables of a crashed/restarted history vs an uninterrupted replay."""
    late_rows = {}
    for q in QUERIES:
        actual, expected = read_gold(gold_root / q), read_gold(ref_gold / q)
        assert expected.height > 0
        _assert_no_duplicate_windows(actual, ["origin_country"])
        assert_gold_equal(actual, expected)
        late, late_expected = read_gold(late_root / q), read_gold(ref_late / q)
        assert late.columns == late_expected.columns
        assert _rows(late) == _rows(late_expected), f"late table of {q} differs from the replay's"
        late_rows[q] = late.height
    return late_rows


def _replay_reference(tmp: Path, silver: Path) -> tuple[Path, Path, dict[str, Any]]:
    """One uninterrupted `replay` over the final Silver; its Gold and late roots and summary."""
    ref_gold, ref_late = tmp / "ref-gold", tmp / "ref-late"
    cfg = write_config(tmp / "ref.toml", silver, ref_gold, _queries_with_late_sinks(ref_late))
    proc = goldstream("replay", "--config", str(cfg), "--json")
    summary = {r["query"]: r for r in json.loads(proc.stdout.splitlines()[-1])["summary"]}
    return ref_gold, ref_late, summary


class Killer:
    """SIGKILLs a goldstream process at a chosen instant and records where it landed.

    Modes: `delay` (a random instant after spawn: import, start-up, state rebuild, a
    batch...), `gold_data` (inside a Gold commit: its data file is written, the log entry
    that publishes it is not), `gold_log` (right after a Gold commit), `late_log` (right
    after a late-sink commit, before the Gold commit of that batch).

    The gap between a Gold data file and its log entry is a few ms, too short to hit
    reliably by polling; so in `gold_data` mode the process is frozen (SIGSTOP) as soon as
    a new data file shows up, and killed if the file is still unpublished, else resumed
    (SIGCONT) to try again on the next commit.
    """

    def __init__(self, rng: random.Random, gold_root: Path, late_root: Path | None) -> None:
        self.rng = rng
        self.gold = [gold_root / q for q in QUERIES]
        self.late = [late_root / q for q in QUERIES] if late_root else []
        self.kills: Counter = Counter()
        self.inside_commit = 0

    def _watch(self, proc: Proc, tables: list[Path], what: str, timeout: float, nth: int) -> Path | None:
        """Wait for the `nth` new data file (or log entry) in one of `tables`."""
        self.new_files: set[str] = set()
        base = {t: (data_files(t) if what == "data" else log_versions(t)) for t in tables}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            for t in tables:
                if what == "data":
                    self.new_files = data_files(t) - base[t]  # type: ignore[operator]
                    new = len(self.new_files)
                else:
                    new = log_versions(t) - base[t]  # type: ignore[operator]
                if new >= nth:
                    return t
            time.sleep(0.0002)
        return None

    def _freeze_inside_a_commit(self, proc: Proc, tries: int = 8) -> Path | None:
        for _ in range(tries):
            table = self._watch(proc, self.gold, "data", 10, 1)
            if table is None:
                return None
            proc.signal(signal.SIGSTOP)
            if self.new_files & orphan_files(table):  # written, not yet in the log: frozen inside
                return table
            proc.signal(signal.SIGCONT)
        return None

    def kill(self, proc: Proc, modes: tuple[str, ...], may_finish: bool = False) -> int | None:
        """Kill `proc` at an instant picked by a random mode; None, or the exit code of a
        process that finished on its own first (only allowed with `may_finish`)."""
        mode = self.rng.choice(modes)
        orphans_before = {t: orphan_files(t) for t in self.gold}
        hit: Path | None = None
        nth = self.rng.randint(1, 3)  # spread the kills over the history, not all at the first commit
        if mode == "delay":
            time.sleep(self.rng.uniform(0.2, 2.0))
        elif mode == "gold_data":
            if nth > 1:
                self._watch(proc, self.gold, "log", 10, nth - 1)
            hit = self._freeze_inside_a_commit(proc)
        elif mode == "gold_log":
            hit = self._watch(proc, self.gold, "log", 10, nth)
        else:
            hit = self._watch(proc, self.late, "log", 10, nth)
        rc = proc.poll()
        if rc is not None:
            assert may_finish and rc == 0, f"goldstream exited with {rc} before the kill ({mode}):\n{proc.describe()}"
            proc.wait()
            return rc
        assert proc.kill() == -signal.SIGKILL
        if any(orphan_files(t) - orphans_before[t] for t in self.gold):
            self.inside_commit += 1
        self.kills[mode if mode == "delay" or hit else f"{mode}-timeout"] += 1
        return None


@pytest.mark.slow  # a crash loop; still part of the default run
def test_run_sigkilled_at_random_instants_equals_one_replay(tmp_path: Path) -> None:
    silver, gold, late = tmp_path / "silver", tmp_path / "gold", tmp_path / "late"
    cfg = write_config(tmp_path / "run.toml", silver, gold, _queries_with_late_sinks(late))
    writer = subprocess.Popen(
        [sys.executable, "-m", "testsupport.silver_writer", str(silver), "--seed", "7", "--rows", "40",
         "--pace", "0.01"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_until(lambda: log_versions(silver) >= 5, "the writer's first Silver commits")
        killer = Killer(random.Random(1234), gold, late)
        cycle = 0
        while sum(killer.kills.values()) < 20 or killer.inside_commit < 2:
            assert cycle < 60, f"no kill landed inside a Gold commit after {cycle} cycles: {killer.kills}"
            proc = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", f"run{cycle}",
                        env=cli_env(**FAST_POLL))
            killer.kill(proc, ("delay", "gold_data", "gold_data", "gold_log", "late_log"))
            cycle += 1
            assert writer.poll() is None, "the Silver writer stopped early"
    finally:
        writer.send_signal(signal.SIGTERM)
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err[-2000:]
    final = DeltaTable(str(silver)).version()
    assert final >= 40

    proc = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "final", env=cli_env(**FAST_POLL))
    wait_caught_up(proc, gold, QUERIES, final)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.describe()

    ref_gold, ref_late, summary = _replay_reference(tmp_path, silver)
    late_rows = _assert_same_output(gold, late, ref_gold, ref_late)
    for q in QUERIES:  # the late tables hold exactly the rows the engine counted as late
        assert late_rows[q] == summary[q]["rows_late"]
    assert late_rows["country_stats"] > 0
    print(f"\ncrash test: {sum(killer.kills.values())} kills {dict(killer.kills)}, "
          f"{killer.inside_commit} inside a Gold commit, Silver versions 0..{final}")


@pytest.mark.slow  # a crash loop; still part of the default run
def test_replay_sigkilled_and_rerun_equals_one_replay(tmp_path: Path) -> None:
    silver, gold, late = tmp_path / "silver", tmp_path / "gold", tmp_path / "late"
    # long enough (many small batches, each a Gold commit) that the kills land before a
    # replay can finish: the replay is fast, and the loop stops at the first clean finish
    frames = list(synth_commit_frames(160, 40, seed=21))
    fast_silver(silver, frames)
    cfg = write_config(tmp_path / "replay.toml", silver, gold, _queries_with_late_sinks(late),
                       max_commits_per_batch=2)
    killer = Killer(random.Random(99), gold, late)
    runs = 0
    while True:
        assert runs < 40, f"replay never finished: {killer.kills}"
        proc = Proc(["replay", "--config", str(cfg)], tmp_path / "logs", f"replay{runs}")
        runs += 1
        if sum(killer.kills.values()) >= 8 and killer.inside_commit >= 1:
            assert proc.wait() == 0, proc.describe()
            break
        if killer.kill(proc, ("delay", "gold_data", "gold_data", "gold_log", "late_log"), may_finish=True) == 0:
            break
    assert sum(killer.kills.values()) >= 6 and killer.inside_commit >= 1, (killer.kills, killer.inside_commit)
    ref_gold, ref_late, summary = _replay_reference(tmp_path, silver)
    late_rows = _assert_same_output(gold, late, ref_gold, ref_late)
    assert late_rows == {q: summary[q]["rows_late"] for q in QUERIES}
    print(f"\nreplay crash test: {sum(killer.kills.values())} kills {dict(killer.kills)}, "
          f"{killer.inside_commit} inside a Gold commit")


# -- fencing: one owner per query ---------------------------------------------------------


def _static_silver(path: Path, commits: int, rows: int, seed: int) -> tuple[FastSilver, list[pl.DataFrame]]:
    frames = list(synth_commit_frames(commits, rows, seed=seed))
    return fast_silver(path, frames), frames


def _settings(cfg: Path) -> Settings:
    return load_settings(cfg)


@pytest.mark.parametrize("with_late", [True, False], ids=["late-sinks", "gold-only"])
def test_second_pipeline_on_the_same_gold_stops_without_writing(tmp_path: Path, with_late: bool) -> None:
    """Two instances that both opened the Gold table (and the late table): the first commit
    wins, the other's commit is refused before anything of it is written, late rows included."""
    silver, gold, late = tmp_path / "silver", tmp_path / "gold", tmp_path / "late"
    table, _ = _static_silver(silver, 40, 60, seed=5)
    queries = _queries_with_late_sinks(late) if with_late else None
    cfg = write_config(tmp_path / "c.toml", silver, gold, queries, max_commits_per_batch=30)
    a, b = Pipeline(_settings(cfg)), Pipeline(_settings(cfg))
    a.start()  # creates both Gold tables
    b.start()  # finds them, with no offsets yet
    assert b.runs[0].sink.committed is not None and b.runs[0].sink.committed.version == -1  # a's start only
    assert a.step()
    versions = {q: DeltaTable(str(gold / q)).version() for q in QUERIES}
    late_rows = {q: read_gold(late / q).height for q in QUERIES} if with_late else {}
    with pytest.raises(OwnershipLost, match="another instance owns query 'country_stats'.*no duplicate rows"):
        b.step()
    assert {q: DeltaTable(str(gold / q)).version() for q in QUERIES} == versions
    if with_late:
        assert late_rows["country_stats"] > 0
        assert {q: read_gold(late / q).height for q in QUERIES} == late_rows, "the loser wrote late rows again"
    # the winner goes on; the loser, restarted, resumes from the winner's offsets
    assert a.step()
    c = Pipeline(_settings(cfg))
    c.start()
    assert [r.committed for r in c.runs] == [table.version] * 2
    c.replay()
    ref_gold, ref_late = tmp_path / "ref-gold", tmp_path / "ref-late"
    ref = Pipeline(_settings(write_config(tmp_path / "ref.toml", silver, ref_gold, _queries_with_late_sinks(ref_late))))
    ref.start()
    ref.replay()
    for q in QUERIES:
        _assert_no_duplicate_windows(read_gold(gold / q), ["origin_country"])
        assert_gold_equal(read_gold(gold / q), read_gold(ref_gold / q))
        if with_late:
            assert _rows(read_gold(late / q)) == _rows(read_gold(ref_late / q))


@pytest.mark.parametrize("store", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_racing_creates_and_first_commits_leave_one_owner(tmp_path: Path, store: str,
                                                          request: pytest.FixtureRequest) -> None:
    """Two instances open a Gold table that does not exist yet at the same instant (both try
    to create it, and its late table on their first write), then race their first commit:
    each round, exactly one of them stops with OwnershipLost, nothing else goes wrong, and
    Gold holds the winner's rows once. On S3 the race is decided by `If-None-Match: *`."""
    silver = tmp_path / "silver"
    table, _ = _static_silver(silver, 24, 60, seed=6)
    ref_gold, ref_late = tmp_path / "ref-gold", tmp_path / "ref-late"
    ref = Pipeline(_settings(write_config(tmp_path / "ref.toml", silver, ref_gold,
                                          _queries_with_late_sinks(ref_late)[:1])))
    ref.start()
    ref.replay()
    storage, options, root = Storage.from_env(env={}), None, str(tmp_path)
    if store == "s3":
        s3 = request.getfixturevalue("s3_server")
        storage, options = Storage.from_env(env=s3.env()), s3.deltalake_storage_options()
        root = f"s3://{s3.bucket}/race-{uuid.uuid4().hex[:8]}"
    for round_ in range(4 if store == "local" else 3):
        gold, late = f"{root}/gold{round_}", f"{root}/late{round_}"
        cfg = write_config(tmp_path / f"c{round_}.toml", silver, gold,
                           [{**seed_queries()["country_stats"], "late_sink": f"{late}/country_stats"}])
        pipelines = [Pipeline(_settings(cfg), storage=storage) for _ in range(2)]
        barrier = threading.Barrier(2)
        outcome: list[BaseException | None] = [None, None]

        def go(i: int) -> None:  # the start each records is a first commit: the race may end there
            try:
                barrier.wait(timeout=60)
                pipelines[i].start()
                pipelines[i].replay()
            except BaseException as err:  # noqa: BLE001 - reported below
                outcome[i] = err

        threads = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        errors = [e for e in outcome if e is not None]
        assert len(errors) == 1 and isinstance(errors[0], OwnershipLost), f"round {round_}: {outcome!r}"
        assert "another instance owns query 'country_stats'" in str(errors[0])
        assert pipelines[outcome.index(None)].runs[0].committed == table.version
        for t in (f"{gold}/country_stats", f"{late}/country_stats"):  # one creator won, once
            ops = [h["operation"] for h in DeltaTable(t, storage_options=options).history()]
            assert ops.count("CREATE TABLE") == 1, f"{t}: {ops}"
        assert_gold_equal(read_gold(f"{gold}/country_stats", options), read_gold(ref_gold / "country_stats"))
        assert _rows(read_gold(f"{late}/country_stats", options)) == _rows(read_gold(ref_late / "country_stats"))


@pytest.mark.parametrize("gold_exists", [False, True], ids=["fresh-gold", "existing-gold"])
def test_second_run_daemon_stands_by_then_takes_over_from_a_killed_owner(tmp_path: Path, gold_exists: bool) -> None:
    """Two `run` instances of one query: fencing lets one own Gold; the other becomes a
    standby (it keeps running, polling, not ready) instead of exiting into a crash loop.
    Once the owner is SIGKILLed and Gold stops moving for `takeover_after` while Silver
    grows, the standby takes over, and Gold equals one uninterrupted replay."""
    silver, gold, late = tmp_path / "silver", tmp_path / "gold", tmp_path / "late"
    table, _ = _static_silver(silver, 40, 40, seed=8)
    # one query: one owner, one standby; late sink on the fresh table, Gold alone on the other
    queries = _queries_with_late_sinks(late)[:1] if not gold_exists else [seed_queries()["country_stats"]]
    cfg = write_config(tmp_path / "c.toml", silver, gold, queries, max_commits_per_batch=3)
    if gold_exists:
        p = Pipeline(_settings(cfg))
        p.start()
        p.replay(to_version=30)
    env = cli_env(**FAST_POLL, GOLDSTREAM_SINK__TAKEOVER_AFTER="2s")
    procs = [Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", f"run{i}", env=env)
             for i in range(2)]
    try:
        frames = synth_commit_frames(400, 40, seed=9, start=_after(table))
        owner, standby = grow_until_one_stands_by(procs, table, frames, limit=400)
        assert "another instance owns query 'country_stats'" in standby.stdout()
        assert "no duplicate rows" in standby.stdout()
        for _ in range(5):  # the standby keeps polling; it neither exits nor writes
            table.append(next(frames))
            time.sleep(0.05)
        assert standby.poll() is None, standby.describe()
        owner.kill()  # SIGKILL: no clean stop, Gold stops moving
        deadline = time.monotonic() + 120
        while "taking over: the Gold tables" not in standby.stdout():  # Silver keeps growing meanwhile
            assert time.monotonic() < deadline and standby.poll() is None, standby.describe()
            table.append(next(frames))
            time.sleep(0.1)
        wait_caught_up(standby, gold, ["country_stats"], table.version)
        standby.signal(signal.SIGTERM)
        assert standby.wait() == 0, standby.describe()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    ref_gold, ref_late = tmp_path / "ref-gold", tmp_path / "ref-late"
    ref = Pipeline(_settings(write_config(tmp_path / "ref.toml", silver, ref_gold,
                                          _queries_with_late_sinks(ref_late)[:1])))
    ref.start()
    ref.replay()
    actual = read_gold(gold / "country_stats")
    _assert_no_duplicate_windows(actual, ["origin_country"])
    assert_gold_equal(actual, read_gold(ref_gold / "country_stats"))
    if not gold_exists:
        assert _rows(read_gold(late / "country_stats")) == _rows(read_gold(ref_late / "country_stats"))


def _after(table: FastSilver) -> datetime:
    """Event-time start for frames appended after `table`'s synthetic history (10 s a commit)."""
    return DEFAULT_START + timedelta(seconds=10 * table.version)


# -- the query fingerprint ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fingerprinted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Silver (with a second timestamp column) and Gold written by the seed queries."""
    tmp = tmp_path_factory.mktemp("fingerprint")
    silver, gold = tmp / "silver", tmp / "gold"
    frames = [f.with_columns(pl.col("event_timestamp").alias("observed_at"))
              for f in synth_commit_frames(30, 30, seed=4)]
    fast_silver(silver, frames)
    cfg = write_config(tmp / "seed.toml", silver, gold)
    p = Pipeline(_settings(cfg))
    p.start()
    p.replay()
    return tmp, silver, gold


def _agg(query: dict[str, Any], name: str) -> int:
    return next(i for i, a in enumerate(query["aggregates"]) if a["name"] == name)


def _changed(query: str, change: str) -> dict[str, Any]:
    q = json.loads(json.dumps(seed_queries()[query]))
    aggs = q["aggregates"]
    if change == "window size":
        q["window"] = {"kind": "tumbling", "size": "2m"}
    elif change == "slide":
        q["window"] = {**q["window"], "slide": "30s"}
    elif change == "kind":
        q["window"] = {"kind": "sliding", "size": "1m", "slide": "1m"}
    elif change == "watermark delay":
        q["watermark_delay"] = "3m"
    elif change == "keys":
        q["keys"] = ["origin_country", "on_ground"]
    elif change == "event_time":
        q["event_time"] = "observed_at"
    elif change == "aggregate added":
        aggs.append({"name": "max_altitude", "fn": "max", "column": "altitude_meters"})
    elif change == "aggregate removed":
        aggs.pop(_agg(q, "airborne_count"))
    elif change == "aggregate renamed":
        aggs[_agg(q, "flight_count")]["name"] = "observations"
    elif change == "threshold above":
        aggs[_agg(q, "altitude_anomalies")]["above"] = 13000.0
    elif change == "threshold below":
        aggs[_agg(q, "velocity_anomalies")]["below"] = -1.0
    elif change == "threshold equals":
        aggs[_agg(q, "ground_count")]["equals"] = False
    else:
        raise AssertionError(change)
    return q


# (change, query it applies to, what the refusal must name)
CHANGES = [
    ("window size", "country_stats", "window size: Gold has 1m, config has 2m"),
    ("slide", "country_anomalies", "window slide: Gold has 1m, config has 30s"),
    ("kind", "country_stats", 'window kind: Gold has "tumbling", config has "sliding"'),
    ("watermark delay", "country_stats", "watermark delay: Gold has 2m, config has 3m"),
    ("keys", "country_stats", 'keys: Gold has ["origin_country"], config has ["origin_country", "on_ground"]'),
    ("event_time", "country_anomalies", 'event_time: Gold has "event_timestamp", config has "observed_at"'),
    ("aggregate added", "country_stats", "aggregate 'max_altitude' added"),
    ("aggregate removed", "country_stats", "aggregate 'airborne_count' removed"),
    ("aggregate renamed", "country_stats", "aggregate 'flight_count' renamed to 'observations'"),
    ("threshold above", "country_anomalies", "aggregate 'altitude_anomalies': above: Gold has 12000.0, config has 13000.0"),
    ("threshold below", "country_anomalies", "aggregate 'velocity_anomalies': below: Gold has 0.0, config has -1.0"),
    ("threshold equals", "country_stats", "aggregate 'ground_count': equals: Gold has true, config has false"),
]


@pytest.mark.parametrize("change,query,named", CHANGES, ids=[c[0] for c in CHANGES])
def test_changed_definition_is_refused(fingerprinted: tuple[Path, Path, Path], change: str, query: str,
                                       named: str) -> None:
    tmp, silver, gold = fingerprinted
    before = DeltaTable(str(gold / query)).version()
    cfg = write_config(tmp / f"{change}.toml", silver, gold, [_changed(query, change)])
    with pytest.raises(SinkError) as err:
        Pipeline(_settings(cfg)).start()
    msg = str(err.value)
    assert f"query {query!r} changed since Gold table" in msg
    assert named in msg
    assert "To start fresh, give the query a new name or gold_path" in msg
    assert DeltaTable(str(gold / query)).version() == before  # nothing written


def test_changed_definition_exits_2_and_unchanged_resumes_silently(fingerprinted: tuple[Path, Path, Path]) -> None:
    tmp, silver, gold = fingerprinted
    versions = {q: DeltaTable(str(gold / q)).version() for q in QUERIES}
    rows = {q: read_gold(gold / q).height for q in QUERIES}
    changed = write_config(tmp / "cli-changed.toml", silver, gold,
                           [seed_queries()["country_anomalies"], _changed("country_stats", "window size")])
    proc = goldstream("run", "--config", str(changed), timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "query 'country_stats' changed" in proc.stderr and "window size: Gold has 1m, config has 2m" in proc.stderr
    assert "Traceback" not in proc.stderr
    same = write_config(tmp / "cli-same.toml", silver, gold)
    proc = goldstream("replay", "--config", str(same), "--json", timeout=120)
    assert "WARNING" not in proc.stdout + proc.stderr and "error" not in proc.stderr.lower(), proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    assert [r["rows_in"] for r in summary] == [0, 0]  # resumed at the end: nothing new
    assert {q: DeltaTable(str(gold / q)).version() for q in QUERIES} == versions
    assert {q: read_gold(gold / q).height for q in QUERIES} == rows


# -- bounded restart work --------------------------------------------------------------------

_MINUTE_US = 60_000_000


def _tiny_commits(first: int, n: int, base_us: int) -> list[pl.DataFrame]:
    """Commit i holds 5 rows 2 s apart starting at base + 10 s * i (3 countries): in order,
    so nothing is late and old commits stop feeding windows once those close."""
    i = pl.int_range(0, 5 * n, eager=True) + 5 * first
    frame = pl.DataFrame({
        "event_timestamp": (base_us + (i // 5) * 10_000_000 + (i % 5) * 2_000_000).cast(pl.Datetime("us", "UTC")),
        "origin_country": pl.Series(["France", "Spain", "Japan"])[(i % 3).cast(pl.UInt32)],
        "altitude_meters": (i * 37 % 13_000).cast(pl.Float64),
        "velocity_kmh": (i * 13 % 1_100).cast(pl.Float64),
        "on_ground": i % 7 == 0,
    })
    return [frame.slice(5 * k, 5) for k in range(n)]


def _expected_low(frames: dict[int, pl.DataFrame], query: dict[str, Any]) -> int:
    """Lowest Silver version with a row in a window still open at the end: where a restart
    re-reads Silver from."""
    size = to_us(parse_duration(query["window"]["size"]))
    slide = to_us(parse_duration(query["window"].get("slide", query["window"]["size"])))
    delay = to_us(parse_duration(query["watermark_delay"]))
    all_rows = pl.concat([f.with_columns(pl.lit(v).alias("v")) for v, f in frames.items()])
    t = all_rows["event_timestamp"].dt.epoch("us")
    watermark = (int(t.max()) // 1000) * 1000 - delay  # type: ignore[operator]
    last_end = (t // slide) * slide + size
    return int(all_rows.filter(last_end > watermark)["v"].min())  # type: ignore[arg-type]


def test_restart_after_1000_commits_reads_only_commits_feeding_open_windows(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    base = int(DEFAULT_START.timestamp() * 1e6)
    frames = _tiny_commits(0, 1030, base)
    table = fast_silver(silver, frames[:1000])
    table.checkpoint()
    assert table.version == 1000
    cfg = write_config(tmp_path / "c.toml", silver, gold)
    first = Pipeline(_settings(cfg))
    first.start()
    first.replay()
    assert first.source.commits_read == 1001
    versions = {q: DeltaTable(str(gold / q)).version() for q in QUERIES}

    restart = Pipeline(_settings(cfg))
    restart.start()
    by_version = {v + 1: f for v, f in enumerate(frames[:1000])}
    lows = {r.query.name: _expected_low(by_version, seed_queries()[r.query.name]) for r in restart.runs}
    assert {r.query.name: r.rebuild_from for r in restart.runs} == lows
    # country_stats: 1 min window + 2 min delay = 18 commits of 10 s; country_anomalies 5 + 6 min = 66
    assert 15 <= lows["country_stats"] and 1000 - lows["country_anomalies"] <= 70
    while restart.step():  # the rebuild alone: state only, nothing new
        pass
    assert restart.source.commits_read == 1000 - min(lows.values()) + 1 <= 70
    assert [r.stats.commits_read for r in restart.runs] == [0, 0]  # nothing new: all was rebuild
    assert {q: DeltaTable(str(gold / q)).version() for q in QUERIES} == versions  # and nothing written

    # the state it rebuilt from those few commits is the whole state: later output is right
    for f in frames[1000:]:
        table.append(f)
    more = Pipeline(_settings(cfg))
    more.start()
    more.replay()
    assert {q: DeltaTable(str(gold / q)).version() for q in QUERIES} != versions
    whole = tmp_path / "whole"
    ref = Pipeline(_settings(write_config(tmp_path / "ref.toml", silver, whole)))
    ref.start()
    ref.replay()
    for q in QUERIES:
        assert_gold_equal(read_gold(gold / q), read_gold(whole / q))
    print(f"\nrestart after 1000 commits read {restart.source.commits_read} commits (rebuild from {lows})")


# -- the late sink ----------------------------------------------------------------------------


def _dropped_rows(commits: list[pl.DataFrame | None], query: dict[str, Any]) -> Counter:
    """Rows every window of which was closed when their commit arrived, straight
    from the rule: (silver_version, event time µs, key, end of the last window missed)."""
    size = to_us(parse_duration(query["window"]["size"]))
    slide = to_us(parse_duration(query["window"].get("slide", query["window"]["size"])))
    delay = to_us(parse_duration(query["watermark_delay"]))
    watermark, out = 0, Counter()
    for version, commit in enumerate(commits):
        if commit is None:
            continue
        times = [None if t is None else int(t.timestamp() * 1_000_000) for t in commit["event_timestamp"]]
        for t, key in zip(times, commit["origin_country"]):
            if t is not None and (t // slide) * slide + size <= watermark:
                out[(version, t, key, (t // slide) * slide + size)] += 1
        seen = [t for t in times if t is not None]
        if seen:
            watermark = max(watermark, (max(seen) // 1000) * 1000 - delay)
    return out


def test_late_sink_holds_exactly_the_dropped_rows(tmp_path: Path) -> None:
    silver, gold, late = tmp_path / "silver", tmp_path / "gold", tmp_path / "late"
    silver_table, _ = _static_silver(silver, 60, 200, seed=31)
    cfg = write_config(tmp_path / "c.toml", silver, gold, _queries_with_late_sinks(late), max_commits_per_batch=7)
    p = Pipeline(_settings(cfg))
    p.start()
    p.replay(to_version=33)  # in two runs: the second resumes the late table too
    p = Pipeline(_settings(cfg))
    p.start()
    p.replay()
    commits = read_delta_commits(str(silver))
    late_counted = {r.query.name: r.stats.rows_late for r in p.runs}
    for q in QUERIES:
        table = read_gold(late / q)
        assert {"silver_version", "missed_window_end", "event_timestamp", "origin_country"} <= set(table.columns)
        got = Counter(zip(table["silver_version"].to_list(), table["event_timestamp"].dt.epoch("us").to_list(),
                          table["origin_country"].to_list(), table["missed_window_end"].dt.epoch("us").to_list()))
        expected = _dropped_rows(commits, seed_queries()[q])
        assert got == expected, f"{q}: late table differs from the rows the watermark dropped"
        assert txn_version(late, q, f"goldstream-{q}.late") <= silver_table.version
    # the engine's late counters (both runs) and the oracle's late pairs agree with the tables
    stats: dict[str, Any] = {}
    reference_gold(commits, seed_queries()["country_stats"], stats=stats)
    total_stats = read_gold(late / "country_stats").height
    assert total_stats == stats["late_pairs"] > 20  # tumbling: one window per row
    assert late_counted["country_stats"] < total_stats  # the second run counted only its own part
    assert read_gold(late / "country_anomalies").height > 0


def test_long_lived_sink_reloads_its_snapshot_and_stays_fenced(tmp_path: Path) -> None:
    """A daemon's Gold snapshot is reloaded every RELOAD_EVERY commits (an ever-updated one
    gets slower with each commit); across reloads the ownership check still holds."""
    from goldstream.sink.committer import RELOAD_EVERY
    from goldstream.sink.definition import fingerprint
    from goldstream.sink.offsets import Offsets

    silver, gold = tmp_path / "silver", tmp_path / "gold"
    _static_silver(silver, 3, 10, seed=2)
    cfg = write_config(tmp_path / "c.toml", silver, gold, [seed_queries()["country_stats"]])
    a, b = Pipeline(_settings(cfg)), Pipeline(_settings(cfg))
    a.start()
    b.start()
    sink, empty = a.runs[0].sink, a.runs[0].engine.empty_output()
    fp = fingerprint(a.runs[0].query)
    for v in range(RELOAD_EVERY + 5):
        sink.commit(empty, Offsets(v, 0, v + 1, fp), {})
    assert sink.dt is not None and sink.committer.loaded_version >= RELOAD_EVERY  # a fresh load happened
    assert txn_version(gold, "country_stats") == RELOAD_EVERY + 4
    with pytest.raises(OwnershipLost, match=f"records Silver processed through version {RELOAD_EVERY + 4}"):
        b.runs[0].sink.commit(empty, Offsets(0, 0, 1, fp), {})
    sink.commit(empty, Offsets(RELOAD_EVERY + 5, 0, RELOAD_EVERY + 6, fp), {})  # the owner goes on
