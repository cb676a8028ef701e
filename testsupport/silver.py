"""Silver tables written one commit per frame, the way the tests and benchmarks need them.

Two writers of the same commits:
- `DeltaAppender`: every commit through delta-rs (`write_deltalake`), on any storage.
- `FastSilver`: version 0 through delta-rs (so protocol and schema are delta-rs's own),
  later commits written as any Delta writer does it, a Parquet file and then
  `_delta_log/<v>.json` with its `add` action, published with a hard link
  (put-if-absent). delta-rs needs tens of ms per commit (its snapshot replays the log
  since the last checkpoint); thousands of commits would cost minutes.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

RELOAD_EVERY = 50  # commits between fresh snapshots: a long-lived one makes commits slow


class DeltaAppender:
    """Appends commits to a Delta table through delta-rs, keeping its snapshot loaded
    between commits. The table is created by the first append if it does not exist."""

    def __init__(self, table: Path | str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = str(table)
        self.storage_options = storage_options
        self.appended = 0
        try:
            self.table: DeltaTable | None = DeltaTable(self.uri, storage_options=storage_options)
        except TableNotFoundError:
            self.table = None
        self.version = -1 if self.table is None else self.table.version()  # the last version written or found

    def append(self, frame: pl.DataFrame, **create: Any) -> int:
        """One commit holding `frame` (0 rows: an empty commit); its version. `create`
        (configuration, partition_by, ...) applies only when this write creates the table."""
        if self.table is None:
            write_deltalake(self.uri, frame.to_arrow(), mode="append", storage_options=self.storage_options,
                            **create)
            self.table = DeltaTable(self.uri, storage_options=self.storage_options)
        else:
            write_deltalake(self.table, frame.to_arrow(), mode="append")
        self.appended += 1
        if self.appended % RELOAD_EVERY == 0:
            self.table = DeltaTable(self.uri, storage_options=self.storage_options)
        self.version = self.table.version()
        return self.version


def append_commits(table: Path | str, frames: Iterable[pl.DataFrame], storage_options: dict[str, str] | None = None,
                   **create: Any) -> int:
    """One delta-rs append per frame (see `DeltaAppender.append`); the last version."""
    writer = DeltaAppender(table, storage_options)
    for frame in frames:
        writer.append(frame, **create)
    return writer.version


def fast_silver(path: Path, frames: Iterable[pl.DataFrame]) -> FastSilver:
    """A `FastSilver` table with an empty version 0 (the frames' schema), then one commit
    per frame: frame i is version i + 1."""
    frames = iter(frames)
    first = next(frames)
    table = FastSilver(path, first.clear())
    table.append(first)
    for frame in frames:
        table.append(frame)
    return table


class FastSilver:
    """A local Silver table whose commits after version 0 are written directly as Parquet
    file + log entry (see the module doc); a checkpoint every `checkpoint_every` commits,
    as delta-rs's own writer makes them (0: none unless asked)."""

    def __init__(self, path: Path, first: pl.DataFrame, checkpoint_every: int = 0) -> None:
        self.path = path
        self.checkpoint_every = checkpoint_every
        write_deltalake(str(path), first.to_arrow(), mode="append")
        self.version = 0

    def append(self, frame: pl.DataFrame | None) -> int:
        """One commit holding `frame` (None or 0 rows: an empty commit); its version."""
        v = self.version + 1
        now_ms = int(time.time() * 1000)
        actions: list[dict[str, Any]] = []
        if frame is not None and frame.height:
            name = f"part-{v:05d}-{uuid.uuid4()}-c000.snappy.parquet"
            frame.write_parquet(self.path / name, compression="snappy")
            actions.append({"add": {
                "path": name, "partitionValues": {}, "size": (self.path / name).stat().st_size,
                "modificationTime": now_ms, "dataChange": True,
                "stats": json.dumps({"numRecords": frame.height}),
            }})
        actions.append({"commitInfo": {"timestamp": now_ms, "operation": "WRITE",
                                       "operationParameters": {"mode": "Append"}}})
        log = self.path / "_delta_log"
        tmp = log / f"_commit_{uuid.uuid4()}.json.tmp"
        tmp.write_text("\n".join(json.dumps(a) for a in actions) + "\n")
        os.link(tmp, log / f"{v:020d}.json")  # fails if the version exists: put-if-absent
        tmp.unlink()
        self.version = v
        if self.checkpoint_every and (v + 1) % self.checkpoint_every == 0:
            self.checkpoint()
        return v

    def checkpoint(self) -> None:
        DeltaTable(str(self.path)).create_checkpoint()
