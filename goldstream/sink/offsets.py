"""What Gold remembers about the stream, as Delta `txn` actions.

A `txn` action holds (appId, version: long) and survives log cleanup and checkpoints,
so everything a restart needs is stored as one `txn` per field under the query's
application id:

    <app>               Silver version processed through (Spark's Delta sink keeps its batch id the same way)
    <app>.watermark     watermark in µs after that version
    <app>.low           lowest Silver version with a row still feeding an open window
    <app>.fingerprint   hash of the query definition
    <app>.lateRows      rows dropped as late so far (for status; counts survive restarts)
    <app>.start         the first Silver version the query read, as resolved when it started
    <app>.snapshot      1 if that version was read as the table's snapshot at it, else 0
    <app>.lowWatermark  the watermark before version `low`, for queries whose rebuild replays
                        the watermark from there (session windows); absent for the others

A query's start is resolved once ('latest' moves, a timestamp or 'earliest' depends on
what the log still holds) and recorded before any row is processed, so every later start
rebuilds from exactly the same input. Tables written before the start was recorded have
no `start`: they resume from their other offsets as before.

They are written in the same commit as the rows they account for, so Gold's rows and
offsets never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deltalake import Transaction

_FIELDS = ("watermark", "low", "fingerprint", "lateRows")
_START_FIELDS = ("start", "snapshot")
_LOW_WATERMARK = "lowWatermark"


@dataclass(frozen=True)
class Offsets:
    version: int
    watermark_us: int
    low_version: int
    fingerprint: int
    late_rows: int = 0  # rows dropped by the watermark so far (for status; survives restarts)
    start: int | None = None  # first Silver version read (None: a table from before it was recorded)
    snapshot: bool = False  # `start` was read as the table's snapshot at it
    low_watermark_us: int | None = None  # the watermark before `low_version`, if the query needs it
    # (table, Delta version) of each dimension a SQL query joins, as the last batch joined it:
    # a restart rebuilds the open windows joining these versions.
    dimensions: tuple[tuple[str, int], ...] = ()

    @staticmethod
    def txn_ids(app_id: str, dimensions: tuple[str, ...] = ()) -> list[str]:
        """The application ids of the `txn`s that hold the offsets of `app_id`."""
        return [app_id, *(f"{app_id}.{k}" for k in (*_FIELDS, *_START_FIELDS, _LOW_WATERMARK)),
                *(f"{app_id}.dim.{d}" for d in dimensions)]

    @classmethod
    def at_start(cls, start: int, snapshot: bool, watermark_us: int, fingerprint: int) -> Offsets:
        """The offsets of a query that has read nothing yet: it starts at `start`."""
        return cls(start - 1, watermark_us, start, fingerprint, start=start, snapshot=snapshot)

    def to_txns(self, app_id: str, now_ms: int) -> list[Transaction]:
        values = {"": self.version, "watermark": self.watermark_us, "low": self.low_version,
                  "fingerprint": self.fingerprint, "lateRows": self.late_rows}
        if self.start is not None:
            values |= {"start": self.start, "snapshot": int(self.snapshot)}
        if self.low_watermark_us is not None:
            values[_LOW_WATERMARK] = self.low_watermark_us
        values |= {f"dim.{name}": v for name, v in self.dimensions}
        return [Transaction(app_id + (f".{k}" if k else ""), v, now_ms) for k, v in values.items()]

    @classmethod
    def from_table(cls, dt: Any, app_id: str, dimensions: tuple[str, ...] = ()) -> Offsets | None:
        version = dt.transaction_version(app_id)
        if version is None:
            return None
        wm, low, fp, late = (dt.transaction_version(f"{app_id}.{k}") for k in _FIELDS)
        start, snapshot = (dt.transaction_version(f"{app_id}.{k}") for k in _START_FIELDS)
        low_wm = dt.transaction_version(f"{app_id}.{_LOW_WATERMARK}")
        return cls(int(version), int(wm or 0), int(low if low is not None else version + 1), int(fp or 0),
                   int(late or 0), None if start is None else int(start), bool(snapshot),
                   None if low_wm is None else int(low_wm),
                   tuple((d, int(v)) for d in dimensions
                         if (v := dt.transaction_version(f"{app_id}.dim.{d}")) is not None))
