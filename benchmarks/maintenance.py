"""Gold after days of live operation, without and with maintenance, and what a restart costs then.

    python benchmarks/maintenance.py --days 3 [--workdir DIR] [--out FILE.json]
    python benchmarks/maintenance.py --days 30 --stages checkpoint,maintained --reuse   # issue 21

A live query commits once per closed window: one commit, one small Parquet file and the
offsets' `txn` actions per minute, 1,440 a day, for each seed query (30 days: 43,200).
Writing them through delta-rs costs tens of ms each, so the history is written as delta-rs
writes an append: one Parquet file with the query's Gold columns and types (30 countries per
window), one `_delta_log/<v>.json` holding commitInfo (goldstream's application id), the
`add` action with its statistics (numRecords, min/max and null counts of the window and key
columns) and the query's offsets as `txn` actions, published put-if-absent (a hard link).
About 3 ms per commit: 30 days of both tables in ~5 minutes. No checkpoint is written
while building (delta-rs itself writes one every 100 commits, see the stages).

Stages (`--stages`, in this order):
- `history`: the log as built, without any checkpoint: as if nothing had ever checkpointed
  the table. goldstream never leaves a table so (delta-rs checkpoints every 100th commit
  of its own), so this is the worst case, not the usual one; opening it replays every
  commit file (slow at 30 days: skip it there).
- `checkpoint`: plus the checkpoint delta-rs would have written last (at the latest
  multiple of 100): what `goldstream run` leaves with maintenance disabled. Only that
  latest checkpoint is written (the 431 older ones delta-rs would have left are not read
  by a restart; they would only add 0.5 % to the log's file count).
- `maintained`: after a maintenance round whose retention has passed: compaction,
  checkpoint, log cleanup and vacuum.

For each table and stage it reports data files, log files and bytes on disk;
- `open_s`: a fresh Python process opening the table and reading the offsets, what a
  restart of `run` or `replay` does with Gold before its first batch (median of 3);
- `read_day_s`: Polars `scan_delta` of the table filtered on one day's `window_start`
  (the middle day), collected (median of 3; skipped with --skip-read-day).
and, for both queries together, `restart_s`: `goldstream replay` from process start to exit,
processing one new Silver commit on top of those Gold tables (median of --repeat runs, one new
commit each), interleaved with the floor and the 2-commit replay below (wall and CPU
medians). The Silver table has one commit per Gold commit (Gold records Silver version m as
processed at minute m, nothing left to rebuild), all empty but the new ones, and a checkpoint:
a restart reads Silver from its rebuild point only, so its cost is the same at every stage.

Beside each restart, interleaved: `floor`, `python -c 'import polars, deltalake'`, and
`replay_2_commits`, `goldstream replay` of a fresh 2-commit Silver into a fresh Gold.
Issue 21's targets: restart <= replay_2_commits + 2 s after 30 days; replay_2_commits <=
floor + 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
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


def _timed(argv: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one process run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round(wall, 3), round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3)


def first_batch(config: Path, silver: Path, seed: int) -> tuple[float, float]:
    """`goldstream replay` from process start to exit, one new Silver commit to process."""
    frame = next(synth_commit_frames(1, 500, seed=seed, start=START))
    version = DeltaAppender(silver).append(frame)
    return _timed([sys.executable, "-m", "goldstream", "replay", "--config", str(config), "--to-version",
                   str(version)])


def floor_s() -> tuple[float, float]:
    """A process that only imports Polars and deltalake: the least any command can cost."""
    return _timed([sys.executable, "-c", "import polars, deltalake"])


def replay_2_commits(workdir: Path) -> tuple[float, float]:
    """`goldstream replay` of a fresh 2-commit Silver (2,000 rows each) into a fresh Gold."""
    silver, gold = workdir / "silver_2", workdir / "gold_2"
    if not (silver / "_delta_log").is_dir():
        from goldstream.demo.synth import generate_silver

        generate_silver(str(silver), 2, 2000, seed=5)
    shutil.rmtree(gold, ignore_errors=True)
    return _timed([sys.executable, "-m", "goldstream", "replay", "--config", str(ROOT / "config.example.toml"),
                   "--silver", str(silver), "--gold-root", str(gold)])


def interleaved(config: Path, silver: Path, workdir: Path, repeat: int, seed: int) -> dict[str, Any]:
    """The floor, the 2-commit replay and the restart, `repeat` times each, interleaved so that
    background load hits all three alike: medians of wall and CPU time."""
    runs: dict[str, list[tuple[float, float]]] = {"floor": [], "replay_2_commits": [], "restart": []}
    for i in range(repeat):
        runs["floor"].append(floor_s())
        runs["replay_2_commits"].append(replay_2_commits(workdir))
        runs["restart"].append(first_batch(config, silver, seed=seed + i))
    out: dict[str, Any] = {}
    for name, xs in runs.items():
        out[name] = {"wall_s": statistics.median(w for w, _ in xs), "cpu_s": statistics.median(c for _, c in xs),
                     "runs": xs}
    out["restart_above_2_commits_s"] = round(out["restart"]["wall_s"] - out["replay_2_commits"]["wall_s"], 3)
    out["restart_above_2_commits_cpu_s"] = round(out["restart"]["cpu_s"] - out["replay_2_commits"]["cpu_s"], 3)
    return out


def latest_checkpoint(uri: Path, every: int = 100) -> int:
    """The checkpoint delta-rs's post-commit hook would have written last (every `every` versions)."""
    latest = max(int(p.stem) for p in (uri / "_delta_log").glob("*.json"))
    version = (latest + 1) // every * every - 1
    DeltaTable(str(uri), version=version).create_checkpoint()
    return version


def measure(uri: Path, app: str, day: datetime, read_day: bool = True) -> dict[str, Any]:
    files = [p for p in uri.iterdir() if p.name.startswith("part-")]
    logs = list((uri / "_delta_log").iterdir())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    opens = [float(subprocess.run([sys.executable, "-c", _OPEN, str(uri), app], capture_output=True, text=True,
                                  check=True, env=env).stdout) for _ in range(3)]
    out = {"data_files": len(DeltaTable(str(uri)).file_uris()), "files_on_disk": len(files),
           "log_files": len(logs), "bytes": sum(p.stat().st_size for p in [*files, *logs]),
           "open_s": round(statistics.median(opens), 3)}
    if read_day:
        reads = []
        for _ in range(3):
            t0 = time.perf_counter()
            rows = pl.scan_delta(str(uri)).filter(pl.col("window_start").is_between(
                day, day + timedelta(days=1), closed="left")).collect()
            reads.append(time.perf_counter() - t0)
        assert rows.height == 1440 * len(COUNTRIES), rows.height
        out["read_day_s"] = round(statistics.median(reads), 3)
    return out


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
    parser.add_argument("--stages", default="history,checkpoint,maintained",
                        help="comma-separated, in order: history, checkpoint, maintained")
    parser.add_argument("--repeat", type=int, default=3, help="restarts per stage, and floor / 2-commit runs")
    parser.add_argument("--reuse", action="store_true", help="reuse the history built by an earlier run "
                        "with the same --days (its `built.json` marker) instead of building it again")
    parser.add_argument("--skip-read-day", action="store_true")
    args = parser.parse_args()
    stages = [x.strip() for x in args.stages.split(",") if x.strip()]
    settings = load_settings(ROOT / "config.example.toml")
    storage = Storage.from_env()
    types = dict(pl.Schema(SILVER_SCHEMA))
    day = START + timedelta(days=args.days // 2)
    results: dict[str, Any] = {"days": args.days, "commits_per_query": args.days * 1440, "stages": stages,
                               "tables": {}, "load_before": os.getloadavg()}
    marker = args.workdir / "built.json"
    reuse = args.reuse and marker.is_file() and json.loads(marker.read_text()).get("days") == args.days
    if not reuse:
        shutil.rmtree(args.workdir, ignore_errors=True)
        args.workdir.mkdir(parents=True)
        for query in settings.queries:
            uri = args.workdir / "gold" / query.name
            uri.mkdir(parents=True)
            t0 = time.perf_counter()
            arrow = pl.DataFrame(schema=gold_schema(query, types)).to_arrow(compat_level=pl.CompatLevel.oldest()).schema
            build_history(uri, query, arrow, args.days)
            results["tables"][query.name] = {"build_s": round(time.perf_counter() - t0, 1)}
            print(f"{query.name}: {args.days * 1440} commits written in {time.perf_counter() - t0:.0f}s",
                  file=sys.stderr)
        build_silver(args.workdir / "silver", args.days * 1440)
        marker.write_text(json.dumps({"days": args.days}) + "\n")
    else:
        print(f"reusing the history in {args.workdir}", file=sys.stderr)
    silver = args.workdir / "silver"
    config = write_config(args.workdir / "config.toml", silver, args.workdir / "gold")
    results["restart_s"] = {}
    for n, stage in enumerate(stages):
        if stage == "checkpoint":
            for query in settings.queries:
                uri = args.workdir / "gold" / query.name
                t0 = time.perf_counter()
                version = latest_checkpoint(uri)
                results["tables"].setdefault(query.name, {})["checkpoint_at"] = version
                print(f"{query.name}: checkpoint at {version} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        if stage == "maintained":
            for query in settings.queries:
                seconds = maintain(args.workdir / "gold" / query.name, query, storage)
                results["tables"].setdefault(query.name, {})["maintenance_s"] = round(seconds, 1)
        for query in settings.queries:
            measured = measure(args.workdir / "gold" / query.name, query.resolved_app_id, day,
                               read_day=not args.skip_read_day)
            results["tables"].setdefault(query.name, {})[stage] = measured
        results["restart_s"][stage] = interleaved(config, silver, args.workdir, args.repeat, seed=100 * n)
        print(json.dumps({stage: {q: results["tables"][q][stage] for q in results["tables"]},
                          "restart_s": results["restart_s"][stage]}), file=sys.stderr)
    results["load_after"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
