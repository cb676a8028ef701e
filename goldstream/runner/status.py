"""What a running pipeline reports about itself: one read-only snapshot.

The HTTP probes (in their own thread), the `status` command and the per-batch progress
records read these frozen values rather than the pipeline's live objects, so they never
see a half-updated query and never depend on how the pipeline is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class QueryStats:
    """Counters of one query since this process started (carried across rebuilds)."""

    commits_read: int = 0
    rows_in: int = 0
    rows_late: int = 0
    rows_null_time: int = 0
    rows_filtered: int = 0
    windows_emitted: int = 0
    gold_commits: int = 0
    skipped_change_commits: int = 0


@dataclass(frozen=True)
class QueryStatus:
    name: str
    app_id: str
    gold_uri: str
    committed: int  # Silver version processed through, as recorded in Gold (-1: none)
    processed: int  # Silver version processed through in memory
    watermark_us: int
    max_event_time_us: int | None
    state_rows: int
    state_bytes: int  # memory of the state frames (Polars' estimate)
    late_rows: int  # every late row so far, counted before this process too
    stats: QueryStats
    # Only when asked for (the `status` command): a pass over the state, a Gold log read.
    open_windows: int | None = None
    last_gold_commit_ms: int | None = None


@dataclass(frozen=True)
class PipelineStatus:
    ready: bool  # Silver and Gold reached, every query opened from its Gold offsets
    cursor: int  # next Silver version to read
    last_iteration: float  # time.monotonic() of the last sign of life of the loop
    queries: tuple[QueryStatus, ...]
    standby: str | None = None  # why this instance waits for another one that owns its Gold tables

    def rebuilding(self) -> list[str]:
        """Queries whose state is not yet rebuilt up to the Silver version Gold records:
        until then their open windows are incomplete, so lag and watermark mean little."""
        return [q.name for q in self.queries if self.cursor <= q.committed]


def fmt_us(us: int) -> str:
    """An event time (µs since the epoch) as shown in logs and summaries."""
    return pl.Series([us]).cast(pl.Datetime("us", "UTC")).dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ")[0]


def fmt_span_us(us: int) -> str:
    """A long span of time, rounded for a message: "3.2 h", "2,914,583.0 days"."""
    return f"{us / 86_400e6:,.1f} days" if us >= 86_400_000_000 else f"{us / 3_600e6:.1f} h"
