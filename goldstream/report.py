"""`status` and `show`: what operators ask of a running (or stopped) stream.

`status` reads Gold's `txn` offsets and Silver's log, and rebuilds the in-memory state
the same way a restart does (read-only) to count open windows. `show` is the seed
notebook's final check: row counts, the latest windows, the highest anomaly rates.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from goldstream.config import Settings
from goldstream.runner import Pipeline
from goldstream.runner.status import fmt_span_us, fmt_us
from goldstream.storage import Storage


def status(settings: Settings) -> list[dict[str, Any]]:
    """Per query: Silver latest version, processed version, lag, watermark, open windows."""
    pipeline = Pipeline(settings, dry_run=True)
    pipeline.start()
    latest = pipeline.source.latest_version()
    target = max((q.processed for q in pipeline.status().queries), default=-1)
    while pipeline.cursor <= target and pipeline.step(stop=target):
        pass
    out = []
    now = time.time()
    ahead_limit_s = settings.source.future_event_time_warning.total_seconds()
    for q in pipeline.status(detailed=True).queries:
        ts = q.last_gold_commit_ms
        max_event = q.max_event_time_us
        out.append({
            "query": q.name,
            "gold": q.gold_uri,
            "silver_latest_version": latest,
            "processed_through_version": q.committed if q.committed >= 0 else None,
            "lag_versions": None if latest is None else max(0, latest - q.committed),
            # negative when event time is ahead of the wall clock: a jump, not "caught up"
            "lag_seconds": None if max_event is None else round(now - max_event / 1e6, 3),
            "max_event_time": None if max_event is None else fmt_us(max_event),
            "watermark": fmt_us(q.watermark_us),
            "open_windows": q.open_windows,
            "late_rows": q.late_rows,
            "last_gold_commit": datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat() if ts else None,
            "event_time_warning": _ahead_warning(max_event, now, ahead_limit_s),
        })
    return out


def _ahead_warning(max_event_us: int | None, now_s: float, limit_s: float) -> str | None:
    """Said when the watermark followed an event time far past the wall clock."""
    if max_event_us is None or max_event_us / 1e6 - now_s <= limit_s:
        return None
    return (f"max event time {fmt_us(max_event_us)} is {fmt_span_us(max_event_us - int(now_s * 1e6))} ahead of the "
            "wall clock: the watermark followed it, so later rows before it are late. If a device clock is to "
            "blame, set max_event_time_skew and rebuild this query's Gold from a new gold_path.")


def show(settings: Settings, query: str | None = None, limit: int = 10) -> list[tuple[str, pl.DataFrame]]:
    """Titled frames: row counts, latest windows per key, highest ratios (anomaly rates)."""
    storage = Storage.from_env(settings.storage)
    sections: list[tuple[str, pl.DataFrame]] = []
    counts = []
    for q in settings.queries:
        if query and q.name != query:
            continue
        path = settings.gold_path(q)
        try:
            df = pl.from_arrow(DeltaTable(path, storage_options=storage.delta_options(path)).to_pyarrow_table())
        except TableNotFoundError:
            counts.append({"query": q.name, "gold": path, "rows": 0})
            continue
        assert isinstance(df, pl.DataFrame)
        counts.append({"query": q.name, "gold": path, "rows": df.height})
        if df.height == 0:
            continue
        first = q.aggregates[0].name
        latest = df.filter(pl.col("window_end") == pl.col("window_end").max())
        sections.append((f"{q.name}: latest window", latest.sort(first, descending=True).head(limit)))
        for agg in q.aggregates:
            if agg.fn == "ratio" and q.keys:
                top = (df.group_by(q.keys).agg(pl.col(agg.name).mean().alias(f"mean_{agg.name}"),
                                              pl.len().alias("windows"))
                       .sort(f"mean_{agg.name}", descending=True, nulls_last=True).head(limit))
                sections.append((f"{q.name}: highest {agg.name}", top))
    sections.insert(0, ("Gold tables", pl.DataFrame(counts)))
    return sections
