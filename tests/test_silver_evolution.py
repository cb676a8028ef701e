"""Silver that changes under a running stream the ways Delta allows, and Silver written by
other engines: column mapping renames and drops, type widening, timestamps stored as
INT96 / TIMESTAMP_MILLIS / without the UTC annotation, a `_last_checkpoint` hint that
runs ahead of the files, and a start from a checkpoint snapshot that must be read the same
way again later.

Each table is real: written by deltalake, with the commits deltalake cannot write (a
rename, a widening with its reader feature, files from other Parquet writers) added to
its `_delta_log` by hand exactly as the protocol describes them (`delta_by_hand.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from delta_by_hand import append_parquet, change_schema, physical_names
from gold_compare import assert_gold_equal
from silver_cases import (
    EXAMPLE,
    assert_gold_is_prefix,
    cli,
    expected_gold,
    frames,
    pipeline,
    replay,
    replay_error,
)
from testsupport.config import QUERIES, seed_query_list, write_config
from testsupport.gold import read_gold, txn_version
from testsupport.silver import append_commits

MAPPED = {"delta.columnMapping.mode": "name"}


@pytest.fixture(scope="module")
def history() -> list[pl.DataFrame]:
    return frames(14)


def _swap(a: str, b: str):  # type: ignore[no-untyped-def]
    def edit(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for f in fields:
            f["name"] = {a: b, b: a}.get(f["name"], f["name"])
        return fields
    return edit


def _drop(name: str):  # type: ignore[no-untyped-def]
    return lambda fields: [f for f in fields if f["name"] != name]


def _replace(name: str):  # type: ignore[no-untyped-def]
    """Drop and add again under the same name in one commit: a new physical column."""
    def edit(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for f in fields:
            if f["name"] == name:
                f["metadata"] = {"delta.columnMapping.id": 99, "delta.columnMapping.physicalName": f"col-{name}-2"}
        return fields
    return edit


# -- 1. column mapping: renames and drops ----------------------------------------------------


def test_rename_that_swaps_a_key_stops_at_that_version(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    """The key would silently read callsigns from version 8 on; and a restart from before
    the rename must read the versions before it with the mapping they were written with."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:8], configuration=MAPPED)
    replay(EXAMPLE, silver, gold, to_version=4)
    assert change_schema(silver, _swap("origin_country", "callsign"), "RENAME COLUMN") == 8
    append_commits(silver, history[8:12])  # deltalake writes them under the new names
    proc = cli(EXAMPLE, silver, gold)
    assert proc.returncode == 2, proc.stderr
    assert f"Silver version 8 of {silver} changes columns the queries read" in proc.stderr
    assert "column 'origin_country' now names the data of column 'callsign' (a rename)" in proc.stderr
    assert "starting_version" in proc.stderr and "Traceback" not in proc.stderr
    assert_gold_is_prefix(gold, silver, below=8, commits=list(history[:8]))
    assert all(txn_version(gold, q) is not None for q in QUERIES)


@pytest.mark.parametrize("mode, edit, says", [
    ("id", _swap("origin_country", "callsign"), "column 'origin_country' now names the data of column 'callsign'"),
    ("name", _replace("altitude_meters"), "column 'altitude_meters' is a new column with the same name"),
    ("name", _swap("altitude_meters", "vertical_rate"), "column 'altitude_meters' now names the data of column "
                                                        "'vertical_rate'"),
])
def test_rename_or_drop_of_a_used_column_stops(mode: str, edit: Any, says: str, tmp_path: Path,
                                               history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:8], configuration={"delta.columnMapping.mode": mode})
    version = change_schema(silver, edit, "ALTER TABLE")
    append_commits(silver, [f.select(list(physical_names(silver))) for f in history[8:10]])
    err = replay_error(EXAMPLE, silver, gold)
    assert err.exit_code == 2
    assert f"Silver version {version} of {silver} changes columns the queries read" in str(err), str(err)
    assert says in str(err)
    assert_gold_is_prefix(gold, silver, below=version, commits=list(history[:8]))


def test_a_drop_that_is_still_current_is_refused_at_start_naming_it(tmp_path: Path,
                                                                    history: list[pl.DataFrame]) -> None:
    """Silver's current schema must fit the queries before anything runs; the message names
    the version that dropped the column."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:8], configuration=MAPPED)
    change_schema(silver, _drop("velocity_kmh"), "DROP COLUMNS")
    append_commits(silver, [f.drop("velocity_kmh") for f in history[8:10]])
    err = replay_error(EXAMPLE, silver, gold)
    assert err.exit_code == 2 and f"Silver schema at {silver} version 8 (the schema is unchanged since" in str(err)
    assert "column 'velocity_kmh' (aggregate 'avg_velocity' of query 'country_stats') is missing" in str(err)
    assert not gold.exists()


def test_drop_then_add_again_stops_at_the_drop(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:8], configuration=MAPPED)
    field = next(f for f in json.loads(DeltaTable(str(silver)).schema().to_json())["fields"]
                 if f["name"] == "altitude_meters")
    dropped = change_schema(silver, _drop("altitude_meters"), "DROP COLUMNS")
    readded = {**field, "metadata": {"delta.columnMapping.id": 99, "delta.columnMapping.physicalName": "col-new"}}
    change_schema(silver, lambda fields: [*fields, readded], "ADD COLUMNS",
                  configuration={"delta.columnMapping.maxColumnId": "99"})
    append_commits(silver, history[8:10])
    assert physical_names(silver)["altitude_meters"] == "col-new"
    err = replay_error(EXAMPLE, silver, gold)
    assert err.exit_code == 2 and f"Silver version {dropped} of {silver}" in str(err)
    assert "column 'altitude_meters' is dropped" in str(err)


def test_renames_of_columns_no_query_reads_are_followed(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:8], configuration=MAPPED)
    change_schema(silver, _swap("icao24", "callsign"), "RENAME COLUMN")
    append_commits(silver, history[8:])
    replay(EXAMPLE, silver, gold)
    commits: list[pl.DataFrame | None] = [*history[:8], None, *history[8:]]
    for q in QUERIES:
        assert_gold_equal(read_gold(gold / q), expected_gold(commits, q))


# -- 2. type widening ---------------------------------------------------------------------------


def _widen(table: Path, column: str) -> int:
    """float -> double the way Delta's typeWidening records it (reader + writer feature)."""
    def edit(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for f in fields:
            if f["name"] == column:
                f["type"] = "double"
                f["metadata"] = {**f.get("metadata", {}),
                                 "delta.typeChanges": [{"fromType": "float", "toType": "double"}]}
        return fields
    return change_schema(table, edit, "CHANGE COLUMN", configuration={"delta.enableTypeWidening": "true"},
                         protocol={"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["typeWidening"],
                                   "writerFeatures": ["typeWidening", "appendOnly", "invariants"]})


def _widened_history(silver: Path, history: list[pl.DataFrame], upto: int = 8) -> list[pl.DataFrame | None]:
    """Versions 0..upto-1 with altitude as float, a widening at `upto`, then double files."""
    as_float = [f.with_columns(pl.col("altitude_meters").cast(pl.Float32)) for f in history[:upto]]
    append_commits(silver, as_float)
    assert _widen(silver, "altitude_meters") == upto
    for f in history[upto:]:
        append_parquet(silver, f.to_arrow())
    # the values as they are now in the table, read at the widened type
    return [*(f.with_columns(pl.col("altitude_meters").cast(pl.Float64)) for f in as_float), None, *history[upto:]]


def test_widening_of_a_column_only_averaged_needs_no_stop(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    config = write_config(tmp_path / "stats.toml", queries=[q for q in seed_query_list() if q["name"] == "country_stats"])
    append_commits(silver, [f.with_columns(pl.col("altitude_meters").cast(pl.Float32)) for f in history[:8]])
    replay(config, silver, gold, to_version=5)
    silver_now = tmp_path / "silver"
    _widen(silver_now, "altitude_meters")
    for f in history[8:]:
        append_parquet(silver_now, f.to_arrow())
    proc = cli(config, silver, gold)
    assert proc.returncode == 0, proc.stderr
    commits = [*(f.with_columns(pl.col("altitude_meters").cast(pl.Float32).cast(pl.Float64)) for f in history[:8]),
               None, *history[8:]]
    assert_gold_equal(read_gold(gold / "country_stats"), expected_gold(commits, "country_stats", config=config))


def test_widening_of_a_min_max_column_stops_and_copy_gold_continues(tmp_path: Path,
                                                                     history: list[pl.DataFrame]) -> None:
    """Before: every restart stopped with "Gold has float, query produces double" and only a
    new Gold table from scratch went on. Now the stream stops at the widening, every
    restart says the same, and copying Gold into a table of the wider type continues it
    with every row kept, none repeated."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, [f.with_columns(pl.col("altitude_meters").cast(pl.Float32)) for f in history[:8]])
    replay(EXAMPLE, silver, gold, to_version=5)  # Gold's min/max_altitude are float
    _widen(silver, "altitude_meters")
    for f in history[8:]:
        append_parquet(silver, f.to_arrow())
    for _attempt in range(2):
        proc = cli(EXAMPLE, silver, gold)
        assert proc.returncode == 2, proc.stderr
        assert f"Silver version 8 of {silver} widens column 'altitude_meters' to double" in proc.stderr
        assert "Gold holds it as float" in proc.stderr and "'max_altitude' (max) of query 'country_anomalies'" in (
            proc.stderr)
        assert "goldstream copy-gold" in proc.stderr and "Traceback" not in proc.stderr
    float_commits = [f.with_columns(pl.col("altitude_meters").cast(pl.Float32)) for f in history[:8]]
    assert_gold_is_prefix(gold, silver, below=8, commits=list(float_commits))
    assert txn_version(gold, "country_anomalies") == 7  # everything before the widening was processed

    new = tmp_path / "gold2" / "country_anomalies"
    copied = cli(EXAMPLE, silver, gold, "--query", "country_anomalies", "--to", str(new), command="copy-gold")
    assert copied.returncode == 0, copied.stderr
    kept = read_gold(gold / "country_anomalies")
    assert_gold_equal(read_gold(new), kept.with_columns(pl.col("max_altitude", "min_altitude").cast(pl.Float64)))
    config = write_config(tmp_path / "moved.toml", queries=seed_query_list(country_anomalies={"gold_path": str(new)}))
    proc = cli(config, silver, gold)
    assert proc.returncode == 0, proc.stderr
    commits: list[pl.DataFrame | None] = [
        *(f.with_columns(pl.col("altitude_meters").cast(pl.Float64)) for f in float_commits), None, *history[8:]]
    assert_gold_equal(read_gold(new), expected_gold(commits, "country_anomalies"))
    assert_gold_equal(read_gold(gold / "country_stats"), expected_gold(commits, "country_stats"))


def test_a_fresh_query_reads_a_widened_history_at_the_wider_type(tmp_path: Path,
                                                                 history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, [f.with_columns(pl.col("altitude_meters").cast(pl.Float32)) for f in history[:8]])
    _widen(silver, "altitude_meters")
    for f in history[8:]:
        append_parquet(silver, f.to_arrow())
    replay(EXAMPLE, silver, gold)
    commits = [*(f.with_columns(pl.col("altitude_meters").cast(pl.Float32).cast(pl.Float64)) for f in history[:8]),
               None, *history[8:]]
    for q in QUERIES:
        assert_gold_equal(read_gold(gold / q), expected_gold(commits, q))


# -- 3. event times stored by other Parquet writers ---------------------------------------------


@pytest.mark.parametrize("storage", ["millis", "int96", "micros_without_utc"])
def test_event_time_stored_differently_is_read_as_utc_micros(storage: str, tmp_path: Path,
                                                             history: list[pl.DataFrame]) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    in_ms = [f.with_columns(pl.col("event_timestamp").dt.truncate("1ms")) for f in history]
    append_commits(silver, in_ms[:4])
    for f in in_ms[4:]:
        data = f.to_arrow()
        if storage == "micros_without_utc":
            data = f.with_columns(pl.col("event_timestamp").dt.replace_time_zone(None)).to_arrow()
        options = {"millis": {"coerce_timestamps": "ms"}, "int96": {"use_deprecated_int96_timestamps": True},
                   "micros_without_utc": {}}[storage]
        append_parquet(silver, data, store_schema=False, **options)
    proc = cli(EXAMPLE, silver, gold)
    assert proc.returncode == 0, proc.stderr
    for q in QUERIES:
        assert_gold_equal(read_gold(gold / q), expected_gold(in_ms, q))


# -- 4. a checkpoint hint is checked against the files ------------------------------------------


def test_checkpoint_hint_ahead_of_the_files_is_not_a_gap(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    """A writer updates `_last_checkpoint` while it checkpoints: a hint naming a checkpoint
    whose files are missing or partial says nothing about which commits exist."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    append_commits(silver, history[:4])
    p = pipeline(EXAMPLE, silver, gold)
    p.start()
    p.replay()
    log = silver / "_delta_log"
    (log / "_last_checkpoint").write_text(json.dumps({"version": 10, "size": 12, "parts": 2}))
    partial = log / f"{10:020d}.checkpoint.0000000001.0000000002.parquet"
    partial.write_bytes(b"PAR1")  # part 1 of 2 only
    assert p.step() is False  # version 4 is simply not committed yet
    partial.unlink()  # that writer gave up; another one commits (deltalake refuses to load a bogus hint)
    (log / "_last_checkpoint").unlink()
    append_commits(silver, history[4:11])
    assert p.step() is True and p.runs[0].processed == 10


# -- 5. a snapshot start is resolved once and read the same way again -----------------------------


def test_snapshot_start_is_deterministic_and_can_be_read_again(tmp_path: Path, history: list[pl.DataFrame]) -> None:
    from goldstream.config import load_settings
    from goldstream.source.reader import SilverSource, Start
    from goldstream.storage import Storage

    silver = tmp_path / "silver"
    log = silver / "_delta_log"
    append_commits(silver, history[:6])
    DeltaTable(str(silver)).create_checkpoint()  # at 5
    for v in range(5):  # what log cleanup removes once they expire
        (log / f"{v:020d}.json").unlink()
    append_commits(silver, history[6:10])
    DeltaTable(str(silver)).create_checkpoint()  # at 9: the newest, but not where 'earliest' starts
    settings = load_settings(EXAMPLE)

    def source() -> SilverSource:
        return SilverSource(settings.source.model_copy(update={"path": str(silver)}), settings.queries,
                            Storage.from_env(settings.storage))

    first = source()
    start = first.resolve_start("earliest")
    assert start == Start(5, snapshot=True) and str(start) == "the snapshot at Silver version 5"
    batch = first.next_batch(start.version, stop=5)
    assert batch is not None and batch.commits[0].operation == "SNAPSHOT"
    rows = first.load(batch).height
    assert rows == sum(f.height for f in history[:6])

    again = source()  # a restart, after the table moved on
    append_commits(silver, history[10:12])
    assert again.resolve_start(start) == start
    batch2 = again.next_batch(start.version, stop=5)
    assert batch2 is not None and batch2.commits[0].files == batch.commits[0].files
    assert again.load(batch2).height == rows

    for name in [f"{5:020d}.checkpoint.parquet", *(f"{v:020d}.json" for v in range(5, 9))]:
        (log / name).unlink()  # cleaned up to the checkpoint at 9: the snapshot at 5 is gone
    gone = source()
    gone.resolve_start(start)
    with pytest.raises(Exception) as info:
        gone.next_batch(start.version, stop=5)
    assert info.value.exit_code == 2  # type: ignore[attr-defined]
    assert f"snapshot of Silver {silver} at version 5" in str(info.value)
