"""Reading Gold back: its rows, and the Silver version its `txn` action records as
processed (the offsets goldstream commits in the same Delta commit as the rows)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError


def read_gold(path: Path | str, storage_options: dict[str, str] | None = None) -> pl.DataFrame:
    return pl.from_arrow(DeltaTable(str(path), storage_options=storage_options).to_pyarrow_table())  # type: ignore[return-value]


def txn_version(gold_root: Path | str, query: str, app_id: str | None = None,
                storage_options: dict[str, str] | None = None) -> int | None:
    """The Silver version the table `<gold_root>/<query>` records as processed by `app_id`
    (default: goldstream's `goldstream-<query>`); None when there is no table or no txn."""
    try:
        table = DeltaTable(f"{gold_root}/{query}", storage_options=storage_options)
    except TableNotFoundError:
        return None
    v = table.transaction_version(app_id or f"goldstream-{query}")
    return None if v is None else int(v)
