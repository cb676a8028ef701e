"""Commit to a Delta table exactly once, fenced against a second writer.

delta-rs neither skips a commit whose `txn` was already committed nor checks that a
`txn` only grows, and with commit retries it rebases a losing commit onto the winner's.
So every commit here is made against a loaded snapshot, with no retries, after checking
on that very snapshot that the `txn` versions the writer last saw (its fence) are still
there: a fence moved by someone else means another instance owns the table, and the
writer stops instead of duplicating rows. A commit that fails without the fence moving
(an unrelated concurrent commit) is tried again after a backoff.

A failed commit may still have landed (an S3 response lost, the retried put answered
"already exists"). Each commit carries a tag in its commitInfo, and a failure is only
concluded after the recent history was searched for that tag.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from goldstream.errors import OwnershipLost, SinkError
from goldstream.retry import Backoff, classify

log = logging.getLogger(__name__)

TAG = "goldstream.commitTag"  # commitInfo key naming one commit attempt
ATTEMPTS = 10  # commits tried while the fence holds but other commits keep winning
RELOAD_EVERY = 100  # Delta's default checkpoint interval: a fresh load starts from a checkpoint
_TAG_LOOKBACK = 10  # latest commits searched for a tag: ours, if it landed, is among them

Fence = Mapping[str, int | None]
"""appId -> the `txn` version the table must hold for a commit to go ahead (None: no txn yet)."""


class FenceMoved(OwnershipLost):
    """The table's `txn`s are not the ones this writer last saw: someone else wrote them."""

    def __init__(self, what: str, found: dict[str, int | None]) -> None:
        super().__init__(f"another instance wrote {what} ({found}); stopping without writing")
        self.found = found


class Committer:
    """The fenced commits of one Delta table. `what` names the table in messages
    ("Gold table s3://...") and `owner` who writes it ("query 'x'")."""

    def __init__(self, uri: str, options: dict[str, str], what: str, owner: str, merge_schema: bool = False) -> None:
        self.uri = uri
        self.options = options
        self.what = what
        self.owner = owner
        self.merge_schema = merge_schema  # let an append add columns (the late table follows Silver's)
        self.dt: DeltaTable | None = None
        self.loaded_version = -1  # version of the last full load (see refresh)

    def load(self) -> DeltaTable | None:
        """A fresh snapshot of the table, or None if it does not exist yet."""
        try:
            self.dt = DeltaTable(self.uri, storage_options=self.options)
        except TableNotFoundError:
            self.dt = None
            return None
        self.loaded_version = self.dt.version()
        return self.dt

    def create(self, schema: pa.Schema, name: str | None = None, description: str | None = None) -> DeltaTable:
        """Create the table empty, or load the one a concurrent creator made first."""
        try:
            # No commit retries: with them, delta-rs rebases a losing concurrent create into
            # version 1 (a second CREATE TABLE, possibly of another definition) instead of failing.
            DeltaTable.create(self.uri, schema, mode="error", name=name, description=description,
                              storage_options=self.options, commit_properties=CommitProperties(max_commit_retries=0))
            failure: Exception | None = None
        except Exception as err:  # noqa: BLE001 - a concurrent creator won: use its table
            if classify(err) is not None:
                raise  # a storage failure, not a lost race: retried or reported by the runner
            failure = err
        dt = self.load()
        if dt is None:
            raise SinkError(f"cannot create the {self.what} of {self.owner}: {failure}. "
                            "Check its path and the storage credentials.")
        return dt

    def refresh(self) -> None:
        """Bring the snapshot to the latest version. An incrementally updated snapshot keeps
        every commit since it was loaded (a commit got ~6x slower after 1,000 of them), so
        every RELOAD_EVERY versions it is loaded afresh, from the latest checkpoint."""
        if self.dt is None or self.dt.version() - self.loaded_version >= RELOAD_EVERY:
            self.load()
        else:
            self.dt.update_incremental()

    def txns(self, app_ids: Iterable[str]) -> dict[str, int | None]:
        """The `txn` versions of the current snapshot (None: none, or no table)."""
        dt = self.dt
        return {a: None if dt is None else _int_or_none(dt.transaction_version(a)) for a in app_ids}

    def landed(self, tag: str) -> bool:
        """Whether one of the latest commits is the one tagged `tag` (another instance
        committing the very same `txn`s is not us: it owns the table)."""
        return self.dt is not None and any(h.get(TAG) == tag for h in self.dt.history(_TAG_LOOKBACK))

    def commit(self, data: pa.Table, txns: list[Transaction], metadata: Mapping[str, str],
               expected_fence: Fence) -> None:
        """Append `data` with `txns` in one commit, made only on a snapshot that holds
        `expected_fence`; raise FenceMoved if it does not, OwnershipLost if other commits
        keep winning."""
        tag = uuid.uuid4().hex
        props = CommitProperties(custom_metadata={**metadata, TAG: tag}, max_commit_retries=0, app_transactions=txns)
        ours = {t.app_id: t.version for t in txns}
        backoff = Backoff(initial_s=0.05, max_s=1.0)
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(backoff.next_delay() or 0.0)
            self.refresh()
            found = self.txns([*expected_fence, *ours])
            if attempt and all(found[a] == v for a, v in ours.items()) and self.landed(tag):
                log.info("%s commit reported a failure but is in the log; continuing", self.what)
                return
            if any(found[a] != v for a, v in expected_fence.items()):
                raise FenceMoved(self.what, found)
            try:
                self._append(data, props)
            except CommitFailedError as err:
                log.info("%s commit conflicted (%s); re-checking the fence", self.what, err)
                continue
            return
        raise OwnershipLost(f"{self.what} keeps changing under {self.owner}; stopping")

    def _append(self, data: pa.Table, props: CommitProperties) -> None:
        assert self.dt is not None, "load() or create() first"
        write_deltalake(self.dt, data, mode="append", commit_properties=props,
                        schema_mode="merge" if self.merge_schema else None)


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)
