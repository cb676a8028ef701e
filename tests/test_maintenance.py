"""Maintenance of the tables goldstream owns (compaction, checkpoints, log cleanup,
vacuum), on real Delta tables and real processes:

- rows are the same before and after, in Gold and late tables; compaction commits carry
  dataChange = false and no `txn`; the offsets survive checkpoints, log cleanup and
  vacuum, and a restart after maintenance resumes where Gold says;
- an instance that lost a table does not maintain it; a crash (kill -9) in the middle of
  `maintain` loses and duplicates nothing, and the next one finishes the work;
- `maintain` beside a live `run` (itself maintaining) on a growing Silver: Gold equals
  the reference;
- chaining: a query reading a Gold table as its Silver gives the same rows whether or
  not that Gold was compacted and vacuumed while it ran.
"""

from __future__ import annotations

import json
import shutil
import signal
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from gold_compare import assert_gold_equal
from goldstream.config import MaintenanceSpec, load_settings
from goldstream.demo.synth import synth_commit_frames
from goldstream.errors import OwnershipLost
from goldstream.observability import Metrics
from goldstream.runner import Pipeline
from goldstream.runner.upkeep import Upkeep, tables
from goldstream.sink.gold import GoldSink
from goldstream.sink.offsets import Offsets
from goldstream.sink.schema import gold_schema
from goldstream.source.reader import SilverSource
from goldstream.storage import Storage
from stream_helpers import Proc, orphan_files, wait_caught_up, wait_until
from testsupport.config import QUERIES, seed_query_list, write_config
from testsupport.process import cli_env, goldstream
from testsupport.silver import DeltaAppender, fast_silver

START = datetime(2024, 6, 1, 23, 45, tzinfo=timezone.utc)  # the windows span two UTC days
COMMITS, ROWS = 60, 120
FAST = {"GOLDSTREAM_SOURCE__POLL_INTERVAL": "0.05s"}


def frames(commits: int = COMMITS, seed: int = 5) -> list[pl.DataFrame]:
    return list(synth_commit_frames(commits, ROWS, seed=seed, start=START, commit_interval_s=30))


def rows(table: Path) -> pl.DataFrame:
    """A table's rows as a multiset: sorted by every column."""
    df = pl.from_arrow(DeltaTable(str(table)).to_pyarrow_table())
    assert isinstance(df, pl.DataFrame)
    return df.sort(df.columns, nulls_last=True)


def offsets(table: Path) -> dict[str, int | None]:
    dt = DeltaTable(str(table))
    app = f"goldstream-{table.name}"
    return {a: dt.transaction_version(a) for a in Offsets.txn_ids(app)}


def commits_after(table: Path, version: int) -> list[list[dict]]:
    """The actions of each commit file after `version` still in the log."""
    out = []
    for f in sorted((table / "_delta_log").glob("*.json")):
        if int(f.name[:20]) > version:
            out.append([json.loads(line) for line in f.read_text().splitlines() if line.strip()])
    return out


def replay(cfg: Path) -> None:
    Pipeline(load_settings(cfg)).replay()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Silver table, and Gold (plus a late table) replayed from it one Silver commit per
    batch: one small file per Gold commit, as a live query writes them."""
    root = tmp_path_factory.mktemp("replayed")
    fast_silver(root / "silver", frames())
    cfg = write_config(root / "c.toml", root / "silver", root / "gold", max_commits_per_batch=1,
                       queries=seed_query_list(country_stats={"late_sink": str(root / "late")}))
    replay(cfg)
    return root


def copy_of(replayed: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the replayed tables to change, and its config."""
    shutil.copytree(replayed, tmp_path / "t")
    root = tmp_path / "t"
    cfg = write_config(root / "c.toml", root / "silver", root / "gold", max_commits_per_batch=1,
                       queries=seed_query_list(country_stats={"late_sink": str(root / "late")}))
    return root, cfg


def test_maintain_keeps_rows_and_offsets_and_a_restart_resumes(replayed: Path, tmp_path: Path) -> None:
    root, cfg = copy_of(replayed, tmp_path)
    owned = [root / "gold" / q for q in QUERIES] + [root / "late"]
    before = {t: (rows(t), DeltaTable(str(t)).version(), len(DeltaTable(str(t)).file_uris())) for t in owned}
    gold_offsets = {q: offsets(root / "gold" / q) for q in QUERIES}

    dry = goldstream("maintain", "--config", str(cfg), "--dry-run")
    assert "would compact" in dry.stdout
    assert all(DeltaTable(str(t)).version() == before[t][1] for t in owned), "a dry run writes nothing"

    goldstream("maintain", "--config", str(cfg))
    for t in owned:
        old_rows, version, files = before[t]
        assert rows(t).equals(old_rows), f"{t}: rows changed"
        assert files > 10 and len(DeltaTable(str(t)).file_uris()) <= 2, "one file per UTC day of windows"
        actions = [a for c in commits_after(t, version) for a in c]
        assert not [a for a in actions if "txn" in a], "maintenance writes no offsets"
        changes = [a.get("add") or a.get("remove") for a in actions if "add" in a or "remove" in a]
        assert changes and all(c["dataChange"] is False for c in changes)
        assert (t / "_delta_log" / "_last_checkpoint").exists()
    assert {q: offsets(root / "gold" / q) for q in QUERIES} == gold_offsets
    # status: the last Gold commit is the stream's, not maintenance's
    from goldstream.report import status

    for r in status(load_settings(cfg)):
        last_ms = next(h["timestamp"] for h in DeltaTable(r["gold"]).history() if "goldstream.query" in h)
        assert r["last_gold_commit"] == datetime.fromtimestamp(last_ms / 1000, timezone.utc).isoformat()

    # Log cleanup and vacuum at their shortest: the offsets live on in the checkpoint, and
    # the files compaction replaced are gone.
    current = _tables(cfg)
    for table in current:
        m = table.maintenance
        m.configure_log(100, timedelta(0))
        m.checkpoint()
        m.clean_log()
        m.vacuum(timedelta(0))
    for q in QUERIES:
        gold = root / "gold" / q
        assert not (gold / "_delta_log" / f"{0:020d}.json").exists(), "expired commits were removed"
        assert offsets(gold) == gold_offsets[q]
        assert len(list(gold.glob("part-*.parquet"))) == len(DeltaTable(str(gold)).file_uris())
    for t in owned:
        assert rows(t).equals(before[t][0])

    # A restart on the maintained tables resumes from their offsets: Silver grows, and the
    # Gold and late tables equal those of a replay of the whole Silver without maintenance.
    more = frames(COMMITS + 20)[COMMITS:]
    silver = DeltaAppender(root / "silver")
    for f in more:
        silver.append(f)
    replay(cfg)
    ref_root = tmp_path / "ref"
    fast_silver(ref_root / "silver", frames(COMMITS + 20))
    replay(write_config(ref_root / "c.toml", ref_root / "silver", ref_root / "gold",
                        queries=seed_query_list(country_stats={"late_sink": str(ref_root / "late")})))
    for q in QUERIES:  # batches of another size: floating sums in another order (within 1e-9)
        assert_gold_equal(rows(root / "gold" / q), rows(ref_root / "gold" / q))
    assert rows(root / "late").equals(rows(ref_root / "late"))


def _tables(cfg: Path, fenced: bool = False) -> list:
    """The maintenance targets of a config's tables, opened in this process."""
    from goldstream.sink.late import LateSink

    settings, storage = load_settings(cfg), Storage.from_env()
    source = SilverSource(settings.source, settings.queries, storage)
    out = []
    for q in settings.queries:
        uri = settings.gold_path(q)
        gold = GoldSink(uri, q, gold_schema(q, source.engine_types(q, uri)), storage)
        gold.open(create=False)
        late = LateSink(q.late_sink, q.resolved_app_id, storage, query=q.name) if q.late_sink else None
        out += tables(q, gold, late, storage, fenced=fenced)
    return out


def test_an_instance_that_lost_the_table_does_not_maintain_it(replayed: Path, tmp_path: Path) -> None:
    root, cfg = copy_of(replayed, tmp_path)
    settings, storage = load_settings(cfg), Storage.from_env()
    q = settings.queries[0]
    uri = settings.gold_path(q)
    schema = gold_schema(q, SilverSource(settings.source, settings.queries, storage).engine_types(q, uri))
    ours, theirs = GoldSink(uri, q, schema, storage), GoldSink(uri, q, schema, storage)
    ours.open(create=False)
    committed = theirs.open(create=False)
    assert committed is not None
    theirs.commit(pl.DataFrame(schema=schema),
                  replace(committed, version=committed.version + 1), {})
    version = DeltaTable(uri).version()

    (gold,) = [t for t in tables(q, ours, None, storage, fenced=True)]
    with pytest.raises(OwnershipLost):
        Upkeep(MaintenanceSpec(), immediate=True).run_all([gold])
    assert DeltaTable(uri).version() == version, "nothing was written"

    # the owner maintains, with its metrics
    metrics = Metrics()
    (gold,) = [t for t in tables(q, theirs, None, storage, fenced=True)]
    Upkeep(MaintenanceSpec(), metrics, immediate=True).run_all([gold])
    sample = metrics.registry.get_sample_value
    labels = {"query": q.name, "table": "gold"}
    assert sample("goldstream_maintenance_bytes_rewritten_total", labels) > 0
    assert sample("goldstream_table_files", {**labels, "when": "before"}) > 10
    assert sample("goldstream_table_files", {**labels, "when": "after"}) <= 2
    assert sample("goldstream_maintenance_duration_seconds_count", {**labels, "action": "compact"}) >= 1


def test_kill_9_during_maintain_loses_and_duplicates_nothing(replayed: Path, tmp_path: Path) -> None:
    """`maintain` killed as it starts compacting, after a first bin, after a first table:
    each time every table holds the same rows; the next `maintain` finishes the work, and
    files written by a compaction that never committed are vacuumed."""
    root, cfg = copy_of(replayed, tmp_path)
    owned = [root / "gold" / q for q in QUERIES] + [root / "late"]
    before = {t: rows(t) for t in owned}
    for n, marker in enumerate(("bins of small files to compact", "bins left", "maintenance round done")):
        proc = Proc(["maintain", "--config", str(cfg)], tmp_path / "logs", f"maintain-{n}")
        wait_until(lambda: marker in proc.stdout(), marker, proc, interval=0.005)
        proc.kill()
        for t in owned:
            assert rows(t).equals(before[t]), f"{t}: rows changed by a kill after {marker!r}"
    goldstream("maintain", "--config", str(cfg))
    for t in owned:
        assert rows(t).equals(before[t])
        assert len(DeltaTable(str(t)).file_uris()) <= 2, "the next maintain finished the work"
    for table in _tables(cfg):
        table.maintenance.vacuum(timedelta(0))
    assert not any(orphan_files(t) for t in owned), "files of an interrupted compaction are vacuumed"


def test_maintain_beside_a_live_run_on_a_growing_silver(tmp_path: Path) -> None:
    """`run` maintains its tables every second while `maintain` runs again and again: both
    compact the same tables, and appends go on. Gold equals a replay without maintenance."""
    all_frames = frames(COMMITS + 30, seed=9)
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    table = fast_silver(silver, all_frames[:10])
    doc = {"source": {}, "sink": {}, "server": {}, "queries": seed_query_list(),
           "maintenance": {"compact_every": "1s", "vacuum_every": "2s"}}
    cfg = write_config(tmp_path / "c.toml", silver, gold, doc=doc, max_commits_per_batch=1)
    run = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "run", env=cli_env(**FAST))
    try:
        appender = DeltaAppender(silver)
        for i, frame in enumerate(all_frames[10:]):
            appender.append(frame)
            if i % 25 == 10:
                goldstream("maintain", "--config", str(cfg))
        wait_caught_up(run, gold, list(QUERIES), appender.version)
        goldstream("maintain", "--config", str(cfg))
        wait_until(lambda: "maintenance round done" in run.stdout(), "a maintenance round of run", run)
    finally:
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.describe()
    assert '"level": "ERROR"' not in run.stdout()
    ref = tmp_path / "ref"
    fast_silver(ref / "silver", all_frames)
    replay(write_config(ref / "c.toml", ref / "silver", ref / "gold"))
    for q in QUERIES:
        assert_gold_equal(rows(gold / q), rows(ref / "gold" / q))  # a duplicate would be an extra row
        assert len(DeltaTable(str(gold / q)).file_uris()) < table.version + 30


HOURLY = {
    "name": "hourly_country", "event_time": "window_start", "keys": ["origin_country"],
    "window": {"kind": "tumbling", "size": "1h"}, "watermark_delay": "10m",
    "aggregates": [{"name": "flights", "fn": "sum", "column": "flight_count"},
                   {"name": "max_avg_altitude", "fn": "max", "column": "avg_altitude"}],
}


def test_chaining_reads_the_same_rows_from_a_compacted_and_vacuumed_gold(replayed: Path, tmp_path: Path) -> None:
    """A second configuration reads country_stats' Gold as its Silver (hourly rollups). Its
    live `run` sees that Gold compacted, and what it had read vacuumed, while the Gold
    grows; it produces what a replay over a Gold of the same history never maintained
    produces (upstream replays one Silver commit per batch: the same commits with rows)."""
    root, cfg = copy_of(replayed, tmp_path)
    upstream = root / "gold" / "country_stats"
    down_cfg = write_config(tmp_path / "down.toml", upstream, tmp_path / "down", queries=[HOURLY])
    down = Proc(["run", "--config", str(down_cfg), "--http-port", "0"], tmp_path / "logs", "down",
                env=cli_env(**FAST))
    try:
        wait_caught_up(down, tmp_path / "down", ["hourly_country"], DeltaTable(str(upstream)).version())
        goldstream("maintain", "--config", str(cfg), "--query", "country_stats")
        (stats,) = [t for t in _tables(cfg) if t.query == "country_stats" and t.kind == "gold"]
        assert stats.maintenance.vacuum(timedelta(0)), "the files the downstream read are gone"
        appender = DeltaAppender(root / "silver")
        for f in frames(COMMITS + 40)[COMMITS:]:
            appender.append(f)
        replay(cfg)
        wait_caught_up(down, tmp_path / "down", ["hourly_country"], DeltaTable(str(upstream)).version())
    finally:
        down.signal(signal.SIGTERM)
        assert down.wait() == 0, down.describe()
    ref = tmp_path / "ref"
    fast_silver(ref / "silver", frames(COMMITS + 40))
    replay(write_config(ref / "up.toml", ref / "silver", ref / "gold", max_commits_per_batch=1))
    replay(write_config(ref / "down.toml", ref / "gold" / "country_stats", ref / "down", queries=[HOURLY]))
    got, want = rows(tmp_path / "down" / "hourly_country"), rows(ref / "down" / "hourly_country")
    assert got.height > 0 and got.equals(want)


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("retention", "12h", "retention 12h is shorter than the minimum of 1d"),
    ("log_retention", "2h", "log_retention 2h is shorter than the minimum of 1d"),
    ("retention", "36h30m", "retention must be whole hours"),
    ("compact_every", "0s", "compact_every must be positive"),
    ("target_file_size", 1000, "greater than or equal to 1048576"),
])
def test_maintenance_settings_are_checked(tmp_path: Path, setting: str, value: object, message: str) -> None:
    from goldstream.errors import ConfigError

    doc = {"source": {}, "sink": {}, "server": {}, "queries": seed_query_list(), "maintenance": {setting: value}}
    cfg = write_config(tmp_path / "c.toml", tmp_path / "silver", tmp_path / "gold", doc=doc)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)


@pytest.mark.s3
def test_maintain_on_s3(s3_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same round on S3 (compacted files uploaded, the swap committed put-if-absent,
    vacuum listing the bucket): rows and offsets unchanged, one file per day."""
    import uuid

    import s3fs

    prefix = f"s3://{s3_server.bucket}/maintain-{uuid.uuid4().hex[:8]}"
    fast_silver(tmp_path / "silver", frames(30))
    stats = {**seed_query_list()[0], "late_sink": str(tmp_path / "late")}
    local = write_config(tmp_path / "local.toml", tmp_path / "silver", tmp_path / "gold", max_commits_per_batch=1,
                         queries=[stats])
    replay(local)  # written locally (a commit on this S3 server costs ~0.5 s), then uploaded as it is
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.s3fs_kwargs())
    fs.put(str(tmp_path / "gold" / "country_stats") + "/", f"{prefix[5:]}/gold/country_stats", recursive=True)
    fs.put(str(tmp_path / "late") + "/", f"{prefix[5:]}/late", recursive=True)
    cfg = write_config(tmp_path / "c.toml", tmp_path / "silver", f"{prefix}/gold", max_commits_per_batch=1,
                       queries=seed_query_list(country_stats={"late_sink": f"{prefix}/late"}))
    env, opts = s3_server.env(), s3_server.deltalake_storage_options()
    owned = [f"{prefix}/gold/country_stats", f"{prefix}/late"]

    def state(uri: str) -> tuple[pl.DataFrame, int, int | None]:
        dt = DeltaTable(uri, storage_options=opts)
        df = pl.from_arrow(dt.to_pyarrow_table())
        assert isinstance(df, pl.DataFrame)
        app = "goldstream-country_stats.late" if uri.endswith("/late") else f"goldstream-{uri.rsplit('/', 1)[1]}"
        return df.sort(df.columns, nulls_last=True), len(dt.file_uris()), dt.transaction_version(app)

    before = {uri: state(uri) for uri in owned}
    out = goldstream("maintain", "--config", str(cfg), "--query", "country_stats", env=env).stdout
    summary = [line for line in out.splitlines() if line.startswith(QUERIES)]
    assert len(summary) == len(owned) and not [line for line in summary if "compacted 0 files" in line]
    for uri in owned:
        rows_after, files, offset = state(uri)
        assert rows_after.equals(before[uri][0]) and offset == before[uri][2] is not None
        assert before[uri][1] > 5 and files <= 2
