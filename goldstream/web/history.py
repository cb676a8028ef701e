"""Recent progress of each query, kept in memory for the status page.

A listener on the progress reporter keeps the last `KEEP` progress records of each query
(a few hundred batches draw a readable chart and cost well under a megabyte) and the
windows of the latest batch that closed any, so the page never reads Gold: the HTTP
threads only copy what the loop already produced, under one short lock.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

import polars as pl

from goldstream.config import QuerySpec

if TYPE_CHECKING:
    from goldstream.engine.state import StepResult

KEEP = 300  # progress records per query
TOP_WINDOWS = 20  # rows of the latest closed windows shown, highest first aggregate first


class ProgressHistory:
    """The last `keep` progress records per query, oldest first, and its latest closed windows."""

    def __init__(self, queries: Iterable[QuerySpec], keep: int = KEEP) -> None:
        self._queries = {q.name: q for q in queries}
        self._lock = threading.Lock()
        self._records: dict[str, deque[dict[str, Any]]] = {name: deque(maxlen=keep) for name in self._queries}
        self._windows: dict[str, dict[str, Any]] = {}

    def on_progress(self, record: dict[str, Any], result: StepResult) -> None:
        """A `ProgressReporter` listener: called after each batch of each query."""
        name = record["name"]
        if name not in self._queries:
            return
        public = {k: v for k, v in record.items() if not k.startswith("_")}  # as the log line holds it
        windows = latest_windows(self._queries[name], result.closed) if result.closed.height else None
        with self._lock:
            self._records[name].append(public)
            if windows is not None:
                self._windows[name] = windows

    def knows(self, query: str) -> bool:
        return query in self._queries

    def records(self, query: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records[query])

    def windows(self, query: str) -> dict[str, Any] | None:
        with self._lock:
            return self._windows.get(query)


def latest_windows(query: QuerySpec, closed: pl.DataFrame, top: int = TOP_WINDOWS) -> dict[str, Any]:
    """The windows with the latest end among `closed`, as JSON-ready columns and rows,
    the `top` highest by the query's first aggregate."""
    gold = query.gold_columns
    columns = [c for c in (gold.window_start, gold.window_end) if c] + [*gold.keys, *gold.values]
    end = gold.window_end or gold.window_start
    latest = (closed.filter(pl.col(end) == pl.col(end).max())
              .sort(gold.values[0], descending=True, nulls_last=True).head(top).select(columns))
    return {"columns": columns, "rows": [[_json_value(v) for v in row] for row in latest.iter_rows()]}


def _json_value(v: Any) -> Any:
    """A cell as strict JSON holds it: times in ISO 8601, NaN and infinities as text
    (a browser's JSON.parse refuses the bare tokens Python would write)."""
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v
