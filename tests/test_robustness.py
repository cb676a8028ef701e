"""Silver robustness (issue 7): every bad input gets a clear error, nothing is lost.

One test (or a parametrized family) per numbered case of the issue. Each builds the
situation with real Delta operations (deltalake's delete/update/merge/overwrite,
optimize, vacuum, checkpoints and log cleanup, files damaged on disk), runs the real
CLI in a subprocess where the exit code matters, and checks the message (what, where,
what to do) and Gold: nothing committed for the failing batch, and after the fix a
restart completes with Gold equal to a clean replay of the history (the oracle).
Parametrized variants of one case run in-process (same Pipeline the CLI runs) to keep
the suite fast; the exit code is then the error's `exit_code`.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.schema import Field

from gold_compare import assert_gold_equal
from goldstream.demo.synth import empty_silver_frame
from reference import read_delta_commits, reference_gold
from silver_cases import (
    EXAMPLE,
    assert_gold_complete,
    assert_gold_is_prefix,
    cli,
    data_file_of,
    expected_gold,
    frames,
    pipeline,
    query_dicts,
    replay,
    replay_error,
    summary,
)
from testsupport import ROOT
from testsupport.config import QUERIES, seed_query_list, write_config
from testsupport.gold import read_gold, txn_version
from testsupport.process import cli_env, end_offset, goldstream_argv, progress_record
from testsupport.silver import append_commits


@pytest.fixture(scope="module")
def history() -> list[pl.DataFrame]:
    return frames(16)


def _gold_state(gold: Path) -> dict[str, tuple[int, int]]:
    """(Delta version, row count) of each Gold table: to show a failed run changed nothing."""
    return {q: (DeltaTable(str(gold / q)).version(), read_gold(gold / q).height) for q in QUERIES
            if (gold / q / "_delta_log").exists()}


# -- 1. Silver table missing ----------------------------------------------------------------


def test_missing_silver_replay_exits_2_and_touches_nothing(tmp_path: Path) -> None:
    silver, gold = tmp_path / "no-such-silver", tmp_path / "gold"
    proc = cli(EXAMPLE, silver, gold)
    assert proc.returncode == 2
    assert f"Silver table {silver} does not exist" in proc.stderr
    assert "[source] path" in proc.stderr and "Traceback" not in proc.stderr
    assert not gold.exists() and not silver.exists()


def test_missing_silver_run_waits_then_times_out(tmp_path: Path) -> None:
    silver, gold = tmp_path / "no-such-silver", tmp_path / "gold"
    proc = cli(EXAMPLE, silver, gold, "--http-port", "0", command="run",
               env={"GOLDSTREAM_SOURCE__WAIT_FOR_TABLE_TIMEOUT": "1s", "GOLDSTREAM_SOURCE__POLL_INTERVAL": "0.2s"})
    assert proc.returncode == 2, proc.stderr
    assert "does not exist yet" in proc.stdout and "waiting for it" in proc.stdout  # the periodic log line
    assert f"Silver table {silver} did not appear within [source] wait_for_table_timeout = 1s" in proc.stderr
    assert not gold.exists()


class _Lines:
    """Collect a subprocess's stdout lines in a thread (the daemon never ends by itself)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._t = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        self._t.start()

    def wait_for(self, pred, what: str, proc: subprocess.Popen[str], limit_s: float = 120) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + limit_s  # a hang guard, not a timing assertion
        while not any(pred(line) for line in list(self.lines)):
            assert proc.poll() is None, f"goldstream exited {proc.returncode} before {what}"
            assert time.monotonic() < deadline, f"no {what} in the output:\n" + "".join(self.lines[-20:])
            time.sleep(0.1)


def _progress_end(line: str) -> tuple[str, int] | None:
    p = progress_record(line)
    return None if p is None else (p["name"], end_offset(p))


def test_missing_silver_run_waits_until_it_appears(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    env = cli_env(GOLDSTREAM_SOURCE__POLL_INTERVAL="0.2s")
    proc = subprocess.Popen(goldstream_argv("run", "--config", str(EXAMPLE), "--silver", str(silver),
                                            "--gold-root", str(gold), "--http-port", "0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        out = _Lines(proc)
        out.wait_for(lambda line: "does not exist yet" in line, "waiting log line", proc)
        assert not gold.exists()  # nothing created while waiting
        append_commits(silver, history)
        last = len(history) - 1
        for q in QUERIES:
            out.wait_for(lambda line, q=q: _progress_end(line) == (q, last), f"progress of {q} at {last}", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_gold_complete(gold, silver)


# -- 2. Schema -----------------------------------------------------------------------------

_BAD_SCHEMAS = {
    "altitude_as_string": (lambda f: f.with_columns(pl.col("altitude_meters").cast(pl.String)),
                           ["column 'altitude_meters'", "has type string; expected", "double",
                            "aggregate 'avg_altitude' of query 'country_stats'", "cast it in Silver"]),
    "event_time_as_string": (lambda f: f.with_columns(pl.col("event_timestamp").dt.to_string()),
                             ["column 'event_timestamp'", "has type string; expected timestamp",
                              "event time of query 'country_stats'"]),
    "event_time_ntz": (lambda f: f.with_columns(pl.col("event_timestamp").dt.replace_time_zone(None)),
                       ["column 'event_timestamp'", "has type timestamp_ntz; expected timestamp",
                        "UTC `timestamp`"]),
    "velocity_missing": (lambda f: f.drop("velocity_kmh"),
                         ["column 'velocity_kmh'", "is missing; Silver has: icao24"]),
}


@pytest.mark.parametrize("case", sorted(_BAD_SCHEMAS))
def test_incompatible_schema_is_refused_at_start(case: str, tmp_path: Path, history: list[pl.DataFrame]) -> None:
    change, expected = _BAD_SCHEMAS[case]
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, [change(f) for f in history[:3]])
    if case == "altitude_as_string":  # the real CLI once: exit code 2, message on stderr
        proc = cli(EXAMPLE, silver, gold)
        assert proc.returncode == 2
        message = proc.stderr
    else:
        err = replay_error(EXAMPLE, silver, gold)
        assert err.exit_code == 2
        message = str(err)
    assert f"Silver schema at {silver} version 0 (the schema is unchanged since, up to version 2) does not fit" in message
    for part in expected:
        assert part in message
    assert not gold.exists()  # refused before any Gold table is created


def test_incompatible_schema_change_mid_history_names_the_version(tmp_path: Path,
                                                                  history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:6])  # versions 0..5
    as_string = history[6].with_columns(pl.col("altitude_meters").cast(pl.String))
    write_deltalake(str(silver), as_string.to_arrow(), mode="overwrite", schema_mode="overwrite")  # version 6
    env = {"GOLDSTREAM_SOURCE__MAX_COMMITS_PER_BATCH": "2"}
    proc = cli(EXAMPLE, silver, gold, env=env)  # the current schema is bad: refused at start
    assert proc.returncode == 2
    assert f"Silver schema at {silver} version 6 does not fit the queries" in proc.stderr
    assert "column 'altitude_meters'" in proc.stderr and "has type string" in proc.stderr
    assert not gold.exists()
    # Silver is fixed by a later overwrite: the stream processes up to the bad version, then stops there
    write_deltalake(str(silver), history[7].to_arrow(), mode="overwrite", schema_mode="overwrite")  # 7
    append_commits(silver, history[8:10])
    err = replay_error(write_config(tmp_path / "c.toml", max_commits_per_batch=2), silver, gold)
    assert err.exit_code == 2
    assert f"Silver schema at {silver} version 6 does not fit the queries" in str(err)
    assert "nothing from this version on was written to Gold" in str(err)
    assert_gold_is_prefix(gold, silver, below=6, skip_change_commits=True)
    assert any(txn_version(gold, q) is not None for q in QUERIES)  # versions before 6 were committed


def test_added_columns_are_fine(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:6])
    wider = [f.with_columns(pl.lit("7700", pl.String).alias("squawk")) for f in history[6:10]]
    for f in wider:  # a new column arrives with the data (schema merge)...
        write_deltalake(str(silver), f.to_arrow(), mode="append", schema_mode="merge")
    DeltaTable(str(silver)).alter.add_columns([Field("sensor_count", "long")])  # ...and by ALTER TABLE
    append_commits(silver, [f.with_columns(pl.lit("7700", pl.String).alias("squawk"),
                                          pl.lit(3, pl.Int64).alias("sensor_count")) for f in history[10:]])
    p = replay(EXAMPLE, silver, gold)
    assert p.runs[0].stats.rows_in == sum(f.height for f in history)
    assert_gold_complete(gold, silver)


def test_needed_column_added_later_reads_as_null_before(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    """Additive evolution of a column a query uses: older files lack it, so it is null there
    (as Spark reads old files with the current schema), not an error."""
    late_col, explicit = tmp_path / "late_col", tmp_path / "explicit"
    append_commits(late_col, [f.drop("velocity_kmh") for f in history[:5]])
    for f in history[5:]:
        write_deltalake(str(late_col), f.to_arrow(), mode="append", schema_mode="merge")
    append_commits(explicit, [f.with_columns(pl.lit(None, pl.Float64).alias("velocity_kmh")) if i < 5 else f
                             for i, f in enumerate(history)])
    for table in (late_col, explicit):
        replay(EXAMPLE, table, tmp_path / f"gold_{table.name}")
    for q in QUERIES:
        assert_gold_equal(read_gold(tmp_path / "gold_late_col" / q), read_gold(tmp_path / "gold_explicit" / q))


# -- 3. Values -----------------------------------------------------------------------------


def test_null_event_time_is_dropped_and_counted(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    nulled = [f.with_columns(pl.when(pl.int_range(pl.len()) % 17 == 3).then(None)
                             .otherwise(pl.col("event_timestamp")).alias("event_timestamp")) for f in history]
    append_commits(silver, nulled)
    n_null = sum(f["event_timestamp"].null_count() for f in nulled)
    assert n_null > 50
    s = summary(cli(EXAMPLE, silver, gold, "--json"))
    for q in QUERIES:
        assert s[q]["rows_null_event_time"] == n_null
        assert s[q]["rows_in"] == sum(f.height for f in nulled)
    assert_gold_complete(gold, silver)


def _rows(country: str, ts: datetime, altitudes: list[float], velocities: list[float]) -> pl.DataFrame:
    base = empty_silver_frame()
    n = len(altitudes)
    data = {c: pl.Series(c, [None] * n, dtype=base.schema[c]) for c in base.columns}
    data.update(
        origin_country=pl.Series([country] * n), event_timestamp=pl.Series([ts + timedelta(seconds=i) for i in range(n)],
                                                                           dtype=pl.Datetime("us", "UTC")),
        altitude_meters=pl.Series(altitudes, dtype=pl.Float64), velocity_kmh=pl.Series(velocities, dtype=pl.Float64),
        on_ground=pl.Series([False] * n),
    )
    return pl.DataFrame(data).select(base.columns)


def test_infinities_follow_spark(tmp_path: Path) -> None:
    inf = math.inf
    t0 = datetime(2024, 6, 1, 12, 0, 10, tzinfo=timezone.utc)
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, [
        pl.concat([_rows("Infland", t0, [inf, 100.0, 200.0], [500.0, -inf, 900.0]),
                   _rows("Twoinf", t0, [inf, -inf], [inf, 10.0]),
                   _rows("Plain", t0, [1000.0, 2000.0], [100.0, 200.0])]),
        _rows("Plain", t0 + timedelta(minutes=30), [1.0], [1.0]),  # closes every window above
    ])
    proc = cli(EXAMPLE, silver, gold)
    assert proc.returncode == 0, proc.stderr
    assert_gold_complete(gold, silver)  # the oracle encodes Spark's IEEE rules
    stats = read_gold(gold / "country_stats").filter(pl.col("window_start") == datetime(2024, 6, 1, 12, 0,
                                                                                      tzinfo=timezone.utc))
    row = {r["origin_country"]: r for r in stats.to_dicts()}
    assert row["Infland"]["avg_altitude"] == inf and row["Infland"]["avg_velocity"] == -inf
    assert math.isnan(row["Twoinf"]["avg_altitude"])  # inf + -inf
    anomalies = read_gold(gold / "country_anomalies").filter(pl.col("window_end") == datetime(
        2024, 6, 1, 12, 1, tzinfo=timezone.utc))
    a = {r["origin_country"]: r for r in anomalies.to_dicts()}
    assert a["Infland"]["max_altitude"] == inf and a["Infland"]["min_altitude"] == 100.0
    assert math.isnan(a["Infland"]["stddev_altitude"]) and math.isnan(a["Infland"]["stddev_velocity"])
    assert a["Infland"]["altitude_anomalies"] == 1 and a["Infland"]["velocity_anomalies"] == 1  # +inf, -inf
    assert a["Twoinf"]["altitude_anomalies"] == 2 and a["Twoinf"]["velocity_anomalies"] == 1
    assert a["Twoinf"]["min_altitude"] == -inf and a["Twoinf"]["max_velocity"] == inf
    assert a["Plain"]["altitude_anomalies"] == 0 and a["Plain"]["stddev_altitude"] == pytest.approx(707.1067811865476)


def test_max_event_time_skew_sends_far_future_rows_to_the_late_sink(tmp_path: Path,
                                                                   history: list[pl.DataFrame]) -> None:
    future_row = history[5].head(1).with_columns(
        pl.lit(datetime(2099, 1, 1, tzinfo=timezone.utc)).cast(pl.Datetime("us", "UTC")).alias("event_timestamp"))
    poisoned = [pl.concat([f, future_row]) if i == 5 else f for i, f in enumerate(history)]
    silver, late = tmp_path / "silver", tmp_path / "late"
    append_commits(silver, poisoned)
    commits = read_delta_commits(str(silver))

    # Spark's behaviour (off by default): the watermark jumps to 2099 and later rows are all late
    plain = tmp_path / "gold_plain"
    p = replay(EXAMPLE, silver, plain)
    assert p.runs[0].stats.rows_late > 500
    assert_gold_complete(plain, silver, commits=commits)

    # [source] bound for every query; country_anomalies overrides it with a bound too large to matter
    config = write_config(tmp_path / "skew.toml",
                          queries=seed_query_list(country_stats={"late_sink": str(late)},
                                                  country_anomalies={"max_event_time_skew": "36500d"}),
                          max_event_time_skew="1h")
    gold = tmp_path / "gold"
    first = replay(config, silver, gold, to_version=8).summary()  # a restart in between
    first = {r["query"]: r for r in first}
    rest = summary(cli(config, silver, gold, "--json"))
    without = [f.filter(pl.col("event_timestamp").dt.year() < 2099) if f is not None else None for f in commits]
    oracle: dict[str, int] = {}
    reference_gold(without, query_dicts()["country_stats"], stats=oracle)  # tumbling: late pairs = late rows
    late_rows = first["country_stats"]["rows_late"] + rest["country_stats"]["rows_late"]
    assert late_rows == oracle["late_pairs"] + 1  # the synthetic late rows, plus the 2099 row
    assert_gold_complete(gold, silver, commits=without, queries=("country_stats",))
    assert_gold_complete(gold, silver, commits=commits, queries=("country_anomalies",))
    assert read_gold(late).height == late_rows
    refused = read_gold(late).filter(pl.col("missed_window_end").is_null())
    assert refused.height == 1
    assert refused["event_timestamp"][0].year == 2099 and refused["silver_version"][0] == 5
    assert refused["missed_window_end"][0] is None  # refused by the skew bound, not by a window


# -- 4. Commits that remove or rewrite data --------------------------------------------------


def _change(op: str, table: Path, f: pl.DataFrame) -> None:
    dt = DeltaTable(str(table))
    if op == "delete":
        dt.delete("altitude_meters > 9000")
    elif op == "update":
        dt.update(updates={"altitude_meters": "altitude_meters + 1"}, predicate="on_ground = true")
    elif op == "merge":
        changed = f.head(20).with_columns(pl.col("velocity_kmh") * 2)
        (dt.merge(changed.to_arrow(), "t.icao24 = s.icao24 AND t.event_timestamp = s.event_timestamp",
                  source_alias="s", target_alias="t").when_matched_update_all().when_not_matched_insert_all().execute())
    elif op == "overwrite":
        write_deltalake(str(table), f.to_arrow(), mode="overwrite")


_CHANGE_LABEL = {"delete": "DELETE", "update": "UPDATE", "merge": "MERGE", "overwrite": "WRITE mode=Overwrite"}


@pytest.mark.parametrize("op", ["delete", "update", "merge", "overwrite"])
def test_change_commit_stops_with_its_version_unless_skipped(op: str, tmp_path: Path,
                                                             history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:10])  # versions 0..9
    _change(op, silver, history[9])  # version 10
    append_commits(silver, history[10:])
    log = (silver / "_delta_log" / f"{10:020d}.json").read_text()
    assert '"remove"' in log  # really a rewrite, not an append
    env = {"GOLDSTREAM_SOURCE__MAX_COMMITS_PER_BATCH": "4"}
    proc = cli(EXAMPLE, silver, gold, env=env)
    assert proc.returncode == 2
    assert f"Silver version 10 of {silver} is not an append ({_CHANGE_LABEL[op]}: " in proc.stderr
    assert "skip_change_commits = true" in proc.stderr
    assert_gold_is_prefix(gold, silver, below=10, skip_change_commits=True)
    # opt in: the whole commit is skipped and counted, the rest is processed
    p = replay(EXAMPLE, silver, gold, max_commits_per_batch=4, skip_change_commits=True)
    assert [r.stats.skipped_change_commits for r in p.runs] == [1, 1]
    assert_gold_complete(gold, silver, skip_change_commits=True)


def test_insert_only_merge_is_an_append(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:8])
    new = history[8].with_columns(pl.lit("zz0000").alias("icao24"))
    (DeltaTable(str(silver)).merge(new.to_arrow(), "t.icao24 = s.icao24", source_alias="s", target_alias="t")
     .when_not_matched_insert_all().execute())
    append_commits(silver, history[9:])
    p = replay(EXAMPLE, silver, gold)
    assert p.runs[0].stats.skipped_change_commits == 0
    assert_gold_complete(gold, silver)


# -- 5. OPTIMIZE -----------------------------------------------------------------------------


def test_optimize_while_the_query_is_mid_stream_adds_no_rows(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:10])
    replay(EXAMPLE, silver, gold, to_version=6)
    DeltaTable(str(silver)).optimize.compact()  # rewrites files the resumed query still re-reads
    append_commits(silver, history[10:])
    DeltaTable(str(silver)).optimize.compact()
    p = replay(EXAMPLE, silver, gold)
    assert p.runs[0].stats.rows_in == sum(f.height for f in history[7:])
    assert_gold_complete(gold, silver)  # the oracle ignores dataChange=false commits


# -- 6. Log retention and VACUUM --------------------------------------------------------------


def test_log_retention_removed_a_needed_commit(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:8], configuration={"delta.logRetentionDuration": "interval 0 seconds"})
    replay(EXAMPLE, silver, gold, to_version=5)
    before = _gold_state(gold)
    append_commits(silver, history[8:12])  # versions 8..11
    dt = DeltaTable(str(silver))
    dt.create_checkpoint()
    dt.cleanup_metadata()  # removes the JSON commits before the checkpoint at 11
    assert not (silver / "_delta_log" / f"{0:020d}.json").exists()
    proc = cli(EXAMPLE, silver, gold)
    assert proc.returncode == 2
    assert "is gone (log retention removed it: the log now starts after a checkpoint at version 11)" in proc.stderr
    assert "starting_version" in proc.stderr and "new query name or gold_path" in proc.stderr
    assert "never skips Silver data silently" in proc.stderr
    assert _gold_state(gold) == before  # nothing committed
    # the ways out: a version before the checkpoint is refused; a new query from 'earliest'
    # starts like Spark from the table's snapshot at the checkpoint (one commit), then tails
    with pytest.raises(Exception) as info:
        pipeline(EXAMPLE, silver, tmp_path / "fresh", from_version=3).start()
    assert info.value.exit_code == 2 and "versions 3..10 were removed by log retention" in str(info.value)
    p = replay(EXAMPLE, silver, tmp_path / "fresh2")
    assert [r.processed for r in p.runs] == [11, 11]
    assert p.runs[0].stats.rows_in == sum(f.height for f in history[:12])
    for q in QUERIES:
        assert_gold_equal(read_gold(tmp_path / "fresh2" / q), expected_gold([pl.concat(history[:12])], q))


def test_commit_json_removed_by_hand_is_never_skipped(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:12])
    p = pipeline(EXAMPLE, silver, gold)
    p.start()  # the table loads; then version 7 disappears while the query runs
    (silver / "_delta_log" / f"{7:020d}.json").unlink()
    with pytest.raises(Exception) as info:
        p.replay()
    assert info.value.exit_code == 2  # type: ignore[attr-defined]
    assert f"Silver commit 7 of {silver}" in str(info.value) and "the log holds versions 8..11 after it" in str(
        info.value)
    proc = cli(EXAMPLE, silver, gold)  # on a restart the table itself cannot be loaded
    assert proc.returncode == 2 and "commit 7 (_delta_log/00000000000000000007.json) is missing" in proc.stderr


def test_vacuum_removed_a_needed_data_file(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:10])
    replay(EXAMPLE, silver, gold, to_version=7)
    before = _gold_state(gold)
    dt = DeltaTable(str(silver))
    dt.optimize.compact()
    removed = dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert removed  # the pre-OPTIMIZE files that the resumed query re-reads are gone
    proc = cli(EXAMPLE, silver, gold)
    assert proc.returncode == 2
    assert "is missing (VACUUM, or a cleanup by hand, removed it while this query still needs it)" in proc.stderr
    assert f"data file {silver}/part-" in proc.stderr and "of Silver version " in proc.stderr
    assert "starting_version" in proc.stderr
    assert _gold_state(gold) == before


# -- 7. Corrupt or truncated Parquet ----------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_parquet_names_file_and_version_and_restart_completes(damage: str, tmp_path: Path,
                                                                     history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:14])
    commits = read_delta_commits(str(silver))  # the oracle's copy, read while every file is intact
    victim = data_file_of(silver, 9)
    backup = tmp_path / "backup.parquet"
    shutil.copy(victim, backup)
    data = backup.read_bytes()
    victim.write_bytes(b"\x00" * len(data) if damage == "garbage" else data[: len(data) // 2])
    env = {"GOLDSTREAM_SOURCE__MAX_COMMITS_PER_BATCH": "4"}
    proc = cli(EXAMPLE, silver, gold, env=env)
    assert proc.returncode == 2
    assert f"cannot read data file {victim} of Silver version 9: it is corrupt or truncated" in proc.stderr
    assert "Restore the file and restart" in proc.stderr
    assert_gold_is_prefix(gold, silver, below=8, commits=commits)  # the batch 8..11 committed nothing
    shutil.copy(backup, victim)
    replay(EXAMPLE, silver, gold, max_commits_per_batch=4)  # the restart
    assert_gold_complete(gold, silver, commits=commits)


# -- 8. Deletion vectors and column mapping ---------------------------------------------------


def test_column_mapping_is_read_through_physical_names(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    mapped, plain = tmp_path / "mapped", tmp_path / "plain"
    append_commits(mapped, history, configuration={"delta.columnMapping.mode": "name"}, partition_by=["origin_country"])
    some_file = next(mapped.rglob("*.parquet"))
    assert "altitude_meters" not in pl.read_parquet_schema(some_file)  # physical names really differ
    append_commits(plain, history)
    proc = cli(EXAMPLE, mapped, tmp_path / "gold_mapped")
    assert proc.returncode == 0, proc.stderr
    replay(EXAMPLE, plain, tmp_path / "gold_plain")
    for q in QUERIES:
        assert_gold_equal(read_gold(tmp_path / "gold_mapped" / q), read_gold(tmp_path / "gold_plain" / q))


def test_deletion_vectors_table_reads_appends_and_refuses_deletes(tmp_path: Path,
                                                                  history: list[pl.DataFrame]) -> None:
    """delta-rs 1.6 enables the deletionVectors feature but never writes a vector (its DELETE
    rewrites files), so the Spark-style DV commit (remove + re-add with a vector) is written
    by hand on a table deltalake built."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:10], configuration={"delta.enableDeletionVectors": "true"})
    assert "deletionVectors" in (DeltaTable(str(silver)).protocol().reader_features or [])
    add = next(a["add"] for v in range(3, 10) for line in (silver / "_delta_log" / f"{v:020d}.json").read_text()
               .splitlines() if "add" in (a := json.loads(line)))
    dv = {"storageType": "u", "pathOrInlineDv": "ab^-aqEH.-t@S}K{vb[*k^", "offset": 1, "sizeInBytes": 36,
          "cardinality": 2}
    actions = [{"commitInfo": {"timestamp": int(time.time() * 1000), "operation": "DELETE",
                               "operationParameters": {"predicate": "altitude_meters > 9000"}}},
               {"remove": {"path": add["path"], "deletionTimestamp": 0, "dataChange": True, "size": add["size"]}},
               {"add": {**add, "deletionVector": dv}}]
    (silver / "_delta_log" / f"{10:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")
    append_commits(silver, history[10:])
    err = replay_error(EXAMPLE, silver, gold)
    assert err.exit_code == 2
    assert (f"Silver version 10 of {silver} is not an append (DELETE: file {add['path']} gets a deletion "
            "vector (rows deleted or updated))") in str(err)
    p = replay(EXAMPLE, silver, gold, skip_change_commits=True)
    assert p.runs[0].stats.skipped_change_commits == 1
    assert_gold_complete(gold, silver, skip_change_commits=True)


def test_unknown_reader_feature_is_refused(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    """A protocol upgrade to a reader feature goldstream does not know, while it runs."""
    from goldstream.errors import SourceError

    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:3])
    p = pipeline(EXAMPLE, silver, gold)
    p.start()
    protocol = {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["futureMagic"],
                             "writerFeatures": ["futureMagic"]}}
    (silver / "_delta_log" / f"{3:020d}.json").write_text(
        json.dumps({"commitInfo": {"timestamp": 1, "operation": "SET TBLPROPERTIES"}}) + "\n"
        + json.dumps(protocol) + "\n")
    with pytest.raises(SourceError) as info:
        p.replay()
    assert f"Silver table at {silver} version 3 requires reader features futureMagic" in str(info.value)
    assert info.value.exit_code == 2
    assert all(txn_version(gold, q) is None or txn_version(gold, q) < 3 for q in QUERIES)


# -- 9. Starting positions ---------------------------------------------------------------------


def test_starting_positions(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver = tmp_path / "silver"
    append_commits(silver, history[:12])
    commits = read_delta_commits(str(silver))
    times = {h["version"]: h["timestamp"] for h in DeltaTable(str(silver)).history()}

    def run(name: str, starting: object) -> object:
        config = write_config(tmp_path / f"{name}.toml", starting_version=starting)
        p = pipeline(config, silver, tmp_path / name)
        p.start()
        p.replay()
        return p

    for name, starting, first in [("earliest", "earliest", 0), ("version", 5, 5)]:
        p = run(name, starting)
        assert [r.rebuild_from for r in p.runs] == [first, first]  # type: ignore[attr-defined]
        for q in QUERIES:
            assert_gold_equal(read_gold(tmp_path / name / q), expected_gold(commits[first:], q))
    k = next(v for v in range(4, 12) if times[v] > times[v - 1])
    just_after_previous = datetime.fromtimestamp((times[k - 1] + 1) / 1000, timezone.utc)
    p = run("timestamp", just_after_previous.isoformat())
    assert [r.rebuild_from for r in p.runs] == [k, k]  # type: ignore[attr-defined]  # first commit at or after
    for q in QUERIES:
        assert_gold_equal(read_gold(tmp_path / "timestamp" / q), expected_gold(commits[k:], q))

    config = write_config(tmp_path / "latest.toml", starting_version="latest")
    p = pipeline(config, silver, tmp_path / "latest")
    p.start()  # only commits after the start count
    append_commits(silver, history[12:])
    p.replay()
    for q in QUERIES:
        assert_gold_equal(read_gold(tmp_path / "latest" / q), expected_gold([None] * 12 + history[12:], q))

    proc = cli(EXAMPLE, silver, tmp_path / "past", env={"GOLDSTREAM_SOURCE__STARTING_VERSION": "99"})
    assert proc.returncode == 2
    assert f"start version 99 (starting_version or --from-version) is past the latest version of Silver table {silver} (latest: 15)" in proc.stderr
    assert all(txn_version(tmp_path / "past", q) is None for q in QUERIES)


# -- 10. Rate limits ---------------------------------------------------------------------------


def _files_per_version(table: Path) -> dict[int, int]:
    out = {}
    for path in sorted((table / "_delta_log").glob("*.json")):
        adds = [json.loads(line) for line in path.read_text().splitlines()]
        out[int(path.stem)] = sum(1 for a in adds if "add" in a and a["add"].get("dataChange", True))
    return out


@pytest.mark.parametrize("limit,value,table_kind", [
    ("max_commits_per_batch", 3, "plain"),
    ("max_rows_per_batch", 450, "plain"),
    ("max_files_per_batch", 4, "partitioned"),  # every commit holds more files than that
    ("max_rows_per_batch", 50, "partitioned"),  # and more rows
])
def test_rate_limits_bound_batches_and_never_split_a_commit(limit: str, value: int, table_kind: str,
                                                            tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver = tmp_path / table_kind
    append_commits(silver, history, **({"partition_by": ["origin_country"]} if table_kind == "partitioned" else {}))
    files = _files_per_version(silver)
    rows = {v: (f.height if f is not None else 0) for v, f in enumerate(read_delta_commits(str(silver)))}
    batches: list[tuple[int, int, int]] = []

    def record(p: object) -> None:
        prog = p.progress.last["country_stats"]  # type: ignore[attr-defined]
        batches.append((prog["sources"][0]["startOffset"], prog["sources"][0]["endOffset"], prog["numInputRows"]))

    p = pipeline(write_config(tmp_path / "limit.toml", **{limit: value}), silver, tmp_path / "gold")
    p.start()
    p.replay(on_batch=record)
    assert [b[0] for b in batches] == [0] + [b[1] + 1 for b in batches[:-1]]  # contiguous, every commit once
    assert batches[-1][1] == len(history) - 1
    for first, last, n_rows in batches:
        versions = range(first, last + 1)
        assert n_rows == sum(rows[v] for v in versions)  # whole commits
        size = {"max_commits_per_batch": len(versions), "max_rows_per_batch": n_rows,
                "max_files_per_batch": sum(files[v] for v in versions)}[limit]
        assert size <= value or len(versions) == 1, (first, last, size)
    if table_kind == "partitioned":  # each non-empty commit alone exceeds the bound: it is processed whole
        assert all(sum(rows[v] > 0 for v in range(first, last + 1)) <= 1 for first, last, _ in batches)
    else:
        assert max(last - first for first, last, _ in batches) >= 1  # the bound still batches commits
    assert_gold_complete(tmp_path / "gold", silver)


# -- 12. Gold problems --------------------------------------------------------------------------


def test_gold_with_mismatching_columns_is_refused(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    as_float, as_double, gold = tmp_path / "float_silver", tmp_path / "double_silver", tmp_path / "gold"
    append_commits(as_float, [f.with_columns(pl.col("altitude_meters").cast(pl.Float32)) for f in history[:8]])
    append_commits(as_double, history[:8])
    replay(EXAMPLE, as_float, gold)  # Gold's min/max_altitude are float (Spark keeps the input type)
    before = _gold_state(gold)
    proc = cli(EXAMPLE, as_double, gold)
    assert proc.returncode == 2
    assert f"Gold table {gold}/country_anomalies does not have the columns query 'country_anomalies'" in proc.stderr
    assert "column max_altitude: Gold has float, query produces double" in proc.stderr
    assert "column min_altitude: Gold has float, query produces double" in proc.stderr
    assert _gold_state(gold) == before

    DeltaTable(str(gold / "country_stats")).alter.add_columns([Field("note", "string")])
    err = replay_error(EXAMPLE, as_float, gold)
    assert err.exit_code == 2
    assert "column note (string) is in Gold but not produced by the query" in str(err)


def test_gold_of_another_application_is_refused_unless_allowed(tmp_path: Path,
                                                               history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:10])
    replay(EXAMPLE, silver, gold, to_version=6)
    before = _gold_state(gold)
    other = write_config(tmp_path / "other.toml", queries=seed_query_list(country_stats={"app_id": "team-b-stats"}))
    proc = cli(other, silver, gold)
    assert proc.returncode == 2
    assert (f"Gold table {gold}/country_stats (version {before['country_stats'][0]}) was written by application "
            "id goldstream-country_stats, not by query 'country_stats' (application id 'team-b-stats')") in proc.stderr
    assert "allow_foreign_gold = true" in proc.stderr and "set app_id to its application id" in proc.stderr
    assert _gold_state(gold) == before
    shared = write_config(tmp_path / "shared.toml",
                          queries=seed_query_list(country_stats={"app_id": "team-b-stats",
                                                                 "allow_foreign_gold": True}))
    replay(shared, silver, gold)  # explicitly allowed: it writes under its own id
    assert txn_version(gold, "country_stats", "team-b-stats") == 9
    assert txn_version(gold, "country_stats") == 6  # the other stream's offsets are untouched


# -- the same errors on S3 -------------------------------------------------------------------


@pytest.mark.s3
def test_on_s3_a_missing_table_and_a_damaged_file_are_named(s3_server: object, tmp_path: Path,
                                                            history: list[pl.DataFrame]) -> None:
    import s3fs

    env = s3_server.env()  # type: ignore[attr-defined]
    prefix = f"s3://{s3_server.bucket}/robustness-{tmp_path.name}"  # type: ignore[attr-defined]
    silver, gold = f"{prefix}/silver", Path(tmp_path / "gold")
    proc = cli(EXAMPLE, silver, gold, env=env)
    assert proc.returncode == 2 and f"Silver table {silver} does not exist" in proc.stderr
    opts = s3_server.deltalake_storage_options()  # type: ignore[attr-defined]
    append_commits(silver, history[:8], storage_options=opts)
    fs = s3fs.S3FileSystem(**s3_server.s3fs_kwargs())  # type: ignore[attr-defined]
    log = fs.cat_file(f"{silver[5:]}/_delta_log/{5:020d}.json").decode()
    path = next(json.loads(line)["add"]["path"] for line in log.splitlines() if '"add"' in line)
    fs.pipe_file(f"{silver[5:]}/{path}", b"not parquet at all")
    proc = cli(EXAMPLE, silver, gold, env=env)
    assert proc.returncode == 2
    assert f"cannot read data file {silver}/{path} of Silver version 5: it is corrupt or truncated" in proc.stderr
    assert all(txn_version(gold, q) == -1 for q in QUERIES)  # only the start is recorded: no row processed
