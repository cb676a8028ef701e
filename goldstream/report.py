"""`status` and `show`: what operators ask of a running (or stopped) stream.

`status` reads Gold's `txn` offsets and Silver's log, and rebuilds the in-memory state
the same way a restart does (read-only) to count open windows. `show` is the seed
notebook's final check: row counts, the latest windows, the highest anomaly rates, as
titled frames the CLI prints as tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from goldstream.config import QuerySpec, Settings
from goldstream.runner import Pipeline
from goldstream.units import plural, size
from goldstream.runner.status import fmt_span_us, fmt_us
from goldstream.storage import Storage
from goldstream.tables import span


def status(settings: Settings) -> list[dict[str, Any]]:
    """Per query: Silver latest version, processed version, lag, watermark, open windows."""
    pipeline = Pipeline(settings, dry_run=True, metrics=False)
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
            "state_rows": q.state_rows,
            "state_bytes": q.state_bytes,
            "late_rows": q.late_rows,
            "last_gold_commit": datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat() if ts else None,
            "event_time_warning": _ahead_warning(max_event, now, ahead_limit_s),
        })
    return out


def status_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """`status` rows as one table for a person: lags in human units, times on one line."""
    def when(iso: str | None, digits: int) -> str | None:
        return None if iso is None else iso.replace("T", " ")[:digits]

    return pl.DataFrame({
        "query": [r["query"] for r in rows],
        "version lag": [r["lag_versions"] for r in rows],
        "event-time lag": [span(r["lag_seconds"]) for r in rows],
        "watermark": [when(r["watermark"], 23) for r in rows],
        "open windows": [r["open_windows"] for r in rows],
        "state": [f"{plural(r['state_rows'], 'row')}, {size(r['state_bytes'])}" for r in rows],
        "late rows": [r["late_rows"] for r in rows],
        "last Gold commit": [when(r["last_gold_commit"], 19) for r in rows],
        "gold": [r["gold"] for r in rows],
    }, schema_overrides={"version lag": pl.Int64, "open windows": pl.Int64, "late rows": pl.Int64})


def _ahead_warning(max_event_us: int | None, now_s: float, limit_s: float) -> str | None:
    """Said when the watermark followed an event time far past the wall clock."""
    if max_event_us is None or max_event_us / 1e6 - now_s <= limit_s:
        return None
    return (f"max event time {fmt_us(max_event_us)} is {fmt_span_us(max_event_us - int(now_s * 1e6))} ahead of the "
            "wall clock: the watermark followed it, so later rows before it are late. If a device clock is to "
            "blame, set max_event_time_skew and rebuild this query's Gold from a new gold_path.")


@dataclass(frozen=True)
class Section:
    """One table of `show`: a title, a line saying what it holds, and the frame."""

    title: str
    frame: pl.DataFrame
    note: str = ""
    identity: int = 0  # leading columns that name a row: repeated when a wide table is cut


def show(settings: Settings, query: str | None = None, limit: int = 10) -> list[Section]:
    """Row counts, latest windows per key, highest ratios (anomaly rates)."""
    sections: list[Section] = []
    counts = []
    for q in settings.queries:
        if query and q.name != query:
            continue
        path = settings.gold_path(q)
        df = read_gold(settings, q)
        counts.append({"query": q.name, "rows": df.height, "gold": path})
        if df.height == 0:
            continue
        gold = q.gold_columns
        first = gold.values[0]
        end_column = gold.window_end or gold.window_start
        latest = df.filter(pl.col(end_column) == pl.col(end_column).max())
        start, end = latest[gold.window_start][0], latest[end_column][0]
        bounds = [c for c in (gold.window_start, gold.window_end) if c]
        shown = latest.sort(first, descending=True, nulls_last=True).head(limit).drop(bounds)
        sections.append(Section(f"{q.name}: latest window", shown, identity=len(gold.keys),
                                note=f"window {start:%Y-%m-%d %H:%M:%S} – {end:%Y-%m-%d %H:%M:%S} UTC, "
                                     f"top {shown.height} of {latest.height} by {first}"))
        for agg in q.aggregates if q.sql is None else []:
            if agg.fn == "ratio" and q.keys:
                top = (df.group_by(q.keys).agg(pl.col(agg.name).mean().alias(f"mean_{agg.name}"),
                                              pl.len().alias("windows"))
                       .sort(f"mean_{agg.name}", descending=True, nulls_last=True).head(limit))
                sections.append(Section(f"{q.name}: highest {agg.name}", top, identity=len(q.keys),
                                        note=f"mean of {agg.name} over each key's windows, top {top.height}"))
    sections.insert(0, Section("Gold tables", pl.DataFrame(counts), identity=1))
    return sections


def read_gold(settings: Settings, q: QuerySpec) -> pl.DataFrame:
    """A query's whole Gold table (empty when it does not exist yet)."""
    path = settings.gold_path(q)
    storage = Storage.from_env(settings.storage)
    try:
        df = pl.from_arrow(DeltaTable(path, storage_options=storage.delta_options(path)).to_pyarrow_table())
    except TableNotFoundError:
        return pl.DataFrame()
    assert isinstance(df, pl.DataFrame)
    return df
