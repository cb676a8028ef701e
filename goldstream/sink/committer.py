"""Commit to a Delta table exactly once, fenced against a second writer and against
changes made behind the owner's back.

delta-rs neither skips a commit whose `txn` was already committed nor checks that a
`txn` only grows, and with commit retries it rebases a losing commit onto the winner's.
So every commit here is made against a loaded snapshot, with no retries, after checking
on that very snapshot that the `txn` versions the writer last saw (its fence) are still
there. A commit that fails without the fence moving (an unrelated concurrent commit) is
tried again after a backoff.

A failed commit may still have landed (an S3 response lost, the retried put answered
"already exists", or a put that lands after the client gave up). Each commit carries a
tag in its commitInfo, and a moved fence is explained from the log, every commit since
the snapshot the attempt was made against: our tag means it landed; a tag of an
earlier attempt of this process whose outcome was unknown means that one landed late
(the state is rebuilt from the table, as after any storage failure); only a commit
tagged by no attempt of ours is another instance.

The owner also audits every commit it did not write (its commitInfo names no appId of
ours), incrementally from the last version audited, at open and before each commit: one
that removes data, changes the metadata or the protocol, carries our `txn` appIds
(forged offsets), marks as dataChange = false adds and removes that do not hold the same
number of rows, or (unless allowed) appends rows; a commit file missing since the last
audit (a gap no audit can see through); and a table deleted or replaced under it, stop
the query: building on a table someone else changed would silently lose or duplicate rows.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import polars as pl
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction

from goldstream.errors import OwnershipLost, SinkError, TransientStorageError
from goldstream.retry import Backoff, classify
from goldstream.sink import retention
from goldstream.sink.history import DeltaLog, LogCommit
from goldstream.storage import Storage

log = logging.getLogger(__name__)

TAG = "goldstream.commitTag"  # commitInfo key naming one commit attempt
APP_ID = "goldstream.appId"  # commitInfo key naming the application that wrote a commit
ATTEMPTS = 10  # commits tried while the fence holds but other commits keep winning
RELOAD_EVERY = 100  # Delta's default checkpoint interval: a fresh load starts from a checkpoint
# After each commit delta-rs writes the checkpoint the table's interval calls for, and, by
# default, deletes expired log files, which lists the whole _delta_log on every commit: 2 s
# per commit after a month of one commit a minute. Log cleanup is maintenance's (fenced, once
# per round, `TableMaintenance.clean_log`), so commits leave it out.
HOOKS = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)

Fence = Mapping[str, int | None]
"""appId -> the `txn` version the table must hold for a commit to go ahead (None: no txn yet)."""

# Tags of this process's commit attempts whose outcome is unknown (the write raised a
# storage error): such a commit may land after the process rebuilt its sinks, and is
# then this process's own commit, not another instance's.
_UNCERTAIN: set[str] = set()


class FenceMoved(OwnershipLost):
    """The table's `txn`s are not the ones this writer last saw: someone else wrote them
    (`by` is that commit)."""

    def __init__(self, what: str, found: dict[str, int | None], by: LogCommit) -> None:
        super().__init__(f"another instance wrote {what} at version {by.version} ({found}); stopping without writing")
        self.found = found
        self.by = by


class Tampered(SinkError):
    """Another writer changed a table goldstream owns in a way it cannot build on."""


class _KeptChanging(OwnershipLost):
    """Other commits won every attempt: for a Gold commit, someone else is writing."""


class _Superseded(Exception):
    """A file a compaction was to replace is no longer in the table."""


class LandedLate(TransientStorageError):
    """An earlier commit of this process whose outcome was unknown is in the table after
    all: the state must be rebuilt from the table, as after any storage failure."""


class Committer:
    """The fenced, audited commits of one Delta table. `what` names the table in messages
    ("Gold table s3://..."), `owner` who writes it ("query 'x'"), `app_id` the application
    whose commits are its own (with `own_txns`, the `txn` ids its commits write);
    `foreign_appends` is None when appends by other writers are refused, else the log
    line that accepts them."""

    def __init__(self, uri: str, storage: Storage, what: str, owner: str, app_id: str, own_txns: Iterable[str],
                 merge_schema: bool = False, foreign_appends: str | None = None, remedy: str = "") -> None:
        self.uri = uri
        self.options = storage.delta_options(uri)
        self.what = what
        self.owner = owner
        self.app_id = app_id
        self.own_txns = frozenset(own_txns)
        self.merge_schema = merge_schema  # let an append add columns (the late table follows Silver's)
        self.foreign_appends = foreign_appends
        self.remedy = remedy  # what to do when someone else removed or rewrote rows
        self.log = DeltaLog(uri, storage)
        self.dt: DeltaTable | None = None
        self.loaded_version = -1  # version of the last full load (see refresh)
        self._table_id: str | None = None
        self._anchor: tuple[int, str] | None = None  # (version, identity) of the last commit audited
        self._fence_read_at = -1  # version whose `txn`s were last read (-1: no table then)
        self.created = False  # the last create() made the table (False: a concurrent creator did)

    # -- loading --------------------------------------------------------------------------

    def load(self) -> DeltaTable | None:
        """A fresh snapshot of the table, or None if it does not exist yet."""
        try:
            self.dt = DeltaTable(self.uri, storage_options=self.options)
        except TableNotFoundError:
            self.dt = None
            return None
        except Exception as err:  # noqa: BLE001 - storage failures go on; anything else is a damaged log
            if classify(err) is not None:
                raise
            raise SinkError(
                f"cannot read the {self.what}: {str(err).strip().splitlines()[0]}. A commit file in its "
                "_delta_log is damaged (truncated or not Delta JSON: a partial upload, a full disk, a disk "
                "error). Restore that file (from a backup or the object store's versioning) and run again; "
                f"if the table is yours to discard, point {self.owner} at a new path. Nothing was written."
            ) from None
        return self._loaded(self.dt)

    def _loaded(self, dt: DeltaTable) -> DeltaTable:
        self.dt = dt
        self.loaded_version = dt.version()
        self._table_id = self._table_id or dt.metadata().id
        return dt

    def create(self, schema: Any, name: str | None = None, description: str | None = None,
               txns: list[Transaction] | None = None, metadata: Mapping[str, str] | None = None) -> DeltaTable:
        """Create the table empty (`schema`: an Arrow schema, e.g. `sink.schema.arrow_schema`),
        or load the one a concurrent creator made first (`created` tells which). No table
        property is set: in particular none that would expire the `txn` offsets. `txns`
        (with `metadata`) are written by the create itself, as this application's commit."""
        props = CommitProperties(max_commit_retries=0)
        if txns:
            props = CommitProperties(custom_metadata={**(metadata or {}), APP_ID: self.app_id, TAG: uuid.uuid4().hex},
                                     max_commit_retries=0, app_transactions=txns)
        self.created = False
        try:
            # No commit retries: with them, delta-rs rebases a losing concurrent create into
            # version 1 (a second CREATE TABLE, possibly of another definition) instead of failing.
            created = DeltaTable.create(self.uri, schema, mode="error", name=name, description=description,
                                        storage_options=self.options, commit_properties=props)
        except Exception as err:  # noqa: BLE001 - a concurrent creator won: use its table
            if classify(err) is not None:
                raise  # a storage failure, not a lost race: retried or reported by the runner
            failure = err
        else:
            self.created = True
            return self._loaded(created)  # the snapshot of our own create: no need to load it again
        dt = self.load()
        if dt is None:
            raise SinkError(f"cannot create the {self.what} of {self.owner}: {failure}. "
                            "Check its path and the storage credentials.")
        return dt

    def refresh(self) -> int:
        """Bring the snapshot to the latest version, audit what others committed since the
        last audit, and return the version. An incrementally updated snapshot keeps every
        commit since it was loaded (a commit got ~6x slower after 1,000 of them), so every
        RELOAD_EVERY versions it is loaded afresh, from the latest checkpoint."""
        if self.dt is None or self.dt.version() - self.loaded_version >= RELOAD_EVERY:
            self.load()
        else:
            try:
                self.dt.update_incremental()
            except Exception as err:  # noqa: BLE001 - e.g. a log now older than the snapshot
                if classify(err) is not None:
                    raise
                self.load()
        self._check_anchor()
        assert self.dt is not None
        self.audit(self._anchor[0] if self._anchor else self.dt.version(), self.dt.version())
        return self.dt.version()

    # -- ownership ------------------------------------------------------------------------

    def is_own(self, c: LogCommit) -> bool:
        """Written by this application (any instance of it): its commitInfo says so. A `txn`
        of ours alone proves nothing: any writer can put one in its commit."""
        return c.info.get(APP_ID) == self.app_id

    def start_audit(self, resume: bool) -> None:
        """At open: with `resume`, audit every commit after this application's last one,
        read back from the latest; a commit file missing before one of ours is found is a
        gap no audit can see through. Then watch from the current version."""
        assert self.dt is not None
        latest = self.dt.version()
        if resume:
            foreign: list[LogCommit] = []
            gap = None
            for v in range(latest, -1, -1):
                c = self.log.commit(v)
                if c is None:
                    gap = v
                    break
                if self.is_own(c):
                    break
                foreign.append(c)
            self._audit(reversed(foreign))
            if gap is not None:
                self._refuse_gap(gap, latest)
        self._anchor = None
        self._set_anchor(latest)

    def audit(self, after: int, through: int) -> None:
        """Check the commits in (after, through]; the last one becomes the anchor. Only the
        commits since the last audit are read: the audit is incremental."""
        if through > after:
            commits = self.log.every_commit(after, through)
            self._audit(c for c in commits if c is not None)
            missing = next((after + 1 + i for i, c in enumerate(commits) if c is None), None)
            if missing is not None:
                self._refuse_gap(missing, through)
            self._set_anchor(through)

    def _refuse_gap(self, version: int, latest: int) -> None:
        raise Tampered(
            f"{self.what} has a gap at version {version} (_delta_log/{version:020d}.json is missing from its log) "
            f"that {self.owner} has not audited (the table is at version {latest}; the last commit "
            f"it audited or wrote is older). Someone removed a commit written by someone else, so what it did to the "
            f"rows (a DELETE, an overwrite) cannot be known. {self.owner} stops rather than build on rows that may "
            f"be gone or duplicated. Restore that commit file (object-store versioning, a backup) and restart; "
            f"else rebuild this table from Silver under a new gold_path. {self.remedy}".rstrip())

    def _audit(self, commits: Iterable[LogCommit]) -> None:
        for c in commits:
            if self.is_own(c):
                continue
            found = []
            forged = sorted(self.own_txns & c.txns.keys())
            if forged:
                found.append(f"carries the offsets (txn) of application {', '.join(forged)}, which only "
                             f"{self.owner} writes (they now claim progress it did not make)")
            if c.removed:
                found.append(f"removed {c.removed} data file(s) with their rows")
            unconserved = self._unconserved(c)
            if unconserved:
                found.append(unconserved)
            if c.metadata:
                found.append("changed the table's metadata (schema, description or properties)")
            if c.protocol:
                found.append("changed the table's protocol")
            if found:
                raise Tampered(
                    f"{self.what} was changed by another writer at version {c.version} ({c.operation}): it "
                    f"{' and '.join(found)}. {self.owner} owns this table and stops rather than build on rows "
                    f"it did not write or that are gone. {self.remedy}".rstrip())
            if c.added and self.foreign_appends is None:
                raise Tampered(
                    f"{self.what} has rows appended by another writer at version {c.version} ({c.operation}, "
                    f"{c.added} file(s), application {c.info.get(APP_ID) or 'unknown'}). {self.owner} owns this "
                    f"table and stops rather than mix its rows with someone else's. {self.remedy}".rstrip())
            if c.added:
                log.info("%s: version %d (%s) appended by another writer; %s", self.what, c.version, c.operation,
                         self.foreign_appends)

    def _unconserved(self, c: LogCommit) -> str | None:
        """What a commit's dataChange = false actions did to the rows when they do not
        conserve them (a compaction adds exactly the rows it removes), else None. Row counts
        come from the actions' stats, else from the files' Parquet footers."""
        if not c.quiet_adds and not c.quiet_removes:
            return None
        counts = [[n if n is not None else self.log.file_rows(path) for path, n in files]
                  for files in (c.quiet_adds, c.quiet_removes)]
        adds, removes = (len(files) for files in (c.quiet_adds, c.quiet_removes))
        if any(n is None for files in counts for n in files):
            return (f"added {adds} and removed {removes} data file(s) marked dataChange = false (a claim that no "
                    "row changed) whose row counts cannot be verified (no numRecords, file gone)")
        added, removed = (sum(files) for files in counts)  # type: ignore[arg-type]
        if added == removed:
            return None
        return (f"added {adds} data file(s) holding {added} row(s) and removed {removes} holding {removed} row(s), "
                f"all marked dataChange = false, a claim that no row changed: they do not conserve rows "
                f"({added - removed:+d} rows, {'duplicated' if added > removed else 'lost'})")

    def _set_anchor(self, version: int, identity: str | None = None) -> None:
        if identity is None:
            c = self.log.commit(version)
            identity = "" if c is None else _identity(c)
        self._anchor = (version, identity)

    def _check_anchor(self) -> None:
        """The last commit audited must still be there, the same: else the table was deleted
        or replaced (a new table at the same path) under the owner."""
        if self._anchor is None:
            return
        version, identity = self._anchor
        c = self.log.commit(version)
        if c is not None and (not identity or _identity(c) == identity):
            return
        dt = self.load()
        if dt is None:
            raise Tampered(f"{self.what} was deleted while {self.owner} was writing it (its commit {version} is "
                           f"gone). {self.remedy}".rstrip())
        if dt.metadata().id != self._table_id or dt.version() < version or c is not None:
            raise Tampered(f"{self.what} was replaced by another table while {self.owner} was writing it (now at "
                           f"version {dt.version()}, table id {dt.metadata().id}; {self.owner} wrote version "
                           f"{version} of table id {self._table_id}). {self.remedy}".rstrip())
        self._anchor = (version, "")  # removed by log cleanup: the table itself is the same

    def keep_offsets(self, repair: bool) -> str | None:
        """Make sure the table's `txn` offsets cannot expire (see `retention`): raise a
        retention that could expire them (unless `repair` is False: then only say so).
        Returns the retention found if it could expire them."""
        assert self.dt is not None
        value = retention.expiring(self.dt.metadata().configuration)
        if value is None:
            return None
        if not repair:
            log.warning("%s sets %s = %r: offsets older than that are hidden; the next run repairs it",
                        self.what, retention.PROPERTY, value)
            return value
        self.set_properties({retention.PROPERTY: retention.NEVER})
        log.warning("%s set %s = %r, which hides the offsets of %s after that long without a commit: set it to %r "
                    "so that they never expire", self.what, retention.PROPERTY, value, self.owner, retention.NEVER)
        return value

    def set_properties(self, properties: dict[str, str]) -> None:
        """Set table properties in a commit of this application's (one no audit stops at)."""
        assert self.dt is not None
        self.dt.alter.set_table_properties(properties, commit_properties=self._housekeeping())
        self.load()

    def set_description(self, description: str) -> None:
        assert self.dt is not None
        self.dt.alter.set_table_description(description, commit_properties=self._housekeeping())
        self.load()

    def housekeep(self, action: str, write: Callable[[DeltaTable, CommitProperties], object],
                  metadata: Mapping[str, str] | None = None) -> bool:
        """One commit that changes the table but not its rows (a property, a vacuum), own and
        tagged, on the current snapshot and never retried: when it loses a race with another
        commit it changed nothing, this returns False and the next maintenance round does it."""
        assert self.dt is not None
        try:
            write(self.dt, self._housekeeping(metadata))
        except CommitFailedError as err:
            log.info("%s: %s given up (%s); the next round does it", self.what, action, err)
            return False
        self.load()
        return True

    def _housekeeping(self, metadata: Mapping[str, str] | None = None) -> CommitProperties:
        """Properties of a commit that changes the table but not its rows (own, tagged)."""
        return CommitProperties(custom_metadata={**(metadata or {}), APP_ID: self.app_id, TAG: uuid.uuid4().hex},
                                max_commit_retries=0)

    # -- committing -----------------------------------------------------------------------

    def txns(self, app_ids: Iterable[str]) -> dict[str, int | None]:
        """The `txn` versions of the current snapshot (None: none, or no table)."""
        dt = self.dt
        self._fence_read_at = -1 if dt is None else dt.version()
        return {a: None if dt is None else _int_or_none(dt.transaction_version(a)) for a in app_ids}

    def landed(self, tag: str, since: int) -> LogCommit | None:
        """The commit tagged `tag` among all versions after `since` (None: not there)."""
        assert self.dt is not None
        return next((c for c in self.log.commits(since, self.dt.version()) if c.info.get(TAG) == tag), None)

    def commit(self, data: pl.DataFrame, txns: list[Transaction], metadata: Mapping[str, str],
               expected_fence: Fence) -> None:
        """Append `data` with `txns` in one commit, made only on a snapshot that holds
        `expected_fence`; raise FenceMoved if another writer moved it, OwnershipLost if
        other commits keep winning, Tampered if the table was changed behind our back."""
        tag = uuid.uuid4().hex
        props = CommitProperties(custom_metadata={**metadata, APP_ID: self.app_id, TAG: tag}, max_commit_retries=0,
                                 app_transactions=txns)
        self._fenced(tag, expected_fence, {t.app_id: t.version for t in txns}, lambda: self._append(data, props))

    def rewrite(self, adds: list[AddAction], removes: list[RemoveAction], metadata: Mapping[str, str],
                expected_fence: Fence) -> bool:
        """Replace the files of `removes` by those of `adds`, which hold the same rows, in one
        commit with dataChange = false and no `txn` (a compaction: readers see no change,
        the offsets stay where they are), under the same fence as `commit`. Returns False,
        having written nothing, when a file to remove is gone from the latest snapshot
        (another compaction got there first) or other commits keep winning."""
        tag = uuid.uuid4().hex
        props = CommitProperties(custom_metadata={**metadata, APP_ID: self.app_id, TAG: tag, "isBlindAppend": False},
                                 max_commit_retries=0)
        paths = {r.path for r in removes}

        def write() -> None:
            assert self.dt is not None
            if not paths <= self.active_paths():
                raise _Superseded
            self.dt.create_write_transaction([*adds, *removes], mode="append", schema=self.dt.schema(),
                                             commit_properties=props, post_commithook_properties=HOOKS)

        try:
            self._fenced(tag, expected_fence, {}, write)
        except (_Superseded, _KeptChanging) as why:
            log.info("%s: compaction of %d file(s) given up (%s); nothing was written", self.what, len(removes),
                     "another compaction replaced them" if isinstance(why, _Superseded) else "commits kept winning")
            return False
        return True

    def check_fence(self, expected_fence: Fence) -> None:
        """Refresh and raise FenceMoved (or OwnershipLost) unless the snapshot still holds
        `expected_fence`: housekeeping that writes no rows is done by the owner only."""
        base = self._fence_read_at
        self.refresh()
        found = self.txns(expected_fence)
        if any(found[a] != v for a, v in expected_fence.items()):
            self._explain_moved_fence(uuid.uuid4().hex, base, expected_fence, {}, found)

    def active_paths(self) -> set[str]:
        """The data files of the current snapshot, as its `add` actions name them."""
        assert self.dt is not None
        return set(pl.DataFrame(self.dt.get_add_actions())["path"].to_list())

    def _fenced(self, tag: str, expected_fence: Fence, ours: Mapping[str, int], write: Callable[[], None]) -> None:
        """Run `write` (one commit tagged `tag`, writing the `txn`s `ours`) on a fresh
        snapshot that holds `expected_fence`, again after a backoff when an unrelated
        commit won the race."""
        backoff = Backoff(initial_s=0.05, max_s=1.0)
        # the fence was last read here: whatever moved it since is in the commits after it
        base = self._fence_read_at
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(backoff.next_delay() or 0.0)
            version = self.refresh()
            found = self.txns([*expected_fence, *ours])
            if any(found[a] != v for a, v in expected_fence.items()):
                self._explain_moved_fence(tag, base, expected_fence, ours, found)
                return  # it was ours
            try:
                write()
            except CommitFailedError as err:
                log.info("%s commit conflicted (%s); re-checking the fence", self.what, err)
                continue
            except Exception as err:
                _UNCERTAIN.add(tag)  # it may still land: then it is ours (see _explain_moved_fence)
                if classify(err) is None:
                    self._check_anchor()  # a table deleted or replaced since the refresh
                raise
            self._set_anchor(version + 1, tag)
            self._fence_read_at = version + 1
            return
        raise _KeptChanging(f"{self.what} keeps changing under {self.owner}; stopping")

    def _explain_moved_fence(self, tag: str, base: int, expected: Fence, ours: Mapping[str, int],
                             found: dict[str, int | None]) -> None:
        """The fence is not what this writer expects: find out from the log who moved it.
        Returns if it is this very commit, landed although its attempt reported a failure."""
        assert self.dt is not None
        mine = self.landed(tag, base)
        movers = [c for c in self.log.commits(base, self.dt.version()) if expected.keys() & c.txns.keys()]
        last = movers[-1] if movers else None
        if mine is not None and mine == last and all(found[a] == v for a, v in ours.items()):
            log.info("%s commit reported a failure but is in the log (version %d); continuing", self.what, mine.version)
            self._set_anchor(mine.version, tag)
            return
        if last is not None and last.info.get(TAG) in _UNCERTAIN:
            raise LandedLate(f"an earlier commit of {self.owner} to {self.what} whose outcome was unknown landed "
                             f"after all (version {last.version}); resuming from what the table records")
        if last is not None:
            raise FenceMoved(self.what, found, last)
        expiry = self.dt.metadata().configuration.get(retention.PROPERTY)
        why = f"they expired ({retention.PROPERTY} = {expiry!r})" if expiry else "the log was rewritten"
        raise SinkError(
            f"the offsets of {self.owner} in {self.what} changed from {dict(expected)} to {found} although no commit "
            f"since version {base} wrote them: {why}. Restart the query: it keeps offsets from expiring and resumes "
            "from them if they are still in the log.")

    def _append(self, data: pl.DataFrame, props: CommitProperties) -> None:
        assert self.dt is not None, "load() or create() first"
        write_deltalake(self.dt, data, mode="append", commit_properties=props, post_commithook_properties=HOOKS,
                        schema_mode="merge" if self.merge_schema else None)


def _identity(c: LogCommit) -> str:
    return str(c.info.get(TAG) or c.digest)


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)
