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
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from goldstream.engine.state import VERSION
from goldstream.storage import Storage


class LateSink:
    def __init__(self, uri: str, app_id: str, storage: Storage) -> None:
        self.uri = uri.rstrip("/")
        self.app_id = f"{app_id}.late"
        self.options = storage.delta_options(self.uri)
        self.written_through = -1
        try:
            dt = DeltaTable(self.uri, storage_options=self.options)
            v = dt.transaction_version(self.app_id)
            self.written_through = -1 if v is None else int(v)
        except TableNotFoundError:
            pass

    def write(self, late: pl.DataFrame | None, through_version: int) -> int:
        """Append late rows of versions after what was already written; return rows written."""
        if late is None or late.height == 0:
            return 0
        rows = late.filter(pl.col(VERSION) > self.written_through)
        if rows.height == 0:
            return 0
        out = rows.drop([c for c in rows.columns if c.startswith("__") and c not in (VERSION, "__missed_window_end")])
        out = out.rename({VERSION: "silver_version", "__missed_window_end": "missed_window_end"}).with_columns(
            pl.col("missed_window_end").cast(pl.Datetime("us", "UTC"))
        )
        props = CommitProperties(app_transactions=[Transaction(self.app_id, through_version, int(time.time() * 1000))])
        write_deltalake(self.uri, out.to_arrow(compat_level=pl.CompatLevel.oldest()), mode="append",
                        storage_options=self.options, commit_properties=props, schema_mode="merge")
        self.written_through = through_version
        return out.height
