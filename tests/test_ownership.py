"""Tables goldstream owns (Gold, the late table): owned, audited, with offsets that last.

- The late table is created and tagged by goldstream; Silver, a Gold table, another
  query's late table are refused; an untagged late table of an earlier goldstream is adopted.
- Offsets cannot expire: a `delta.setTransactionRetentionDuration` is raised at open, and a
  Gold table holding the query's commits but no offsets is never processed again from scratch.
- Another writer removing or rewriting rows (overwrite, DELETE), changing the table, or
  deleting/replacing it while `run` runs, stops the query with what was found; foreign
  appends only with allow_foreign_gold; OPTIMIZE is fine.
- A commit whose outcome was unknown is looked up in the log: found, the single instance
  goes on (no "another instance").
- No hole in the audit: a foreign commit whose dataChange = false actions add or remove
  rows, one carrying the query's own `txn`, and a commit file missing since the last audit
  (a DELETE cleaned after a later checkpoint) stop the query, at start and while `run` runs.

Real Delta tables, the real CLI in subprocesses where exit codes or `run` matter.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake

from silver_cases import EXAMPLE, assert_gold_complete, cli, frames, replay
from stream_helpers import Proc, wait_caught_up, wait_until
from testsupport.config import QUERIES, seed_query_list, write_config
from testsupport.gold import read_gold, txn_version
from testsupport.process import cli_env
from testsupport.silver import append_commits

RETENTION = "delta.setTransactionRetentionDuration"


@pytest.fixture(scope="module")
def history() -> list[pl.DataFrame]:
    return frames(16)


def _state(table: Path) -> tuple[int, int]:
    return DeltaTable(str(table)).version(), read_gold(table).height


def _no_traceback(proc: Any) -> None:
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr, proc.stderr[-3000:]


# -- 1. the late table is owned like Gold ------------------------------------------------------


def _late_config(tmp_path: Path, late: Path | str, name: str = "late.toml") -> Path:
    return write_config(tmp_path / name, queries=seed_query_list(country_stats={"late_sink": str(late)}))


def test_late_table_is_created_tagged(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold, late = tmp_path / "silver", tmp_path / "gold", tmp_path / "late"
    append_commits(silver, history)
    replay(_late_config(tmp_path, late), silver, gold)
    dt = DeltaTable(str(late))
    assert read_gold(late).height > 0
    assert "goldstream-country_stats.late" in (dt.metadata().description or "")
    assert RETENTION not in dt.metadata().configuration
    assert RETENTION not in DeltaTable(str(gold / "country_stats")).metadata().configuration


@pytest.mark.parametrize("target", ["other-silver", "other-gold", "other-late"])
def test_late_sink_on_a_table_it_does_not_own_is_refused(target: str, tmp_path: Path,
                                                         history: list[pl.DataFrame]) -> None:
    """Tables of another configuration (the config-level check only sees its own paths)."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    other_silver, other_gold, other_late = tmp_path / "s2", tmp_path / "g2", tmp_path / "l2"
    append_commits(silver, history[:10])
    append_commits(other_silver, history[:10])
    other = write_config(tmp_path / "other.toml",
                         queries=seed_query_list(country_stats={"late_sink": str(other_late), "app_id": "team-b"}))
    replay(other, other_silver, other_gold)
    assert read_gold(other_late).height > 0
    table = {"other-silver": other_silver, "other-gold": other_gold / "country_anomalies",
             "other-late": other_late}[target]
    before = _state(table)
    proc = cli(_late_config(tmp_path, table), silver, gold)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"late table {table} of query 'country_stats'" in proc.stderr
    assert "point late_sink at" in proc.stderr
    _no_traceback(proc)
    assert _state(table) == before


def test_untagged_late_table_of_an_earlier_goldstream_is_adopted(tmp_path: Path,
                                                                 history: list[pl.DataFrame]) -> None:
    silver, gold, late = tmp_path / "silver", tmp_path / "gold", tmp_path / "late"
    append_commits(silver, history)
    config = _late_config(tmp_path, late)
    replay(config, silver, gold, to_version=9)
    rows = read_gold(late)
    assert rows.height > 0
    # what an earlier goldstream left: the same rows and txn, no description
    txn = DeltaTable(str(late)).transaction_version("goldstream-country_stats.late")
    old = tmp_path / "old-late"
    from deltalake import Transaction
    write_deltalake(str(old), rows.to_arrow(), commit_properties=CommitProperties(
        app_transactions=[Transaction("goldstream-country_stats.late", txn, int(time.time() * 1000))]))
    shutil.rmtree(late)
    shutil.move(old, late)
    proc = cli(config, silver, gold)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adopted" in proc.stdout + proc.stderr
    assert "goldstream-country_stats.late" in (DeltaTable(str(late)).metadata().description or "")
    whole, whole_late = tmp_path / "whole", tmp_path / "whole-late"
    replay(_late_config(tmp_path, whole_late, "whole.toml"), silver, whole)
    assert sorted(read_gold(late).rows()) == sorted(read_gold(whole_late).rows())


# -- 2. offsets that cannot expire or be mistaken ------------------------------------------------


def _short_retention(table: Path) -> None:
    DeltaTable(str(table)).alter.set_table_properties({RETENTION: "interval 1 second"})


@pytest.mark.parametrize("allow_foreign", [False, True])
def test_offsets_hidden_by_a_short_retention_are_kept(allow_foreign: bool, tmp_path: Path,
                                                      history: list[pl.DataFrame]) -> None:
    silver, gold, late = tmp_path / "silver", tmp_path / "gold", tmp_path / "late"
    append_commits(silver, history)
    foreign = {q: {"allow_foreign_gold": allow_foreign} for q in QUERIES}
    foreign["country_stats"]["late_sink"] = str(late)
    config = write_config(tmp_path / "c.toml", queries=seed_query_list(**foreign))
    replay(config, silver, gold, to_version=9)
    for table in (gold / "country_stats", gold / "country_anomalies", late):
        _short_retention(table)
    time.sleep(1.5)  # a stop longer than the retention: delta-rs hides the offsets now
    assert txn_version(gold, "country_stats") is None
    proc = cli(config, silver, gold)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "so that they never expire" in proc.stdout + proc.stderr
    _no_traceback(proc)
    assert_gold_complete(gold, silver)  # no window twice, none missing
    for table in (gold / "country_stats", gold / "country_anomalies", late):
        assert DeltaTable(str(table)).metadata().configuration[RETENTION] == "interval 36500 days"
    whole, whole_late = tmp_path / "whole", tmp_path / "whole-late"
    replay(_late_config(tmp_path, whole_late, "whole.toml"), silver, whole)
    assert sorted(read_gold(late).rows()) == sorted(read_gold(whole_late).rows())


@pytest.mark.parametrize("allow_foreign", [False, True])
def test_commits_of_the_query_without_offsets_are_never_reprocessed(allow_foreign: bool, tmp_path: Path,
                                                                   history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history)
    config = write_config(tmp_path / "c.toml",
                          queries=seed_query_list(**{q: {"allow_foreign_gold": allow_foreign} for q in QUERIES}))
    replay(config, silver, gold, to_version=9)
    table = gold / "country_stats"
    _short_retention(table)
    time.sleep(1.5)
    DeltaTable(str(table)).create_checkpoint()  # the checkpoint drops the expired offsets for good
    before = _state(table)
    proc = cli(config, silver, gold)
    assert proc.returncode == 2, proc.stderr[-3000:]
    _no_traceback(proc)
    assert f"Gold table {table} (version" in proc.stderr
    assert "commit(s) of query 'country_stats' (application id 'goldstream-country_stats'" in proc.stderr
    assert "but no offsets for it" in proc.stderr and "interval 1 second" in proc.stderr
    assert "even with allow_foreign_gold" in proc.stderr and "new gold_path" in proc.stderr
    assert "not by query 'country_stats' (application id 'goldstream-country_stats')" not in proc.stderr
    assert DeltaTable(str(table)).version() == before[0] + 1  # only the retention raised
    assert read_gold(table).height == before[1]


# -- 3. Gold changed by someone else -------------------------------------------------------------


def _tamper(op: str, table: Path, history: list[pl.DataFrame]) -> None:
    dt = DeltaTable(str(table))
    if op == "overwrite-empty":
        write_deltalake(str(table), read_gold(table).clear().to_arrow(), mode="overwrite")
    elif op == "delete":
        dt.delete("flight_count > 1")
    elif op == "append":
        write_deltalake(str(table), read_gold(table).head(3).to_arrow(), mode="append")
    elif op == "properties":
        dt.alter.set_table_properties({"delta.appendOnly": "false"})
    elif op == "optimize":
        write_deltalake(str(table), read_gold(table).clear().to_arrow(), mode="append",
                        commit_properties=CommitProperties(custom_metadata={"goldstream.appId": "goldstream-country_stats"}))
        dt = DeltaTable(str(table))
        dt.optimize.compact()


@pytest.mark.parametrize("op,found", [("overwrite-empty", "(WRITE mode=Overwrite): it removed"),
                                      ("delete", "(DELETE): it removed"),
                                      ("append", "has rows appended by another writer"),
                                      ("properties", "changed the table's metadata")])
def test_gold_changed_by_another_writer_stops_the_query(op: str, found: str, tmp_path: Path,
                                                        history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history)
    replay(EXAMPLE, silver, gold, to_version=9)
    table = gold / "country_stats"
    _tamper(op, table, history)
    before = _state(table)
    proc = cli(EXAMPLE, silver, gold)
    assert proc.returncode == 2, proc.stderr[-3000:]
    _no_traceback(proc)
    assert f"Gold table {table} " in proc.stderr and f"version {before[0]} " in proc.stderr and found in proc.stderr
    assert "Delta RESTORE" in proc.stderr
    assert _state(table) == before


def test_optimize_and_allowed_foreign_appends_are_fine(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history)
    replay(EXAMPLE, silver, gold, to_version=9)
    table = gold / "country_stats"
    dt = DeltaTable(str(table))
    dt.optimize.compact()
    proc = cli(EXAMPLE, silver, gold)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_gold_complete(gold, silver)

    foreign = read_gold(table).head(2)
    write_deltalake(str(table), foreign.to_arrow(), mode="append")
    append_commits(silver, history[:2])
    allowed = write_config(tmp_path / "allowed.toml", queries=seed_query_list(country_stats={"allow_foreign_gold": True}))
    proc = cli(allowed, silver, gold)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _run(tmp_path: Path, silver: Path, gold: Path) -> Proc:
    return Proc(["run", "--config", str(EXAMPLE), "--silver", str(silver), "--gold-root", str(gold)],
                tmp_path / "logs", "run", env=cli_env(GOLDSTREAM_SOURCE__POLL_INTERVAL="0.05s",
                                                      GOLDSTREAM_SERVER__HTTP_PORT="0"))


@pytest.mark.parametrize("op", ["deleted", "replaced", "overwrite-empty"])
def test_gold_deleted_or_rewritten_while_run_runs_stops_it(op: str, tmp_path: Path,
                                                           history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:8])
    proc = _run(tmp_path, silver, gold)
    try:
        wait_caught_up(proc, gold, list(QUERIES), 7)
        wait_until(lambda: (txn_version(gold, "country_stats") or -1) >= 0, "a Gold commit", proc)
        table = gold / "country_stats"
        if op == "overwrite-empty":
            _tamper(op, table, history)
        else:
            schema = read_gold(table).clear()
            shutil.rmtree(table)
            if op == "replaced":
                for _ in range(40):
                    write_deltalake(str(table), schema.to_arrow(), mode="append")
        append_commits(silver, history[8:])
        rc = proc.wait()
    finally:
        proc.signal(signal.SIGKILL)
    err = proc.stderr()
    assert rc == 2, err[-3000:]
    assert "Traceback" not in err and "panicked" not in err, err[-3000:]
    assert f"Gold table {table} " in err
    assert {"deleted": "was deleted while query 'country_stats' was writing it",
            "replaced": "was replaced by another table while query 'country_stats' was writing it",
            "overwrite-empty": "(WRITE mode=Overwrite): it removed"}[op] in err


# -- 4. uncertain outcomes resolved from the log --------------------------------------------------


def test_a_commit_that_landed_although_reported_failed_is_found_however_far_back(
        tmp_path: Path, history: list[pl.DataFrame], monkeypatch: pytest.MonkeyPatch) -> None:
    """The PUT landed, the client saw a failure (its retried PUT answered "already exists"),
    and meanwhile another writer sharing the table on purpose appended 15 commits."""
    from goldstream.sink.committer import Committer

    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history)
    config = write_config(tmp_path / "c.toml", queries=seed_query_list(country_stats={"allow_foreign_gold": True}))
    real = Committer._append
    landed_late = []

    def append_then_fail(self: Committer, data: Any, props: CommitProperties) -> None:
        real(self, data, props)  # lands
        if landed_late or "country_stats" not in self.uri:
            return
        landed_late.append(self.uri)
        for _ in range(15):
            write_deltalake(self.uri, data.slice(0, 0), mode="append")
        real(self, data, props)  # the retry against the same snapshot: a real conflict

    replay(config, silver, gold, to_version=9)
    monkeypatch.setattr(Committer, "_append", append_then_fail)
    replay(config, silver, gold)
    assert landed_late
    assert_gold_complete(gold, silver)


def test_a_commit_that_lands_after_the_rebuild_is_this_instance_s_own(
        tmp_path: Path, history: list[pl.DataFrame], monkeypatch: pytest.MonkeyPatch) -> None:
    """The client gave up on a PUT (timeout), the query rebuilt from Gold, and only then did
    the commit land: it is this instance's, the query rebuilds again and ends complete."""
    from goldstream.sink.committer import Committer

    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history)
    real_append, real_audit = Committer._append, Committer.start_audit
    pending: list[tuple[str, Any, CommitProperties]] = []

    def time_out(self: Committer, data: Any, props: CommitProperties) -> None:
        if not pending and "country_stats" in self.uri:
            pending.append((self.uri, data, props))
            raise OSError("error sending request: operation timed out")
        real_append(self, data, props)

    def land_after_open(self: Committer, resume: bool) -> None:
        real_audit(self, resume)
        if pending and pending[0][0] == self.uri and len(pending) == 1:
            uri, data, props = pending[0]
            write_deltalake(uri, data, mode="append", commit_properties=props)
            pending.append(("landed", None, props))

    replay(EXAMPLE, silver, gold, to_version=9)
    monkeypatch.setattr(Committer, "_append", time_out)
    monkeypatch.setattr(Committer, "start_audit", land_after_open)
    p = replay(EXAMPLE, silver, gold)
    assert len(pending) == 2, "the uncertain commit did not land"
    assert p.runs[0].processed == len(history) - 1
    assert_gold_complete(gold, silver)


# -- 5. no hole in the audit: quiet row changes, forged offsets, gaps in the log ----------------


def _actions(table: Path, kind: str) -> list[dict[str, Any]]:
    """The `add` actions of the latest snapshot, as a foreign writer would copy them."""
    import json

    actions = pl.from_arrow(DeltaTable(str(table)).get_add_actions(flatten=True))
    adds = actions.struct.unnest().to_dicts()  # type: ignore[union-attr]
    biggest = max(adds, key=lambda a: a["num_records"] or 0)
    stats = json.dumps({"numRecords": biggest["num_records"]})
    action = {"path": biggest["path"], "partitionValues": {}, "size": biggest["size_bytes"],
              "modificationTime": int(time.time() * 1000), "dataChange": False}
    if kind == "add":  # the same file added again: its rows count twice
        return [{"add": {**action, "stats": stats}}]
    return [{"remove": {**{k: v for k, v in action.items() if k != "modificationTime"},
                        "deletionTimestamp": int(time.time() * 1000), "extendedFileMetadata": True}}]


def _quiet_tamper(op: str, table: Path) -> int:
    """A foreign commit the audit must catch; returns the version it must name."""
    from deltalake import Transaction

    from delta_by_hand import write_commit

    if op == "quiet-add":
        return write_commit(table, _actions(table, "add"), "OPTIMIZE")
    if op == "quiet-remove":
        return write_commit(table, _actions(table, "remove"), "OPTIMIZE")
    if op == "own-txn-append":
        txn = DeltaTable(str(table)).transaction_version("goldstream-country_stats")
        forged = CommitProperties(
            app_transactions=[Transaction("goldstream-country_stats", int(txn), int(time.time() * 1000))])
        write_deltalake(str(table), read_gold(table).head(3).to_arrow(), mode="append", commit_properties=forged)
        return DeltaTable(str(table)).version()
    assert op == "cleaned-delete"  # a DELETE, then a checkpoint after it and its commit file cleaned
    dt = DeltaTable(str(table))
    dt.delete("flight_count > 1")
    deleted = dt.version()
    write_deltalake(str(table), read_gold(table).clear().to_arrow(), mode="append")  # a later commit, no rows
    DeltaTable(str(table)).create_checkpoint()
    (table / "_delta_log" / f"{deleted:020d}.json").unlink()
    return deleted


@pytest.mark.parametrize("op,found", [("quiet-add", "do not conserve rows"),
                                      ("quiet-remove", "do not conserve rows"),
                                      ("own-txn-append",
                                       "carries the offsets (txn) of application goldstream-country_stats"),
                                      ("cleaned-delete", "is missing from its log")])
def test_quiet_or_hidden_changes_by_another_writer_stop_the_query(op: str, found: str, tmp_path: Path,
                                                                  history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history)
    replay(EXAMPLE, silver, gold, to_version=9)
    table = gold / "country_stats"
    version = _quiet_tamper(op, table)
    before = _state(table)
    proc = cli(EXAMPLE, silver, gold)
    assert proc.returncode == 2, proc.stderr[-3000:]
    _no_traceback(proc)
    assert f"Gold table {table} " in proc.stderr and f"version {version} " in proc.stderr, proc.stderr[-3000:]
    assert found in proc.stderr, proc.stderr[-3000:]
    assert _state(table) == before


@pytest.mark.parametrize("op,found", [("quiet-remove", "do not conserve rows"),
                                      ("own-txn-append", "carries the offsets (txn)"),
                                      ("cleaned-delete", "is missing from its log")])
def test_a_hidden_change_while_run_runs_stops_it_at_the_next_commit(op: str, found: str, tmp_path: Path,
                                                                    history: list[pl.DataFrame]) -> None:
    """The incremental audit (from the last version audited) catches them too. `run` is
    paused (SIGSTOP) while the table is changed, so that it meets the change whole."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:8])
    proc = _run(tmp_path, silver, gold)
    try:
        wait_caught_up(proc, gold, list(QUERIES), 7)
        wait_until(lambda: (txn_version(gold, "country_stats") or -1) >= 0, "a Gold commit", proc)
        table = gold / "country_stats"
        proc.signal(signal.SIGSTOP)
        version = _quiet_tamper(op, table)
        proc.signal(signal.SIGCONT)
        append_commits(silver, history[8:])
        rc = proc.wait()
    finally:
        proc.signal(signal.SIGKILL)
    err = proc.stderr()
    assert rc == 2, err[-3000:]
    assert f"version {version} " in err and found in err, err[-3000:]
