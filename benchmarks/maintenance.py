"""Gold after days of live operation, without and with maintenance.

    python benchmarks/maintenance.py --days 3 [--workdir DIR] [--out FILE.json]

A live query commits once per closed window: one commit, one small Parquet file and the
offsets' `txn` actions per minute, 1,440 a day, for each seed query. Writing them through
delta-rs costs tens of ms each, so the history is written as delta-rs writes an append:
one Parquet file with the query's Gold columns and types (30 countries per window), one
`_delta_log/<v>.json` holding commitInfo (goldstream's application id), the `add` action
with its statistics (numRecords, min/max and null counts of the window and key columns)
and the query's offsets as `txn` actions, published put-if-absent (a hard link). No
checkpoint is written, as if nothing had ever maintained the table.

For each table it reports, at three stages (the raw history, after a checkpoint only,
after a maintenance round whose retention has passed: compaction, checkpoint, log cleanup
and vacuum):
- data files, log files and bytes on disk;
- `open_s`: a fresh Python process opening the table and reading the offsets, what a
  restart of `run` or `replay` does with Gold before its first batch (median of 3);
- `read_day_s`: Polars `scan_delta` of the table filtered on one day's `window_start`
  (the middle day), collected (median of 3).
and, for both queries together, `first_batch_s`: `goldstream replay` from process start to
exit, processing one new Silver commit on top of those Gold tables (once per stage). The
Silver table has one commit per Gold commit (Gold records Silver version m as processed
at minute m, nothing left to rebuild), all empty but the new one, and a checkpoint: its
cost is the same at every stage, and only Gold's changes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from goldstream.config import MaintenanceSpec, load_settings  # noqa: E402
from goldstream.demo.synth import SILVER_SCHEMA, empty_silver_frame, synth_commit_frames  # noqa: E402
from goldstream.runner.upkeep import Table, Upkeep  # noqa: E402
from goldstream.sink.committer import APP_ID, Committer  # noqa: E402
from goldstream.sink.definition import description  # noqa: E402
from goldstream.sink.maintenance import Layout, TableMaintenance  # noqa: E402
from goldstream.sink.offsets import Offsets  # noqa: E402
from goldstream.sink.schema import gold_schema  # noqa: E402
from goldstream.storage import Storage  # noqa: E402
from testsupport.config import write_config  # noqa: E402
from testsupport.silver import DeltaAppender  # noqa: E402

START = datetime(2024, 6, 1, tzinfo=timezone.utc)
COUNTRIES = [f"country-{i:02d}" for i in range(30)]

_OPEN = """
import sys, time
t0 = time.perf_counter()
from deltalake import DeltaTable, write_deltalake
from goldstream.sink.offsets import Offsets
dt = DeltaTable(sys.argv[1])
assert Offsets.from_table(dt, sys.argv[2]) is not None
print(time.perf_counter() - t0)
"""


def build_history(uri: Path, query: Any, schema: pa.Schema, days: int) -> None:
    """One commit per minute of `days`, each holding that minute's closed window."""
    DeltaTable.create(str(uri), schema, name=query.name, description=description(query))
    rng = random.Random(query.name)
    app = query.resolved_app_id
    for minute in range(days * 1440):
        start = START + timedelta(minutes=minute)
        columns: dict[str, Any] = {}
        for field in schema:
            if field.name == "window_start":
                columns[field.name] = pa.array([start] * len(COUNTRIES), field.type)
            elif field.name == "window_end":
                columns[field.name] = pa.array([start + timedelta(minutes=1)] * len(COUNTRIES), field.type)
            elif field.name == "origin_country":
                columns[field.name] = pa.array(COUNTRIES, field.type)
            elif pa.types.is_integer(field.type):
                columns[field.name] = pa.array([rng.randrange(1000) for _ in COUNTRIES], field.type)
            else:
                columns[field.name] = pa.array([rng.random() * 1e4 for _ in COUNTRIES], field.type)
        name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
        pq.write_table(pa.table(columns, schema=schema), uri / name, compression="snappy")
        iso = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (start, start + timedelta(minutes=1))]
        stats = {"numRecords": len(COUNTRIES),
                 "minValues": {"window_start": iso[0], "window_end": iso[1], "origin_country": COUNTRIES[0]},
                 "maxValues": {"window_start": iso[0], "window_end": iso[1], "origin_country": COUNTRIES[-1]},
                 "nullCount": {"window_start": 0, "window_end": 0, "origin_country": 0}}
        now_ms = int(time.time() * 1000)
        offsets = Offsets(minute, 0, minute + 1, 0, start=0)
        actions = [{"commitInfo": {"timestamp": now_ms, "operation": "WRITE",
                                   "operationParameters": {"mode": "Append"}, APP_ID: app}},
                   {"add": {"path": name, "partitionValues": {}, "size": (uri / name).stat().st_size,
                            "modificationTime": now_ms, "dataChange": True, "stats": json.dumps(stats)}},
                   *({"txn": {"appId": t.app_id, "version": t.version, "lastUpdated": now_ms}}
                     for t in offsets.to_txns(app, now_ms))]
        staged = uri / "_delta_log" / f".{minute + 1:020d}.json.tmp"
        staged.write_text("\n".join(json.dumps(a) for a in actions) + "\n")
        os.link(staged, uri / "_delta_log" / f"{minute + 1:020d}.json")
        staged.unlink()


def build_silver(uri: Path, versions: int) -> None:
    """Silver with `versions` versions: the first through delta-rs, the rest empty commits
    (commitInfo only, as a writer that found nothing commits), then a checkpoint."""
    write_deltalake(str(uri), empty_silver_frame().to_arrow())
    for v in range(1, versions):
        info = {"commitInfo": {"timestamp": int(time.time() * 1000), "operation": "WRITE",
                               "operationParameters": {"mode": "Append"}}}
        (uri / "_delta_log" / f"{v:020d}.json").write_text(json.dumps(info) + "\n")
    DeltaTable(str(uri)).create_checkpoint()


def first_batch(config: Path, silver: Path, seed: int) -> float:
    """Seconds from the start of `goldstream replay` to its exit, one new Silver commit to process."""
    frame = next(synth_commit_frames(1, 500, seed=seed, start=START))
    version = DeltaAppender(silver).append(frame)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "goldstream", "replay", "--config", str(config), "--to-version",
                    str(version)], check=True, capture_output=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return round(time.perf_counter() - t0, 2)


def measure(uri: Path, app: str, day: datetime) -> dict[str, Any]:
    files = [p for p in uri.iterdir() if p.name.startswith("part-")]
    logs = list((uri / "_delta_log").iterdir())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    opens = [float(subprocess.run([sys.executable, "-c", _OPEN, str(uri), app], capture_output=True, text=True,
                                  check=True, env=env).stdout) for _ in range(3)]
    reads = []
    for _ in range(3):
        t0 = time.perf_counter()
        rows = pl.scan_delta(str(uri)).filter(pl.col("window_start").is_between(
            day, day + timedelta(days=1), closed="left")).collect()
        reads.append(time.perf_counter() - t0)
    assert rows.height == 1440 * len(COUNTRIES), rows.height
    return {"data_files": len(DeltaTable(str(uri)).file_uris()), "files_on_disk": len(files),
            "log_files": len(logs), "bytes": sum(p.stat().st_size for p in [*files, *logs]),
            "open_s": round(statistics.median(opens), 3), "read_day_s": round(statistics.median(reads), 3)}


def maintain(uri: Path, query: Any, storage: Storage) -> float:
    """A full round (`goldstream maintain`), then log cleanup and vacuum as they are once
    the retention has passed; its duration."""
    t0 = time.perf_counter()
    committer = Committer(str(uri), storage, f"Gold table {uri}", f"query {query.name!r}", query.resolved_app_id,
                          Offsets.txn_ids(query.resolved_app_id))
    committer.load()
    committer.start_audit(resume=True)
    m = TableMaintenance(committer, Layout("window_start", ("window_start", *query.keys)), storage)
    Upkeep(MaintenanceSpec(), immediate=True).run_all([Table(query.name, "gold", m)])
    m.configure_log(100, timedelta(0))
    m.checkpoint()
    m.clean_log()
    m.vacuum(timedelta(0))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "goldstream-maintenance")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = load_settings(ROOT / "config.example.toml")
    storage = Storage.from_env()
    types = dict(pl.Schema(SILVER_SCHEMA))
    day = START + timedelta(days=args.days // 2)
    results: dict[str, Any] = {"days": args.days, "commits_per_query": args.days * 1440, "tables": {}}
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    for query in settings.queries:
        uri = args.workdir / "gold" / query.name
        uri.mkdir(parents=True)
        t0 = time.perf_counter()
        build_history(uri, query, gold_schema(query, types), args.days)
        print(f"{query.name}: {args.days * 1440} commits written in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    silver = args.workdir / "silver"
    build_silver(silver, args.days * 1440)
    config = write_config(args.workdir / "config.toml", silver, args.workdir / "gold")
    stages = ("history", "checkpoint", "maintained")
    results["first_batch_s"] = {}
    for n, stage in enumerate(stages):
        if stage == "checkpoint":
            for query in settings.queries:
                DeltaTable(str(args.workdir / "gold" / query.name)).create_checkpoint()
        if stage == "maintained":
            for query in settings.queries:
                seconds = maintain(args.workdir / "gold" / query.name, query, storage)
                results["tables"][query.name]["maintenance_s"] = round(seconds, 1)
        for query in settings.queries:
            measured = measure(args.workdir / "gold" / query.name, query.resolved_app_id, day)
            results["tables"].setdefault(query.name, {})[stage] = measured
        results["first_batch_s"][stage] = first_batch(config, silver, seed=n)
        print(json.dumps({stage: {q: results["tables"][q][stage] for q in results["tables"]},
                          "first_batch_s": results["first_batch_s"][stage]}), file=sys.stderr)
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
