"""Opt-in guard against event times in the far future (`max_event_time_skew`).

One row stamped years ahead (a broken device clock, a unit error) moves Spark's
watermark years ahead and makes every later row late. With a skew bound, a row whose
event time is more than the bound ahead of the moment its Silver commit was written is
refused instead: counted as late, sent to the late sink, and it neither counts in a
window nor moves the watermark. This is a documented departure from Spark.

The reference is the commit's own timestamp (`COMMIT_MS`, taken from the Delta log),
not the wall clock of the reading process: a replay or a restart years later decides
exactly as the live stream did, so Gold stays a pure function of Silver's history.
Rows whose commit has no timestamp fall back to the wall clock.
"""

from __future__ import annotations

import time

import polars as pl

COMMIT_MS = "__commit_ms"  # Silver commit timestamp (ms since the epoch), one per row
MISSED_WINDOW_END = "__missed_window_end"


def split_future(timed: pl.DataFrame, ts_column: str, skew_us: int | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows kept, rows refused as too far in the future); nothing is refused when off.

    Refused rows carry a null `__missed_window_end`: they were not dropped by the
    watermark for some window, but by the skew bound."""
    if skew_us is None:
        return timed, timed.clear()
    now_ms = int(time.time() * 1000)
    ref_ms = pl.col(COMMIT_MS).fill_null(now_ms) if COMMIT_MS in timed.columns else pl.lit(now_ms)
    is_future = pl.col(ts_column) > ref_ms.cast(pl.Int64) * 1000 + skew_us
    future = timed.filter(is_future)
    if future.height == 0:
        return timed, future
    kept = timed.filter(~is_future)
    return kept, future.with_columns(pl.lit(None, dtype=pl.Int64).alias(MISSED_WINDOW_END))
