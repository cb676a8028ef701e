"""Optional per-query Delta table of the rows the watermark dropped.

Each row keeps its Silver version and the end of the last window it missed. Written
before the Gold commit of the same batch, with its own `txn` (`<app>.late` = Silver
version written through); after a crash, rows of versions at or below it are not
written again, so the late table is exactly-once too. Only rows that every window
refused go here: with sliding windows a row late for some windows still counts in
the others and is not "dropped".
"""

from __future__ import annotations

import json
import logging
import time

import polars as pl
from deltalake import DeltaTable, Transaction

from goldstream.columns import LATE_MISSED_WINDOW_END, LATE_VERSION, MISSED_WINDOW_END, VERSION
from goldstream.errors import OwnershipLost, SinkError
from goldstream.sink.committer import Committer, FenceMoved
from goldstream.sink.definition import recorded_definition
from goldstream.sink.schema import arrow_schema
from goldstream.storage import Storage

log = logging.getLogger(__name__)

_DESCRIPTION_PREFIX = "goldstream late rows of "


class LateSink:
    """Exactly-once under crashes and against a second instance: late rows are a function
    of Silver's history, so a row of version v is written iff v > the table's `txn`; that
    `txn` is the commit's fence, so one moved by someone else means another instance owns
    the query."""

    def __init__(self, uri: str, app_id: str, storage: Storage, query: str | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.app_id = f"{app_id}.late"
        self.query = query or app_id
        self.committer = Committer(
            self.uri, storage, f"late table {self.uri}", f"query {self.query!r}", self.app_id, [self.app_id],
            merge_schema=True,
            remedy="If that was a mistake, restore the table to the version before it (Delta RESTORE) and restart; "
                   "otherwise point late_sink at a new path.")
        dt = self.committer.load()
        if dt is not None:
            self._check_owner(dt)
            self.committer.keep_offsets(repair=True)
        self._fence = self.committer.txns([self.app_id])  # the txn as last seen or written
        if dt is not None:
            self.committer.start_audit(resume=self._fence[self.app_id] is not None)

    def _description(self) -> str:
        return _DESCRIPTION_PREFIX + json.dumps({"appId": self.app_id, "query": self.query}, sort_keys=True)

    def _check_owner(self, dt: DeltaTable) -> None:
        """Accept only this query's late table; adopt one an earlier goldstream left untagged."""
        desc = dt.metadata().description or ""
        if desc.startswith(_DESCRIPTION_PREFIX):
            owner = _parse(desc[len(_DESCRIPTION_PREFIX):]).get("appId")
            if owner == self.app_id:
                return
            raise SinkError(
                f"late table {self.uri} of query {self.query!r} holds the late rows of application id {owner!r}, "
                f"not {self.app_id!r}: point late_sink at a path of its own.")
        refusal = (f"late table {self.uri} of query {self.query!r} is not a goldstream late table: it "
                   "{}. goldstream refuses to write late rows into it; point late_sink at a new path.")
        if recorded_definition(dt) is not None:
            raise SinkError(refusal.format("is the Gold table of a goldstream query"))
        columns = {f.name for f in dt.schema().fields}
        if not {LATE_VERSION, LATE_MISSED_WINDOW_END} <= columns:
            raise SinkError(refusal.format(f"has no {LATE_VERSION}/{LATE_MISSED_WINDOW_END} columns (is it Silver, "
                                           "or another tool's table?)"))
        if dt.transaction_version(self.app_id) is None and dt.version() > 0:
            raise SinkError(refusal.format(f"holds late rows, but none of application id {self.app_id!r} (another "
                                           "query's late table?)"))
        self.committer.set_description(self._description())
        log.warning("late table %s of query %r was created by an earlier goldstream without its owner's tag: "
                    "adopted (description set)", self.uri, self.query)

    @property
    def fence(self) -> dict[str, int | None]:
        """The `txn` as this instance last saw or wrote it: its maintenance is fenced by it too."""
        return dict(self._fence)

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
        data = out
        if self.committer.dt is None and self.committer.load() is None:
            # Created empty, then appended to against a loaded snapshot like any other time:
            # a write to a path would load its own snapshot, after the fence was checked, and
            # could append on top of a concurrent creator's rows.
            self.committer.create(arrow_schema(data.schema), description=self._description())
            self.committer.start_audit(resume=False)
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


def _parse(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _through(version: int | None) -> int:
    return -1 if version is None else version
