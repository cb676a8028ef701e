"""Tail a Silver Delta table commit by commit and read the rows of each commit.

The log is read one `_delta_log/<v>.json` at a time through the table's own object
store (no listing from version 0 on each poll); the Parquet files of each append are
read with Polars, only the columns the queries need, partition columns taken from
`partitionValues`. Batches are bounded (commits, files, rows) but a commit is never
split, and rows carry their commit version so the engine can apply the watermark per
commit.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from goldstream.config import QuerySpec, SourceSpec
from goldstream.engine.state import VERSION
from goldstream.errors import SourceError
from goldstream.source.delta_log import AddedFile, Commit, parse_commit
from goldstream.source.schema import ReadPlan, plan_reads
from goldstream.storage import Storage, fs_path, is_remote, join

log = logging.getLogger(__name__)
_COMMIT_FILE = re.compile(r"(\d{20})\.json$")
_CAST = pl.ScanCastOptions(
    integer_cast="upcast",
    float_cast="upcast",
    datetime_cast=["nanosecond-downcast", "convert-timezone"],
)


@dataclass
class Batch:
    """Contiguous Silver commits read together; skipped change commits are still listed."""

    commits: list[Commit] = field(default_factory=list)
    skipped_changes: list[int] = field(default_factory=list)

    @property
    def first(self) -> int:
        return self.commits[0].version

    @property
    def last(self) -> int:
        return self.commits[-1].version

    @property
    def num_files(self) -> int:
        return sum(len(c.files) for c in self.commits)


class SilverSource:
    """Reads Silver's commits for a set of queries sharing that table."""

    def __init__(self, spec: SourceSpec, queries: list[QuerySpec], storage: Storage) -> None:
        self.spec = spec
        self.uri = spec.path.rstrip("/")
        self.queries = queries
        self.storage = storage
        self.fs = storage.filesystem(self.uri)
        self.log_dir = join(fs_path(self.uri), "_delta_log")
        self.plan: ReadPlan | None = None
        self._pending: dict[int, Commit] = {}
        self.files_read = 0
        self.commits_read = 0

    # -- table level -------------------------------------------------------------------

    def exists(self) -> bool:
        try:
            return bool(self.fs.exists(self.log_dir)) and bool(self._list_versions())
        except FileNotFoundError:
            return False

    def open(self, at_version: int | None = None) -> None:
        """Check the table exists and its schema (at `at_version`, default latest) fits."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            dt = DeltaTable(self.uri, version=at_version, storage_options=self.storage.delta_options(self.uri))
        except TableNotFoundError:
            raise SourceError(
                f"Silver table {self.uri} does not exist (no _delta_log). Check [source] path "
                "(or --silver) and the storage credentials."
            ) from None
        md = dt.metadata()
        self.plan = plan_reads(
            dt.schema().to_json(), list(md.partition_columns), dict(md.configuration),
            self.queries, f"{self.uri} version {dt.version()}",
        )

    def _list_versions(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.fs.ls(self.log_dir, detail=False)
                      if (m := _COMMIT_FILE.search(p)))

    def latest_version(self) -> int | None:
        """Newest committed version, by listing the log (for lag and starting positions)."""
        try:
            versions = self._list_versions()
        except FileNotFoundError:
            return None
        if versions:
            return versions[-1]
        return self._last_checkpoint()

    def _last_checkpoint(self) -> int | None:
        try:
            return int(json.loads(self.fs.cat_file(join(self.log_dir, "_last_checkpoint")))["version"])
        except FileNotFoundError:
            return None

    def resolve_start(self, starting: Any) -> int:
        """First version to read for a query that has never committed."""
        latest = self.latest_version()
        if latest is None:
            raise SourceError(f"Silver table {self.uri} has no commits yet")
        if starting == "earliest":
            versions = self._list_versions()
            first = versions[0] if versions else latest
            if first != 0:
                raise SourceError(
                    f"starting_version = 'earliest' but the log of {self.uri} starts at version {first}: "
                    f"versions 0..{first - 1} were removed by log retention. Start from a version "
                    f">= {first} (starting_version = {first}) under a new query name or Gold path."
                )
            return 0
        if starting == "latest":
            return latest + 1
        if isinstance(starting, int):
            if starting > latest + 1:
                raise SourceError(
                    f"starting_version = {starting} is past the latest version of {self.uri} ({latest}); "
                    f"use a version <= {latest}, 'latest' or 'earliest'"
                )
            return starting
        if isinstance(starting, datetime):
            target_ms = int(starting.timestamp() * 1000)
            for v in self._list_versions():
                c = self.read_commit(v)
                if c is not None and (c.timestamp_ms or 0) >= target_ms:
                    return v
            return latest + 1
        raise SourceError(f"unsupported starting_version {starting!r}")  # pragma: no cover

    # -- commits -------------------------------------------------------------------------

    def read_commit(self, version: int) -> Commit | None:
        """The commit at `version`, or None if it does not exist yet."""
        if version in self._pending:
            return self._pending.pop(version)
        path = join(self.log_dir, f"{version:020d}.json")
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            self._check_gap(version)
            return None
        try:
            return parse_commit(version, raw)
        except ValueError as err:
            raise SourceError(f"Silver commit {self.uri} version {version} is unreadable: {err}") from None

    def _check_gap(self, version: int) -> None:
        """A missing commit below a checkpoint was removed by log retention: never skip it."""
        cp = self._last_checkpoint()
        if cp is not None and cp >= version:
            raise SourceError(
                f"Silver commit {version} of {self.uri} is gone (log retention removed it; the log "
                f"now starts after a checkpoint at version {cp}). This query still needs it. Ways out: "
                "restore the log file, or restart from a later version (starting_version) under a new "
                "query name or Gold path; goldstream never skips a commit silently."
            )

    def next_batch(self, start: int, stop: int | None = None) -> Batch | None:
        """Read commits start, start+1, ... up to the rate limits (a commit is never split)."""
        batch = Batch()
        files = rows = 0
        v = start
        while len(batch.commits) < self.spec.max_commits_per_batch and (stop is None or v <= stop):
            commit = self.read_commit(v)
            if commit is None:
                break
            over = (files + len(commit.files) > self.spec.max_files_per_batch
                    or rows + commit.num_records > self.spec.max_rows_per_batch)
            if batch.commits and (over or commit.metadata is not None):
                self._pending[v] = commit  # starts the next batch (new schema applies from there)
                break
            if commit.metadata is not None:
                self._apply_metadata(commit)
            if commit.is_change:
                if not self.spec.skip_change_commits:
                    raise SourceError(
                        f"Silver version {v} of {self.uri} is not an append ({commit.change_reason}). "
                        "A streaming aggregate cannot take back rows. Set [source] skip_change_commits = true "
                        "to skip such commits (Spark's skipChangeCommits), or rebuild Gold from a new query."
                    )
                batch.skipped_changes.append(v)
                commit.files = []
            batch.commits.append(commit)
            files += len(commit.files)
            rows += commit.num_records
            v += 1
        self.commits_read += len(batch.commits)
        return batch if batch.commits else None

    def _apply_metadata(self, commit: Commit) -> None:
        md = commit.metadata or {}
        self.plan = plan_reads(
            md.get("schemaString", "{}"), list(md.get("partitionColumns") or []),
            dict(md.get("configuration") or {}), self.queries, f"{self.uri} version {commit.version}",
        )

    # -- data ------------------------------------------------------------------------------

    def _file_uri(self, f: AddedFile) -> str:
        if f.is_absolute:
            return f.path
        return join(self.uri, f.path) if is_remote(self.uri) else join(fs_path(self.uri), f.path)

    def _scan(self, f: AddedFile, version: int) -> pl.LazyFrame:
        assert self.plan is not None
        data_cols = self.plan.data_columns
        lf = pl.scan_parquet(
            self._file_uri(f),
            schema={c.physical: c.dtype for c in data_cols},
            missing_columns="insert",
            extra_columns="ignore",
            cast_options=_CAST,
            glob=False,
            storage_options=self.storage.polars_options(self.uri),
        ).select([pl.col(c.physical).alias(c.name) for c in data_cols])
        parts = [
            pl.lit(f.partition_values.get(c.physical, f.partition_values.get(c.name)))
            .cast(pl.String).pipe(_parse_partition, c.dtype).alias(c.name)
            for c in self.plan.partition_columns
        ]
        return lf.with_columns(*parts, pl.lit(version, dtype=pl.Int64).alias(VERSION))

    def load(self, batch: Batch) -> pl.DataFrame:
        """Rows of every append in the batch: the needed columns plus `__version`."""
        if self.plan is None:
            self.open()
        assert self.plan is not None
        scans = [(f, c.version) for c in batch.commits for f in c.files]
        names = [c.name for c in self.plan.columns]
        if not scans:
            return pl.DataFrame(schema={**self.plan.polars_schema(), VERSION: pl.Int64()})
        try:
            frame = pl.concat([self._scan(f, v) for f, v in scans], how="vertical_relaxed").collect()
        except Exception as err:  # find the culprit file, for a message that names it
            self._raise_file_error(scans, err)
            raise
        self.files_read += len(scans)
        return frame.select(*names, VERSION)

    def _raise_file_error(self, scans: list[tuple[AddedFile, int]], err: Exception) -> None:
        for f, v in scans:
            uri = self._file_uri(f)
            try:
                self._scan(f, v).collect()
            except FileNotFoundError:
                raise SourceError(
                    f"data file {uri} of Silver version {v} is missing (VACUUM removed it?). This query "
                    "still needs it: restore it, or restart from a later version under a new query name "
                    "or Gold path."
                ) from None
            except Exception as file_err:  # noqa: BLE001 - reported with its cause
                text = str(file_err)
                if "No such file" in text or "not found" in text.lower():
                    raise SourceError(
                        f"data file {uri} of Silver version {v} is missing (VACUUM removed it?). This "
                        "query still needs it: restore it, or restart from a later version under a new "
                        "query name or Gold path."
                    ) from None
                raise SourceError(
                    f"cannot read data file {uri} of Silver version {v}: {text.splitlines()[0]}. "
                    "Restore the file and restart; nothing was committed for this batch."
                ) from None
        log.debug("batch read failed but each file reads alone: %s", err)


def _parse_partition(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Partition values are strings in the log; cast them to the table schema's type."""
    if dtype == pl.String:
        return expr
    if isinstance(dtype, pl.Datetime):
        parsed = expr.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
        return parsed if dtype.time_zone else parsed.dt.replace_time_zone(None)
    if dtype == pl.Date:
        return expr.str.to_date(strict=False)
    if dtype == pl.Boolean:
        return expr.str.to_lowercase() == "true"
    return expr.cast(dtype)
