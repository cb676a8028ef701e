"""Keeping a table goldstream owns fast to read: compaction, checkpoints, log cleanup, vacuum.

A live query commits about once per closed window, one small file each time. Readers pay
for every file and every log entry, so the owner:

- compacts: the small files (below the target size) whose windows start on one UTC day are
  rewritten as one file (more when they exceed the target), sorted by window start, then
  keys, so that a reader filtering on time opens one file per day. The rewrite is one
  commit that removes the old files and adds the new one, both with dataChange = false and
  without `txn`: readers, streaming ones included, see no change, and the offsets stay
  where they are. The current day is rewritten again as it grows (at most a day's worth
  of bytes per round); a finished day is one file and stays one.
- keeps a log checkpoint at most `checkpoint_every` commits behind (the table's
  `delta.checkpointInterval`, which delta-rs follows after each commit) and writes one after
  each compaction round: opening the table reads the checkpoint and the commits after it,
  however long its history. `txn` actions are part of every checkpoint, so the offsets are.
- keeps `delta.logRetentionDuration` as configured and removes the commit files older than
  it that a checkpoint covers.
- vacuums: deletes the files that compaction removed (and files no commit refers to, left
  by a crash between writing a file and committing it) once they are older than the
  retention. Until then every version of the retention window is readable.

A crash at any instant leaves either the old files or the new file in the table, never
both and never neither: the new file is written first and counts only once the commit
that swaps them lands; a file written but never committed is vacuumed after the
retention, and the next round compacts the old files again.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.transaction import AddAction, RemoveAction

from goldstream.sink.committer import Committer, Fence
from goldstream.storage import Storage, fs_path, join

log = logging.getLogger(__name__)

MAINTENANCE = "goldstream.maintenance"  # commitInfo key naming the maintenance a commit did
LOG_RETENTION = "delta.logRetentionDuration"
CHECKPOINT_INTERVAL = "delta.checkpointInterval"


@dataclass(frozen=True)
class Layout:
    """How a table's rows are laid out by compaction: files grouped by the UTC day of
    `time_column`, rows sorted by `sort_columns`."""

    time_column: str
    sort_columns: tuple[str, ...]


@dataclass(frozen=True)
class DataFile:
    path: str
    size: int
    first: datetime | None  # smallest value of the layout's time column (None: unknown)


@dataclass(frozen=True)
class Bin:
    """Files rewritten together as one."""

    day: date | None
    files: tuple[DataFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Compaction:
    files_before: int
    files_after: int
    bytes_rewritten: int
    committed: bool  # False: a dry run, or given up (see Committer.rewrite)


class TableMaintenance:
    """The maintenance of one table, through its Committer: each commit is fenced by what
    `fence()` returns (the owner's offsets; empty for `maintain`, which writes neither rows
    nor offsets and so needs no ownership)."""

    def __init__(self, committer: Committer, layout: Layout, storage: Storage,
                 fence: Callable[[], Fence] = dict) -> None:
        self.committer = committer
        self.layout = layout
        self.storage = storage
        self.fence = fence

    @property
    def what(self) -> str:
        return self.committer.what

    def _table(self) -> DeltaTable:
        """The latest snapshot, audited, if this instance still owns the table."""
        self.committer.check_fence(self.fence())
        assert self.committer.dt is not None
        return self.committer.dt

    # -- compaction -----------------------------------------------------------------------

    def files(self) -> list[DataFile]:
        """The table's data files, with the smallest value of the time column from their stats."""
        adds = pl.DataFrame(self._table().get_add_actions())
        firsts = _stat_column(adds, "min", self.layout.time_column)
        return [DataFile(p, s, f) for p, s, f in zip(adds["path"].to_list(), adds["size_bytes"].to_list(), firsts)]

    @staticmethod
    def plan(files: list[DataFile], target_file_size: int) -> list[Bin]:
        """The bins to rewrite, oldest day first: per UTC day, the files smaller than
        `target_file_size` in time order, cut where a bin would exceed it; a bin of one
        file is already compact."""
        by_day: dict[date | None, list[DataFile]] = {}
        for f in files:
            if f.size < target_file_size:
                by_day.setdefault(None if f.first is None else f.first.astimezone(timezone.utc).date(), []).append(f)
        bins: list[Bin] = []
        for day in sorted(by_day, key=lambda d: (d is not None, d)):
            current: list[DataFile] = []
            for f in sorted(by_day[day], key=lambda f: (f.first is None, f.first, f.path)):
                if current and sum(c.size for c in current) + f.size > target_file_size:
                    bins.append(Bin(day, tuple(current)))
                    current = []
                current.append(f)
            bins.append(Bin(day, tuple(current)))
        return [b for b in bins if len(b.files) > 1]

    def compact(self, work: Bin, target_file_size: int, dry_run: bool = False) -> Compaction:
        """Rewrite the files of `work` as one (more if larger than `target_file_size`),
        sorted; commit the swap (see module doc)."""
        if dry_run:
            return Compaction(len(work.files), 1, work.size, committed=False)
        import pyarrow as pa  # compaction only: not on the path of a batch
        import pyarrow.parquet as pq

        dt = self._table()
        schema = pa.schema(dt.schema().to_arrow())
        fs = self.storage.filesystem(self.committer.uri)
        rows = pa.concat_tables([_conform(pq.read_table(fs_path(join(self.committer.uri, f.path)), filesystem=fs),
                                          schema) for f in work.files])
        rows = rows.sort_by([(c, "ascending", "at_start") for c in self.layout.sort_columns if c in schema.names])
        adds = self._upload(rows, target_file_size)
        now_ms = int(time.time() * 1000)
        removes = [RemoveAction(f.path, False, now_ms, f.size) for f in work.files]
        committed = self.committer.rewrite(adds, removes, {MAINTENANCE: "compact"}, self.fence())
        return Compaction(len(work.files), len(adds), work.size, committed)

    def _upload(self, rows: Any, target_file_size: int) -> list[AddAction]:
        """Write `rows` into the table's directory as Parquet files of about
        `target_file_size`, with the statistics delta-rs writes for every other file:
        delta-rs writes them into a local scratch table, and they are copied over."""
        fs = self.storage.filesystem(self.committer.uri)
        adds = []
        with tempfile.TemporaryDirectory(prefix="goldstream-compact-") as scratch:
            write_deltalake(scratch, rows, mode="error", target_file_size=target_file_size)
            for line in (Path(scratch) / "_delta_log" / f"{0:020d}.json").open():
                if not line.startswith('{"add"'):
                    continue
                add = json.loads(line)["add"]
                name = f"part-{uuid.uuid4()}-compacted.snappy.parquet"
                fs.put_file(str(Path(scratch) / add["path"]), fs_path(join(self.committer.uri, name)))
                adds.append(AddAction(name, int(add["size"]), {}, int(time.time() * 1000), False, add["stats"]))
        return adds

    # -- the log --------------------------------------------------------------------------

    def configure_log(self, checkpoint_every: int, log_retention: timedelta) -> None:
        """Keep the table's checkpoint interval (delta-rs writes a checkpoint after a commit
        that reaches it) and log retention at the configured values."""
        dt = self._table()
        wanted = {CHECKPOINT_INTERVAL: str(checkpoint_every),
                  LOG_RETENTION: f"interval {int(log_retention.total_seconds())} seconds"}
        config = dt.metadata().configuration
        changed = {k: v for k, v in wanted.items() if config.get(k) != v}
        if changed and self.committer.housekeep(
                "setting table properties",
                lambda table, props: table.alter.set_table_properties(changed, commit_properties=props)):
            log.info("%s: table properties set: %s", self.what, changed)

    def checkpoint(self) -> int | None:
        """Write a checkpoint of the latest version unless it has one: opening the table
        reads it and nothing before it. Returns its version (None: there was one)."""
        dt = self._table()
        if self._last_checkpoint() == dt.version():
            return None
        dt.create_checkpoint()
        return dt.version()

    def _last_checkpoint(self) -> int | None:
        fs = self.storage.filesystem(self.committer.uri)
        try:
            raw = fs.cat_file(fs_path(join(self.committer.uri, "_delta_log/_last_checkpoint")))
        except FileNotFoundError:
            return None
        return int(json.loads(raw)["version"])

    def clean_log(self) -> None:
        """Delete the commit files older than the log retention that the latest checkpoint
        covers (delta-rs keeps every file a reader of a retained version needs)."""
        self._table().cleanup_metadata()

    # -- vacuum ---------------------------------------------------------------------------

    def vacuum(self, retention: timedelta, dry_run: bool = False) -> list[str]:
        """Delete the table's own files no longer in it, older than `retention`: those its log
        removed (compaction), and data files no commit refers to (a crash between writing a
        file and committing it) where the table's writers put them (`in_data_layout`). Any
        other file under the table (a README, reports/2023/q4.csv, a copy in a sub-folder)
        was never the table's: it is left alone, with a WARNING. Returns the files deleted
        (that would be, in a dry run). The minimum retention is the configuration's to
        enforce (see config.py): delta-rs' own check reads another table property."""
        dt = self._table()
        hours = int(retention.total_seconds() // 3600)
        unreferenced = dt.vacuum(retention_hours=hours, dry_run=True, full=True, enforce_retention_duration=False)
        removed = set(dt.vacuum(retention_hours=hours, dry_run=True, full=False, enforce_retention_duration=False))
        partitions = dt.metadata().partition_columns
        ours = sorted(p for p in unreferenced if p in removed or in_data_layout(p, partitions))
        foreign = sorted(set(unreferenced) - set(ours))
        if foreign:
            log.warning("%s: %d files under the table that its log never referenced are not its data files and are "
                        "left alone by vacuum (move them out of the table's directory): %s", self.what, len(foreign),
                        ", ".join(foreign[:20]) + (", ..." if len(foreign) > 20 else ""))
        if dry_run or not ours:
            return ours
        if removed:
            self.committer.housekeep("vacuum", lambda table, props: table.vacuum(
                retention_hours=hours, dry_run=False, full=False, enforce_retention_duration=False,
                commit_properties=props), {MAINTENANCE: "vacuum"})
        fs = self.storage.filesystem(self.committer.uri)
        for path in ours:
            if path not in removed:
                fs.rm_file(fs_path(join(self.committer.uri, path)))
        return ours


DATA_FILE = re.compile(r"part-[^/]*\.parquet")


def in_data_layout(path: str, partition_columns: list[str]) -> bool:
    """Whether `path` (relative to the table) is where the table's writers put data files:
    a part-*.parquet file at the root, or in the partition directories of the table's own
    partition columns, in their order (col=value/...)."""
    *folders, name = path.split("/")
    if not DATA_FILE.fullmatch(name) or len(folders) > len(partition_columns):
        return False
    return all(folder.partition("=")[0] == column and "=" in folder
               for folder, column in zip(folders, partition_columns))


def _stat_column(adds: pl.DataFrame, kind: str, column: str) -> list[Any]:
    """The `kind` ("min"/"max") statistic of `column` per file, None where there is none."""
    if kind not in adds.columns:
        return [None] * adds.height
    stats = adds[kind]
    if not isinstance(stats.dtype, pl.Struct) or column not in stats.struct.fields:
        return [None] * adds.height
    return stats.struct.field(column).to_list()


def _conform(rows: Any, schema: Any) -> Any:
    """`rows` of one file with the table's columns, in its order and types (writers differ:
    string or large_string); a column the file lacks (added to the table later) is null."""
    import pyarrow as pa

    columns = [rows.column(f.name).cast(f.type) if f.name in rows.column_names
               else pa.nulls(rows.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)
