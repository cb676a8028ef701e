"""What Gold remembers about the stream, as Delta `txn` actions.

A `txn` action holds (appId, version: long) and survives log cleanup and checkpoints,
so everything a restart needs is stored as one `txn` per field under the query's
application id:

    <app>               Silver version processed through (Spark's Delta sink keeps its batch id the same way)
    <app>.watermark     watermark in µs after that version
    <app>.low           lowest Silver version with a row still feeding an open window
    <app>.fingerprint   hash of the query definition
    <app>.lateRows      rows dropped as late so far (for status; counts survive restarts)

They are written in the same commit as the rows they account for, so Gold's rows and
offsets never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deltalake import Transaction

_FIELDS = ("watermark", "low", "fingerprint", "lateRows")


@dataclass(frozen=True)
class Offsets:
    version: int
    watermark_us: int
    low_version: int
    fingerprint: int
    late_rows: int = 0  # rows dropped by the watermark so far (for status; survives restarts)

    @staticmethod
    def txn_ids(app_id: str) -> list[str]:
        """The application ids of the `txn`s that hold the offsets of `app_id`."""
        return [app_id, *(f"{app_id}.{k}" for k in _FIELDS)]

    def to_txns(self, app_id: str, now_ms: int) -> list[Transaction]:
        values = {"": self.version, "watermark": self.watermark_us, "low": self.low_version,
                  "fingerprint": self.fingerprint, "lateRows": self.late_rows}
        return [Transaction(app_id + (f".{k}" if k else ""), v, now_ms) for k, v in values.items()]

    @classmethod
    def from_table(cls, dt: Any, app_id: str) -> Offsets | None:
        version = dt.transaction_version(app_id)
        if version is None:
            return None
        wm, low, fp, late = (dt.transaction_version(f"{app_id}.{k}") for k in _FIELDS)
        return cls(int(version), int(wm or 0), int(low if low is not None else version + 1), int(fp or 0),
                   int(late or 0))
