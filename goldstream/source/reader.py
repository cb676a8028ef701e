"""Tail a Silver Delta table commit by commit and read the rows of each commit.

The log is read one `_delta_log/<v>.json` at a time through the table's own object
store (no listing from version 0 on each poll); the Parquet files of each append are
read with Polars, only the columns the queries need, partition columns taken from
`partitionValues`. Batches are bounded (commits, files, rows) but a commit is never
split across batches, and rows carry their commit version so the engine can apply the
watermark per commit (and their commit's timestamp when a query bounds event-time skew).
Within a batch, rows are read in chunks of bounded size (`scans`), so that one huge
commit never has to fit in memory at once.

Nothing about Silver is ever skipped silently: a commit removed by log retention, a
data file removed by VACUUM or unreadable, a schema or protocol goldstream cannot
honour, all stop the stream with a `SourceError` that names the table, version, file
or column and says what the operator can do.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar
from urllib.parse import unquote

import polars as pl

from goldstream.columns import COMMIT_MS, VERSION
from goldstream.config import QuerySpec, SourceSpec
from goldstream.durations import format_duration, to_us
from goldstream.errors import SourceError
from goldstream.retry import classify
from goldstream.source.delta_log import AddedFile, Commit, parse_commit
from goldstream.source.log_files import LogFiles
from goldstream.source.schema import (
    ReadPlan,
    check_change,
    check_gold_types,
    check_protocol,
    delta_type_name,
    plan_reads,
    polars_type,
    typed_by_silver,
    widens,
)
from goldstream.storage import Storage, fs_path, is_remote, join

log = logging.getLogger(__name__)
WAIT_LOG_EVERY_S = 30.0  # while `run` waits for a missing Silver table
SCHEMA_LOOKBACK_COMMITS = 1000  # see SilverSource._schema_unchanged
_WAYS_OUT = ("Ways out: restore it (backup, object-store versioning), or start the query afresh from a "
             "later version (starting_version) under a new query name or gold_path, accepting that the "
             "rows in between are not aggregated. goldstream never skips Silver data silently.")
_FILE = "__file"  # source file path of a row, while a batch is read
_T = TypeVar("_T")
_Entry = tuple[AddedFile, int, int | None]  # a data file, its commit's version and timestamp (ms)
# Widened columns are read at the table's (wider) type; event times stored by other writers
# as INT96 (ns), TIMESTAMP_MILLIS or without the UTC annotation are read as µs UTC, as Spark does.
_CAST = pl.ScanCastOptions(
    integer_cast="upcast",
    float_cast="upcast",
    datetime_cast=["nanosecond-downcast", "millisecond-upcast", "convert-timezone"],
)


@dataclass(frozen=True)
class Start:
    """Where a query that has never committed starts reading Silver, as resolved once.

    `version` is the first version read. With `snapshot`, that version is read as the
    table's snapshot at it (every file live then, as one commit: Spark's initial snapshot),
    which is how 'earliest' starts on a log cleaned up to a checkpoint. Passing a Start back
    to `resolve_start` reads the same start again, whatever the log holds by then."""

    version: int
    snapshot: bool = False

    def __str__(self) -> str:
        return f"the snapshot at Silver version {self.version}" if self.snapshot else f"Silver version {self.version}"


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


@dataclass(frozen=True)
class BatchScan:
    """A batch's rows as a lazy plan. `unit` is the column that tells a row's commit:
    `__version` itself, or `__file` (the row's data file), which `files` maps to versions;
    a group-by keeps `unit` among its keys and `resolve` turns it into `__version`."""

    rows: pl.LazyFrame
    unit: str = VERSION
    files: pl.DataFrame | None = None  # unit -> __version, when unit is not the version
    where: str = ""

    def resolve(self, grouped: pl.DataFrame) -> pl.DataFrame:
        """A group-by result keyed by `unit` → the same keyed by `__version`."""
        if self.files is None:
            return grouped
        # a column mapped, not a join: the other columns (hundreds with many queries) stay
        # shared with `grouped` instead of being copied
        versions = grouped[self.unit].replace_strict(self.files[self.unit], self.files[VERSION], default=None,
                                                     return_dtype=pl.Int64)
        if versions.null_count():
            unknown = grouped.filter(versions.is_null())[self.unit][0]
            raise SourceError(
                f"reading Silver {self.where}: Polars reported rows from {unknown!r}, which is not one of "
                "the batch's data files as named in the Delta log. This is a goldstream bug (the file-path "
                "mapping of the fast reader); nothing was committed for this batch. Please report it."
            )
        return grouped.with_columns(versions.alias(VERSION)).drop(self.unit)

    def versioned(self) -> pl.LazyFrame:
        """The rows with `__version` (a per-row join in the fast path: for the rare row-level
        needs, such as a late table)."""
        if self.files is None:
            return self.rows
        return self.rows.join(self.files.lazy(), on=self.unit, how="left", maintain_order="left").drop(self.unit)


class SilverSource:
    """Reads Silver's commits for a set of queries sharing that table."""

    def __init__(self, spec: SourceSpec, queries: list[QuerySpec], storage: Storage) -> None:
        self.spec = spec
        self.uri = spec.path.rstrip("/")
        self.queries = queries
        self.storage = storage
        self.fs = storage.filesystem(self.uri)
        self.log_dir = join(fs_path(self.uri), "_delta_log")
        self.files = LogFiles(self.fs, self.log_dir)
        self._latest_seen: int | None = None  # the newest version known committed (see latest_version)
        self.plan: ReadPlan | None = None  # as of the commit being read
        self.current_plan: ReadPlan | None = None  # as of the table's version at open()
        self.opened_version = -1
        self._next_version: int | None = None  # the version after the last one read
        # Silver columns whose type is a Gold column's, at the type Gold has them (engine_types)
        self._gold_types: dict[str, pl.DataType] = {}
        self._snapshot_version: int | None = None  # 'earliest' on a log cleaned up to a checkpoint
        self._pending: dict[int, Commit] = {}
        self._gap_checked: int | None = None
        self.commits_read = 0
        self.with_commit_time = spec.max_event_time_skew is not None or any(
            q.max_event_time_skew is not None for q in queries)

    # -- table level -------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the log holds a commit: the first one, the one `_last_checkpoint` names,
        or (a log cleaned up without a hint) any, by listing it."""
        try:
            return bool(self.fs.exists(self.log_dir)) and (
                self.files.exists(0) or self._hinted_commit() is not None or bool(self._list_versions()))
        except FileNotFoundError:
            return False

    def wait_until_exists(self, stop: threading.Event, on_poll: Callable[[], None] | None = None) -> bool:
        """`run` only: wait for a missing Silver table, logging every WAIT_LOG_EVERY_S, until
        it appears (True), `stop` is set (False) or [source] wait_for_table_timeout passes
        (SourceError). A stream deployed before its source, or pointed at a typo, says so in
        its logs instead of crash-looping."""
        timeout_s = to_us(self.spec.wait_for_table_timeout) / 1e6
        poll_s = to_us(self.spec.poll_interval) / 1e6
        began = time.monotonic()
        last_log: float | None = None
        while not self.exists():
            waited = time.monotonic() - began
            if timeout_s and waited >= timeout_s:
                raise SourceError(
                    f"Silver table {self.uri} did not appear within [source] wait_for_table_timeout = "
                    f"{format_duration(self.spec.wait_for_table_timeout)} (no commit in its _delta_log). "
                    "Check [source] path (or --silver) and the storage credentials, or raise the timeout "
                    "(\"0s\" waits forever)."
                )
            if last_log is None or time.monotonic() - last_log >= WAIT_LOG_EVERY_S:
                log.warning("Silver table %s does not exist yet (no commit in its _delta_log); waiting for it "
                            "(%.0fs so far, %s). If it should exist, check [source] path and the credentials.",
                            self.uri, waited, "no timeout" if not timeout_s else
                            f"timeout {format_duration(self.spec.wait_for_table_timeout)}")
                last_log = time.monotonic()
            if on_poll is not None:
                on_poll()
            wait_s = poll_s if not timeout_s else max(0.0, min(poll_s, timeout_s - waited))
            if stop.wait(wait_s):
                return False
        log.info("Silver table %s exists", self.uri)
        return True

    def open(self, at_version: int | None = None) -> None:
        """Check the table exists, its protocol is readable and its schema (at `at_version`,
        default latest) fits the queries."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        try:
            dt = DeltaTable(self.uri, version=at_version, storage_options=self.storage.delta_options(self.uri))
        except TableNotFoundError:
            raise SourceError(
                f"Silver table {self.uri} does not exist (no _delta_log). Check [source] path "
                "(or --silver) and the storage credentials."
            ) from None
        except DeltaError as err:
            if classify(err) is not None:
                raise  # storage unreachable or refusing: the pipeline retries or reports it
            hole = self._first_hole()
            if hole is not None:
                raise SourceError(
                    f"Silver table {self.uri} cannot be loaded: commit {hole} (_delta_log/{hole:020d}.json) "
                    "is missing while later commits exist (removed by hand, or an incomplete copy of the "
                    "table). Restore that file; goldstream never skips Silver commits silently."
                ) from None
            raise SourceError(
                f"cannot load the Delta log of Silver table {self.uri}: {str(err)[:400]}. Check that it is "
                "a Delta table this deltalake version can read and that its _delta_log is intact."
            ) from None
        version = dt.version()
        pv = dt.protocol()
        check_protocol({"minReaderVersion": pv.min_reader_version, "readerFeatures": pv.reader_features},
                       f"{self.uri} version {version}")
        md = dt.metadata()
        args = (dt.schema().to_json(), list(md.partition_columns), dict(md.configuration), self.queries)
        try:
            self.plan = plan_reads(*args, f"{self.uri} version {version}")
        except SourceError:
            since = self._schema_version(version)
            if since is None or since == version:
                raise
            # raise again, naming the commit that set this schema rather than the latest one
            plan_reads(*args, f"{self.uri} version {since} (the schema is unchanged since, up to version {version})")
            raise
        self.current_plan = self.plan
        self.opened_version = version

    def _first_hole(self) -> int | None:
        """The first version missing between the oldest and the newest commit file, if any."""
        try:
            listed = self._list_versions()
        except FileNotFoundError:
            return None
        present = set(listed)
        return next((v for v in range(listed[0], listed[-1]) if v not in present), None) if listed else None

    def _schema_version(self, version: int) -> int | None:
        """The latest commit at or before `version` with a metaData action (error path only)."""
        listed = set(self._list_versions())
        for v in range(version, -1, -1):
            if v not in listed:
                return None
            c = self.read_commit(v)
            if c is not None and c.metadata is not None:
                return v
        return None

    def _list_versions(self) -> list[int]:
        return self._list_log()[0]

    def _list_log(self) -> tuple[list[int], list[int]]:
        """The versions of the commit files and of the complete checkpoints in the whole
        log: for questions about the whole log only (its first version, a hole)."""
        return self.files.all()

    def _last_checkpoint(self) -> int | None:
        """The version `_last_checkpoint` names: a hint, which a writer updates while it
        checkpoints; only what the listing shows is trusted."""
        try:
            return int(json.loads(self.fs.cat_file(join(self.log_dir, "_last_checkpoint")))["version"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def _hinted_commit(self) -> int | None:
        """The version `_last_checkpoint` names, if its commit file is there."""
        hint = self._last_checkpoint()
        return hint if hint is not None and self.files.exists(hint) else None

    def latest_version(self) -> int | None:
        """Newest committed version, for lag, replay's end and starting positions. Found
        from a version known to be committed (read or opened by this process, else the one
        `_last_checkpoint` names) by looking only after it (`LogFiles`): its cost does not
        grow with the log's age. Only a log with neither lists the whole log."""
        known = max((v for v in (self._latest_seen, self.opened_version if self.opened_version >= 0 else None,
                                 None if self._next_version is None else self._next_version - 1)
                     if v is not None and v >= 0), default=None)
        try:
            if known is None:
                known = self._hinted_commit()
            if known is None:
                commits, checkpoints = self._list_log()
                latest = max(commits[-1:] + checkpoints[-1:], default=None)
            else:
                latest = self.files.newest_commit(known)
        except FileNotFoundError:
            return None
        self._latest_seen = latest
        return latest

    def resolve_start(self, starting: Any) -> Start:
        """Where a query that has never committed starts (Spark's startingVersion /
        startingTimestamp; 'earliest' reads every commit from version 0, or from the oldest
        checkpoint snapshot when log retention removed the first commits). A `Start`
        resolved before is taken as it is: its snapshot is read again, the same one."""
        if isinstance(starting, Start):
            self._snapshot_version = starting.version if starting.snapshot else None
            return starting
        latest = self.latest_version()
        if latest is None:
            raise SourceError(f"Silver table {self.uri} has no commits yet")
        versions, checkpoints = self._list_log()
        first = versions[0] if versions else latest
        if starting == "earliest":
            snapshots = [c for c in checkpoints if c >= first - 1]
            if first > 0 and snapshots:
                # Log retention removed the first commits: like Spark, start from the table's
                # snapshot at a checkpoint (one commit holding all its files), then tail. The
                # oldest one, so that the start does not depend on when it is resolved.
                self._snapshot_version = snapshots[0]
                return Start(snapshots[0], snapshot=True)
            starting = 0
        return Start(self._start_version(starting, first, latest, versions))

    def _start_version(self, starting: Any, first: int, latest: int, versions: list[int]) -> int:
        if starting == "latest":
            return latest + 1
        if isinstance(starting, int):
            if starting > latest:
                raise SourceError(
                    f"start version {starting} (starting_version or --from-version) is past the latest version of Silver table {self.uri} "
                    f"(latest: {latest}). Use a version between {first} and {latest}, 'latest' (only new "
                    "commits) or 'earliest'."
                )
            if starting < first:
                raise SourceError(
                    f"starting_version = {starting} but the log of {self.uri} now starts at version {first}: "
                    f"versions {starting}..{first - 1} were removed by log retention. Start from a version "
                    f">= {first} (starting_version = {first}), under a new query name or gold_path if this "
                    "query already wrote Gold."
                )
            return starting
        if isinstance(starting, datetime):
            return self._version_at(starting, versions, latest)
        raise SourceError(f"unsupported starting_version {starting!r}")  # pragma: no cover

    def _commit_time_ms(self, version: int) -> int:
        c = self.read_commit(version)
        if c is not None and c.timestamp_ms is not None:
            return int(c.timestamp_ms)
        modified = self.fs.modified(join(self.log_dir, f"{version:020d}.json"))  # the spec's fallback
        return int(modified.replace(tzinfo=modified.tzinfo or timezone.utc).timestamp() * 1000)

    def _version_at(self, when: datetime, versions: list[int], latest: int) -> int:
        """First commit at or after `when` (binary search over the log's commit timestamps);
        latest + 1 when every commit is older (the stream waits for new ones)."""
        target_ms = int(when.timestamp() * 1000)
        lo, hi = 0, len(versions)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._commit_time_ms(versions[mid]) >= target_ms:
                hi = mid
            else:
                lo = mid + 1
        if lo == len(versions):
            return latest + 1
        found = versions[lo]
        if lo == 0 and found > 0:
            raise SourceError(
                f"starting_version = {when.isoformat()} is at or before the oldest commit left in the log of "
                f"{self.uri} (version {found}); versions 0..{found - 1} were removed by log retention, so the "
                f"first commit at or after that time may be gone. Start from version {found} explicitly "
                "(starting_version = " f"{found}) if skipping them is acceptable."
            )
        return found

    # -- commits -------------------------------------------------------------------------

    def read_commit(self, version: int) -> Commit | None:
        """The commit at `version`, or None if it does not exist yet (SourceError if it is gone)."""
        if version in self._pending:
            return self._pending.pop(version)
        if version == self._snapshot_version:
            return self._snapshot_commit(version)
        path = join(self.log_dir, f"{version:020d}.json")
        # s3fs answers cat_file of a key missing from a cached listing with FileNotFoundError,
        # without asking S3: once caught up, new commits would never be seen. Forget the listing.
        self.fs.invalidate_cache(path)
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            self._check_gap(version)
            return None
        try:
            commit = parse_commit(version, raw)
        except ValueError as err:
            raise SourceError(f"Silver commit {self.uri} version {version} is unreadable: {err}") from None
        if commit.timestamp_ms is None:  # no commitInfo: the protocol's fallback, the file's time,
            modified = self.fs.modified(path)  # so the skew bound decides the same on every replay
            commit.timestamp_ms = int(modified.replace(tzinfo=modified.tzinfo or timezone.utc).timestamp() * 1000)
        return commit

    def _snapshot_commit(self, version: int) -> Commit:
        """Every file of the table at `version`, as one commit (Spark's initial snapshot)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        try:
            dt = DeltaTable(self.uri, version=version, storage_options=self.storage.delta_options(self.uri))
        except DeltaError as err:
            if classify(err) is not None:
                raise
            raise SourceError(
                f"the query started from the snapshot of Silver {self.uri} at version {version}, and that "
                f"snapshot can no longer be read (its checkpoint or commits were removed by log retention: "
                f"{str(err)[:200]}); it still feeds windows that are open. " + _WAYS_OUT
            ) from None
        if dt.protocol().reader_features and "deletionVectors" in dt.protocol().reader_features:
            raise SourceError(
                f"starting_version = 'earliest' on {self.uri}, whose first commits were removed, needs its "
                f"snapshot at version {version}, and reading a snapshot with deletion vectors is not "
                "supported: start from a version (starting_version) instead."
            )
        adds = pl.from_arrow(dt.get_add_actions(flatten=True)).struct.unnest()  # type: ignore[union-attr]
        parts = [c for c in adds.columns if c.startswith("partition.")]
        files = [
            AddedFile(path=unquote(row["path"]), size=int(row["size_bytes"] or 0), num_records=row["num_records"],
                      partition_values={c[len("partition."):]: None if row[c] is None else str(row[c]) for c in parts})
            for row in adds.sort("path").iter_rows(named=True)  # one order: the same sums on every read
        ]
        log.info("starting from the snapshot of %s at version %d (%d files): earlier commits were removed "
                 "by log retention", self.uri, version, len(files))
        return Commit(version, timestamp_ms=self._commit_time_ms_or_none(version), operation="SNAPSHOT", files=files)

    def _commit_time_ms_or_none(self, version: int) -> int | None:
        try:
            modified = self.fs.modified(join(self.log_dir, f"{version:020d}.checkpoint.parquet"))
        except (FileNotFoundError, OSError):
            return None
        return int(modified.replace(tzinfo=modified.tzinfo or timezone.utc).timestamp() * 1000)

    def _check_gap(self, version: int) -> None:
        """A commit that is missing while later ones exist was removed (log retention, or by
        hand): never skip it. Once per awaited version (not per poll, unless the
        `_last_checkpoint` hint claims a checkpoint at or after it), whatever follows it is
        looked for by name or from a start key (`LogFiles.any_after`): nothing when caught up,
        the normal case. Only when something follows is the whole log listed, to say what:
        the hint alone proves nothing (a writer updates it while it checkpoints), so it is
        checked against the files the listing shows."""
        hint = self._last_checkpoint()
        if (hint is None or hint < version) and self._gap_checked == version:
            return
        self._gap_checked = version
        if (hint is None or hint < version) and not self.files.any_after(version):
            return  # not committed yet: the normal case when caught up (nothing listed)
        if self.files.exists(version):
            return  # committed between our read and now: read it next poll
        listed, checkpoints = self._list_log()  # something is after it: say exactly what
        if version in listed:
            return
        later = [v for v in listed if v > version]
        covering = [c for c in checkpoints if c >= version]
        if not later and not covering:
            return  # not committed yet: the normal case when caught up
        where = (f"log retention removed it: the log now starts after a checkpoint at version {covering[0]}"
                 if covering and (not listed or listed[0] > version) else
                 f"the log holds versions {later[0]}..{later[-1]} after it" if later else
                 f"a checkpoint at version {covering[0]} follows it")
        raise SourceError(
            f"Silver commit {version} of {self.uri} (_delta_log/{version:020d}.json) is gone ({where}), "
            f"and this query still needs it. " + _WAYS_OUT.replace("restore it", "restore the log file")
        )

    def next_batch(self, start: int, stop: int | None = None,
                   on_commit: Callable[[], None] = lambda: None) -> Batch | None:
        """Read commits start, start+1, ... up to the rate limits (a commit is never split);
        `on_commit` is called after each commit read (a sign of progress)."""
        batch = Batch()
        files = rows = 0
        if self._next_version != start or self.plan is None:
            self.plan = self._plan_in_effect(start)
        v = start
        while len(batch.commits) < self.spec.max_commits_per_batch and (stop is None or v <= stop):
            commit = self.read_commit(v)
            on_commit()
            if commit is None:
                break
            over = (files + len(commit.files) > self.spec.max_files_per_batch
                    or rows + commit.num_records > self.spec.max_rows_per_batch)
            new_table_state = commit.metadata is not None or commit.protocol is not None
            if batch.commits and (over or new_table_state):
                self._pending[v] = commit  # starts the next batch (new schema applies from there)
                break
            if commit.protocol is not None:
                check_protocol(commit.protocol, f"{self.uri} version {v}")
            if commit.metadata is not None:
                self._apply_metadata(commit)
            if commit.is_change:
                if not self.spec.skip_change_commits:
                    raise SourceError(
                        f"Silver version {v} of {self.uri} is not an append ({commit.change_reason}). "
                        "A streaming aggregate cannot take back rows it already counted. Set [source] "
                        "skip_change_commits = true to skip such commits whole, new rows included (Spark's "
                        "skipChangeCommits), or rebuild Gold from a new query name or gold_path."
                    )
                batch.skipped_changes.append(v)
                commit.files = []
            batch.commits.append(commit)
            files += len(commit.files)
            rows += commit.num_records
            v += 1
        self._next_version = v
        self.commits_read += len(batch.commits)
        return batch if batch.commits else None

    def _apply_metadata(self, commit: Commit) -> None:
        """A schema met in the history before the version open() checked may lack a column
        added later (read as null); one newer than that must hold every needed column itself,
        or a dropped column would silently turn into nulls in Gold. Either way the change from
        the schema read so far must be one a stream can follow (`check_change`)."""
        md = commit.metadata or {}
        history = commit.version <= self.opened_version
        where = f"{self.uri} version {commit.version}"
        plan = self._typed(plan_reads(
            md.get("schemaString", "{}"), list(md.get("partitionColumns") or []),
            dict(md.get("configuration") or {}), self.queries, where,
            current=self.current_plan if history else None,
        ))
        if self.plan is not None:
            check_change(self.plan, plan, self.queries, self._gold_types, f"{commit.version} of {self.uri}")
        else:
            check_gold_types(plan, self.queries, self._gold_types, f"{commit.version} of {self.uri}")
        self.plan = plan
        if not history:
            self.current_plan = plan

    def _plan_in_effect(self, version: int) -> ReadPlan | None:
        """The plan for reading from `version` on: the schema as of the version before it
        (a commit's own metaData is applied, and checked as a change, when it is read), or
        as of a snapshot start itself. Reading a version with the schema of another one would
        read another column's data after a rename under column mapping."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        at = version if version == self._snapshot_version else version - 1
        if at < 0:
            return None  # version 0 brings the first schema
        if self.current_plan is None:
            self.open()
        assert self.current_plan is not None
        dt = None
        if at != self.opened_version and not self._schema_unchanged(version, at):
            try:
                dt = DeltaTable(self.uri, version=at, storage_options=self.storage.delta_options(self.uri))
            except DeltaError as err:
                if classify(err) is not None:
                    raise
                # the log no longer reaches it: reading `version` itself fails and says so
        plan = self._typed(self.current_plan if dt is None else plan_reads(
            dt.schema().to_json(), list(dt.metadata().partition_columns), dict(dt.metadata().configuration),
            self.queries, f"{self.uri} version {at}",
            current=self.current_plan if at < self.opened_version else None))
        try:
            check_gold_types(plan, self.queries, self._gold_types, f"{at} of {self.uri}")
        except SourceError:  # name the commit that set this schema
            check_gold_types(plan, self.queries, self._gold_types, f"{self._schema_version(at) or at} of {self.uri}")
            raise
        return plan

    def _schema_unchanged(self, version: int, at: int) -> bool:
        """Whether no commit after `at` up to the version open() loaded changes the schema,
        so the plan as of `at` is the current one, without loading the table a second time
        (a restart reads from its rebuild point, a few commits back). Only a short stretch
        is looked at, and the commits read are kept for the batch that starts there."""
        if at != version - 1 or not 0 < self.opened_version - at <= SCHEMA_LOOKBACK_COMMITS:
            return False
        for v in range(version, self.opened_version + 1):
            commit = self._pending.get(v) or self.read_commit(v)
            if commit is None:
                return False
            self._pending[v] = commit
            if commit.metadata is not None:
                return False
        return True

    def _typed(self, plan: ReadPlan) -> ReadPlan:
        """Columns whose type Gold has are read at Gold's type (the stream stops where Silver
        widens them beyond it, so every value read fits); the rest at the table's current type."""
        return plan.retyped(self._gold_types)

    def engine_types(self, query: QuerySpec, gold: Any) -> dict[str, pl.DataType]:
        """The Silver column types `query`'s engine computes with and its Gold table is made
        of: the table's current types, except that a column whose type reaches an existing
        Gold table (a key, a min/max input) keeps Gold's type when Silver widened it since.
        Such a column is then read at Gold's type up to the version that widened it, where
        the stream stops and says how to continue (a Gold column cannot change type)."""
        if self.current_plan is None:
            self.open()
        assert self.current_plan is not None
        types = self.current_plan.polars_schema()
        gold = self._gold_column_types(gold)
        for col, outputs in typed_by_silver([query], types).items():
            had = {gold[name] for name, _ in outputs if name in gold}
            column = self.current_plan.column(col)
            widened = {polars_type(t) for t in column.widened_from} if column is not None else set()
            if len(had) == 1 and (narrow := had.pop()) in widened and widens(narrow, types[col]):
                types[col] = narrow
            pinned = self._gold_types.get(col)
            if pinned is None or widens(types[col], pinned):
                self._gold_types[col] = types[col]
        return types

    def _gold_column_types(self, gold: Any) -> dict[str, pl.DataType]:
        """An existing Gold table's column types ({} if there is none yet or it cannot be
        loaded: opening it as the sink then says why). `gold`: the table already loaded
        (a DeltaTable, or None when there is none: a process opens each table once), or its URI."""
        from deltalake.exceptions import DeltaError, TableNotFoundError

        from goldstream.sink.schema import table_schema

        if isinstance(gold, str):
            from deltalake import DeltaTable

            try:
                gold = DeltaTable(gold, storage_options=self.storage.delta_options(gold))
            except (TableNotFoundError, DeltaError, OSError):
                return {}
        return {} if gold is None else dict(table_schema(gold.schema()))

    # -- data ------------------------------------------------------------------------------

    def _file_uri(self, f: AddedFile) -> str:
        if f.is_absolute:
            return f.path
        return join(self.uri, f.path) if is_remote(self.uri) else join(fs_path(self.uri), f.path)

    def _parquet(self, uris: str | list[str], **extra: Any) -> pl.LazyFrame:
        """Only the needed data columns, by physical name, cast to the plan's types."""
        assert self.plan is not None
        data_cols = self.plan.data_columns
        return pl.scan_parquet(
            uris,
            schema={c.physical: c.dtype for c in data_cols if c.physical is not None},
            missing_columns="insert",
            extra_columns="ignore",
            cast_options=_CAST,
            glob=False,
            storage_options=self.storage.polars_options(self.uri),
            **extra,
        ).select(*[pl.lit(None, c.dtype).alias(c.name) if c.physical is None else pl.col(c.physical).alias(c.name)
                   for c in data_cols], *extra.values())

    def _scan(self, f: AddedFile, version: int, commit_ms: int | None = None) -> pl.LazyFrame:
        assert self.plan is not None
        lf = self._parquet(self._file_uri(f))
        parts = [
            pl.lit(f.partition_values.get(c.physical, f.partition_values.get(c.name)))
            .cast(pl.String).pipe(_parse_partition, c.dtype).alias(c.name)
            for c in self.plan.partition_columns
        ]
        extra = [COMMIT_MS] if self.with_commit_time else []
        if self.with_commit_time:
            parts.append(pl.lit(commit_ms, dtype=pl.Int64).alias(COMMIT_MS))
        return (lf.with_columns(*parts, pl.lit(version, dtype=pl.Int64).alias(VERSION))
                .select(*[c.name for c in self.plan.columns], *extra, VERSION))

    def scans(self, batch: Batch) -> list[BatchScan]:
        """The batch's rows as lazy plans of at most [source] max_rows_per_chunk rows each,
        in commit order, for a consumer that streams each into a group-by and merges the
        results: a batch's memory then follows the chunk, not the size of its commits.
        Whole files are grouped into a chunk; a file with more rows than that is sliced into
        row ranges (the last one open-ended, so a file whose statistics undercount its rows
        is still read whole); a file whose add action has no row count is a chunk of its
        own. Collect them inside `reading(batch, ...)`, which names the culprit file when a
        read fails."""
        if self.plan is None:
            self.open()
        limit = self.spec.max_rows_per_chunk
        chunks: list[BatchScan] = []
        group: list[_Entry] = []
        rows = 0
        for entry in [(f, c.version, c.timestamp_ms) for c in batch.commits for f in c.files]:
            n = entry[0].num_records
            if group and (n is None or rows + n > limit):
                chunks.append(self._scan_files(group, batch))
                group, rows = [], 0
            if n is not None and n > limit:
                lf = self._scan(*entry)
                chunks += [BatchScan(lf.slice(at, limit if at + limit < n else None)) for at in range(0, n, limit)]
            else:
                group.append(entry)
                rows += limit if n is None else n  # unknown: no other file joins it
        if group or not chunks:  # an empty batch is one empty chunk
            chunks.append(self._scan_files(group, batch))
        return chunks

    def _scan_files(self, scans: list[_Entry], batch: Batch) -> BatchScan:
        """Whole files as one lazy plan.

        Fast path (no partition column needed, no commit time): one `scan_parquet` over
        all the files, each row tagged with its file path (`__file`), which maps to the
        commit version after the group-by, on a few thousand partial rows instead of
        millions of rows. One scan per file, concatenated with a literal version column,
        costs ~25% more CPU and ~80 MB more memory per 2 M rows (Polars then opens every
        file as its own source), so it is only used when per-file constants must be
        attached to each row."""
        assert self.plan is not None
        extra = [COMMIT_MS] if self.with_commit_time else []
        if not scans:
            return BatchScan(pl.LazyFrame(schema={**self.plan.polars_schema(), **{c: pl.Int64() for c in extra},
                                                  VERSION: pl.Int64()}))
        uris = [self._file_uri(f) for f, _, _ in scans]
        if self.plan.partition_columns or self.with_commit_time or len(set(uris)) != len(uris):
            return BatchScan(pl.concat([self._scan(*s) for s in scans], how="vertical_relaxed"))
        rows = self._parquet(uris, include_file_paths=_FILE)
        files = pl.DataFrame({_FILE: uris, VERSION: [v for _, v, _ in scans]},
                             schema={_FILE: pl.String(), VERSION: pl.Int64()})
        return BatchScan(rows, unit=_FILE, files=files, where=f"{self.uri} versions {batch.first}-{batch.last}")

    def reading(self, batch: Batch, compute: Callable[[], _T]) -> _T:
        """Run `compute` (which collects plans built on `scan(batch)`); a read failure becomes
        a SourceError naming the file and the version."""
        try:
            result = compute()
        except SourceError:
            raise
        except Exception as err:  # find the culprit file, for a message that names it
            if classify(err) is not None:
                raise  # storage unreachable or refusing, not a bad file: retried or reported as such
            if isinstance(err, pl.exceptions.ComputeError) and "overflow in decimal" in str(err):
                raise SourceError(
                    f"reading Silver {self.uri} versions {batch.first}-{batch.last}: a sum of a decimal column "
                    f"(or decimal arithmetic in a condition) needs more than 38 digits "
                    f"({str(err).splitlines()[0]}), the most a decimal holds: an arithmetic overflow (a sum "
                    "stops Spark 4 in ANSI mode too). Nothing was committed for this batch. Cast the column in "
                    "Silver to a decimal with fewer decimal places, or sum fewer rows per window, and start "
                    "the query afresh under a new name or gold_path."
                ) from None
            self._raise_file_error([(f, c.version, c.timestamp_ms) for c in batch.commits for f in c.files], err)
            raise
        return result

    def load(self, batch: Batch) -> pl.DataFrame:
        """Rows of every append in the batch, materialised: the needed columns plus `__version`
        (the pipeline itself streams `scans(batch)` instead)."""
        scans = self.scans(batch)
        return self.reading(batch, lambda: pl.concat([s.versioned().collect() for s in scans], how="vertical_relaxed"))

    def _raise_file_error(self, scans: list[_Entry], err: Exception) -> None:
        for f, v, ms in scans:
            uri = self._file_uri(f)
            try:
                self._scan(f, v, ms).collect()
            except Exception as file_err:  # noqa: BLE001 - reported with its cause
                if classify(file_err) is not None:
                    raise  # a storage failure, not this file's fault
                text = str(file_err)
                if isinstance(file_err, FileNotFoundError) or "No such file" in text or "not found" in text.lower():
                    raise SourceError(
                        f"data file {uri} of Silver version {v} is missing (VACUUM, or a cleanup by hand, "
                        "removed it while this query still needs it). " + _WAYS_OUT
                        + " Nothing was committed for this batch."
                    ) from None
                mismatch = self._type_mismatches(f)
                if mismatch:
                    raise SourceError(
                        f"data file {uri} of Silver version {v} does not hold the table's schema: "
                        + "; ".join(mismatch) + ". The file is readable and its data intact: a writer put "
                        "it there without following the table's schema (a schema problem, not a damaged file). "
                        "Rewrite those rows with the table's column types (or change the Silver column's type "
                        "with a schema change Delta allows), then restart: nothing was committed for this batch."
                    ) from None
                raise SourceError(
                    f"cannot read data file {uri} of Silver version {v}: it is corrupt or truncated "
                    f"({text.splitlines()[0] if text else type(file_err).__name__}). Restore the file and "
                    "restart: the query resumes from Gold's offsets and nothing was committed for this batch. "
                    "If it cannot be restored, start the query afresh from a later version (starting_version) "
                    "under a new query name or gold_path."
                ) from None
        log.debug("batch read failed but each file reads alone: %s", err)

    def _type_mismatches(self, f: AddedFile) -> list[str]:
        """The needed columns a data file stores at a type the reader cannot turn into the
        plan's, each as "column 'x' is <file type> in the file, <table type> in the table";
        [] when the file's footer cannot be read (then the file itself is damaged)."""
        assert self.plan is not None
        uri = self._file_uri(f)
        options = self.storage.polars_options(self.uri)
        try:
            stored = pl.scan_parquet(uri, storage_options=options, glob=False).collect_schema()
        except Exception as err:  # noqa: BLE001 - an unreadable footer: a damaged file
            if classify(err) is not None:
                raise
            return []
        out = []
        for c in self.plan.data_columns:
            if c.physical is None or c.physical not in stored or stored[c.physical] == c.dtype:
                continue
            try:
                pl.scan_parquet(uri, schema={c.physical: c.dtype}, missing_columns="insert", extra_columns="ignore",
                                cast_options=_CAST, glob=False, storage_options=options).head(1).collect()
            except pl.exceptions.SchemaError:
                out.append(f"column {c.name!r} is stored as {delta_type_name(stored[c.physical])} in the file, "
                           f"while the table's schema says {c.delta_type}")
        return out


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
