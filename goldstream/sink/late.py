"""Optional per-query Delta table of the rows the watermark dropped.

Each row keeps its Silver version and the end of the last window it missed. Written
before the Gold commit of the same batch, with its own `txn` (`<app>.late` = Silver
version written through); after a crash, rows of versions at or below it are not
written again, so the late table is exactly-once too. Only rows that every window
refused go here: with sliding windows a row late for some windows still counts in
the others and is not "dropped".
"""

from __future__ import annotations

import time

import polars as pl
from deltalake import Transaction

from goldstream.columns import LATE_MISSED_WINDOW_END, LATE_VERSION, MISSED_WINDOW_END, VERSION
from goldstream.errors import OwnershipLost
from goldstream.sink.committer import Committer, FenceMoved
from goldstream.storage import Storage


class LateSink:
    """Exactly-once under crashes and against a second instance: late rows are a function
    of Silver's history, so a row of version v is written iff v > the table's `txn`; that
    `txn` is the commit's fence, so one moved by someone else means another instance owns
    the query."""

    def __init__(self, uri: str, app_id: str, storage: Storage, query: str | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.app_id = f"{app_id}.late"
        self.query = query or app_id
        self.committer = Committer(self.uri, storage.delta_options(self.uri), f"late table {self.uri}",
                                   f"query {self.query!r}", merge_schema=True)
        self.committer.load()
        self._fence = self.committer.txns([self.app_id])  # the txn as last seen or written

    @property
    def written_through(self) -> int:
        """The Silver version through which late rows are in the table (-1: none yet)."""
        return _through(self._fence[self.app_id])

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
        if self.committer.dt is None and self.committer.load() is None:
            # Created empty, then appended to against a loaded snapshot like any other time:
            # a write to a path would load its own snapshot, after the fence was checked, and
            # could append on top of a concurrent creator's rows.
            self.committer.create(data.schema)
        txn = Transaction(self.app_id, through_version, int(time.time() * 1000))
        try:
            self.committer.commit(data, [txn], {}, self._fence)
        except FenceMoved as moved:
            raise OwnershipLost(
                f"another instance owns query {self.query!r}: late table {self.uri} "
                f"was written through Silver version {_through(moved.found[self.app_id])}, but this instance "
                f"last wrote {self.written_through}. Stopping without writing (no duplicate rows). "
                "Run one instance per query."
            ) from None
        self._fence = {self.app_id: through_version}
        return out.height


def _through(version: int | None) -> int:
    return -1 if version is None else version
