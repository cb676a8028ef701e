"""Optional per-query Delta table of the rows the watermark dropped.

Each row keeps its Silver version and the end of the last window it missed. Written
before the Gold commit of the same batch, with its own `txn` (`<app>.late` = Silver
version written through); after a crash, rows of versions at or below it are not
written again, so the late table is exactly-once too. Only rows that every window
refused go here: with sliding windows a row late for some windows still counts in
the others and is not "dropped".
"""

from __future__ import annotations

import logging
import time
import uuid

import polars as pl
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from goldstream.columns import LATE_MISSED_WINDOW_END, LATE_VERSION, MISSED_WINDOW_END, VERSION
from goldstream.errors import OwnershipLost, SinkError
from goldstream.sink.gold import TAG, committed_with_tag
from goldstream.retry import classify
from goldstream.storage import Storage

log = logging.getLogger(__name__)


class LateSink:
    """Exactly-once under crashes and against a second instance: late rows are a function
    of Silver's history, so a row of version v is written iff v > the table's `txn`; the
    commit is made against the snapshot whose `txn` was checked (no retries, no rebase),
    and a `txn` moved by someone else means another instance owns the query (DESIGN §3)."""

    def __init__(self, uri: str, app_id: str, storage: Storage, query: str | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.app_id = f"{app_id}.late"
        self.query = query or app_id
        self.options = storage.delta_options(self.uri)
        self.dt: DeltaTable | None = None
        self._loaded_at = -1
        self._load()
        self.written_through = self._txn()

    def _load(self) -> None:
        try:
            self.dt = DeltaTable(self.uri, storage_options=self.options)
            self._loaded_at = self.dt.version()
        except TableNotFoundError:
            self.dt = None

    def _txn(self) -> int:
        v = None if self.dt is None else self.dt.transaction_version(self.app_id)
        return -1 if v is None else int(v)

    def _refresh(self) -> None:
        """Bring the snapshot up to date (a fresh load now and then: an ever-updated
        snapshot replays every commit since it was loaded, so commits would get slower)."""
        if self.dt is None or self.dt.version() - self._loaded_at >= 100:
            self._load()
        else:
            self.dt.update_incremental()

    def write(self, late: pl.DataFrame | None, through_version: int) -> int:
        """Append late rows of versions after what was already written; return rows written."""
        if late is None or late.height == 0:
            return 0
        rows = late.filter(pl.col(VERSION) > self.written_through)
        if rows.height == 0:
            return 0
        out = rows.drop([c for c in rows.columns if c.startswith("__") and c not in (VERSION, MISSED_WINDOW_END)])
        out = out.rename({VERSION: LATE_VERSION, MISSED_WINDOW_END: LATE_MISSED_WINDOW_END}).with_columns(
            pl.col(LATE_MISSED_WINDOW_END).cast(pl.Datetime("us", "UTC"))
        )
        data = out.to_arrow(compat_level=pl.CompatLevel.oldest())
        failed = False
        tag = uuid.uuid4().hex
        for attempt in range(10):
            self._refresh()
            current = self._txn()
            if failed and current == through_version and committed_with_tag(self.dt, tag):  # it did land
                self.written_through = through_version
                return out.height
            if current != self.written_through:
                raise OwnershipLost(
                    f"another instance owns query {self.query!r}: late table {self.uri} "
                    f"was written through Silver version {current}, but this instance last wrote "
                    f"{self.written_through}. Stopping without writing (no duplicate rows). "
                    "Run one instance per query."
                )
            props = CommitProperties(max_commit_retries=0, custom_metadata={TAG: tag}, app_transactions=[
                Transaction(self.app_id, through_version, int(time.time() * 1000))])
            if self.dt is None:
                # Create the table empty, then append against a loaded snapshot like any other
                # time: a write to a path would load its own snapshot, after our txn check,
                # and could append on top of a concurrent creator's rows.
                failure: Exception | None = None
                try:
                    DeltaTable.create(self.uri, data.schema, mode="ignore", storage_options=self.options,
                                      commit_properties=CommitProperties(max_commit_retries=0))
                except Exception as err:  # noqa: BLE001 - a concurrent creator: its table loads next
                    if classify(err) is not None:
                        raise  # a storage failure, not a lost race: retried or reported by the runner
                    failure = err
                self._load()
                if self.dt is None:
                    raise SinkError(f"cannot create the late table {self.uri} of query {self.query!r}: {failure}. "
                                    "Check late_sink and the storage credentials.")
                continue
            try:
                write_deltalake(self.dt, data, mode="append", commit_properties=props, schema_mode="merge")
            except CommitFailedError as err:
                log.info("late-sink commit to %s conflicted (%s); re-checking ownership", self.uri, err)
                failed = True
                time.sleep(min(0.05 * (attempt + 1), 0.5))
                continue
            self.written_through = through_version
            return out.height
        raise OwnershipLost(f"late table {self.uri} keeps changing under {self.app_id!r}; stopping")
