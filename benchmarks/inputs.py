"""Benchmark inputs: synthetic Silver tables, generated once and reused while their
parameters match (a `inputs.json` marker next to them).

- The throughput case is written by `goldstream.demo.synth.generate_silver` itself: one
  delta-rs `write_deltalake` per commit, exactly what `goldstream generate-silver` does.
- The 24-hour history keeps the OpenSky commit cadence (one commit per 10 s of event
  time: 8,640 commits) but not its row rate (see `HISTORY_ROWS_PER_COMMIT`). One
  `write_deltalake` per commit costs ~65 ms on two busy cores, so 8,640 commits would
  take 10+ minutes; instead it is written by `testsupport.silver.FastSilver`: the first
  commit through delta-rs (so the protocol and schema are delta-rs's own), the rest by
  writing each commit's Parquet file (Polars) and its `_delta_log` JSON (add +
  commitInfo, the same actions delta-rs writes for an append) directly, with a
  checkpoint every 100 commits as delta-rs's own writer makes. The rows are
  `synth_commit_frames`' — identical, commit for commit, to what `generate_silver` would
  write. The result is checked by opening it with deltalake.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from goldstream.demo.synth import generate_silver, synth_commit_frames
from testsupport.silver import FastSilver

COMMIT_INTERVAL_S = 10.0  # event time per commit: OpenSky's ~10 s ingestion cadence
HISTORY_COMMITS = 24 * 3600 // 10  # 8,640: 24 h at one commit per 10 s
OPENSKY_ROWS_PER_S = 2_000
HISTORY_ROWS_PER_COMMIT = 500  # 50 rows/s: 2.5% of OpenSky's 2,000 rows/s (see module doc)
CHECKPOINT_EVERY = 100  # delta-rs's default checkpoint interval


@dataclass(frozen=True)
class SilverSpec:
    """What a generated Silver table holds (its marker, to decide whether to reuse it)."""

    name: str
    commits: int
    rows_per_commit: int
    seed: int
    commit_interval_s: float = COMMIT_INTERVAL_S
    writer: str = "generate_silver"  # or "bulk": testsupport.silver.FastSilver (see module doc)
    checkpoint_every: int = 0  # bulk writer: a checkpoint every N commits (0: as generate_silver leaves it)
    aircraft: int | None = None  # distinct icao24 (None: the synthetic default fleet)

    @property
    def nominal_rows(self) -> int:
        return self.commits * self.rows_per_commit


@dataclass(frozen=True)
class Silver:
    path: Path
    spec: SilverSpec
    rows: int  # rows actually written (empty commits have none)
    versions: int
    generated_s: float | None  # None: reused from an earlier run


def ensure_silver(workdir: Path, spec: SilverSpec, fresh: bool = False) -> Silver:
    """The table for `spec` under `workdir`, generated unless an identical one exists."""
    path = workdir / spec.name
    marker = workdir / f"{spec.name}.inputs.json"
    if not fresh and marker.exists() and (path / "_delta_log").is_dir():
        saved = json.loads(marker.read_text())
        if saved.get("spec") == asdict(spec):
            return Silver(path, spec, saved["rows"], saved["versions"], None)
    shutil.rmtree(path, ignore_errors=True)
    marker.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if spec.writer == "bulk":
        rows = _bulk_write(path, spec)
    else:
        rows = generate_silver(str(path), spec.commits, spec.rows_per_commit, spec.seed,
                               commit_interval_s=spec.commit_interval_s, aircraft=spec.aircraft).rows_written
    elapsed = time.perf_counter() - t0
    versions = _check_table(path, spec.commits)
    marker.write_text(json.dumps({"spec": asdict(spec), "rows": rows, "versions": versions}))
    return Silver(path, spec, rows, versions, elapsed)


def _bulk_write(path: Path, spec: SilverSpec) -> int:
    """Commit 0 through delta-rs, commits 1.. as raw Parquet + log JSON (see module doc)."""
    frames = synth_commit_frames(spec.commits, spec.rows_per_commit, spec.seed,
                                 commit_interval_s=spec.commit_interval_s, aircraft=spec.aircraft)
    first = next(frames)
    table = FastSilver(path, first, checkpoint_every=spec.checkpoint_every)
    rows = first.height
    for frame in frames:
        table.append(frame)
        rows += frame.height
    return rows


def _check_table(path: Path, commits: int) -> int:
    """Open the table with deltalake (a real reader) and check it has every commit."""
    from deltalake import DeltaTable

    version = DeltaTable(str(path)).version()
    if version != commits - 1:
        raise RuntimeError(f"generated Silver {path} ends at version {version}, expected {commits - 1}")
    return version + 1
