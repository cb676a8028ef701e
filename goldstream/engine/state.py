"""The stateful operator: per-commit watermarks, late filtering, pane state, closing windows.

Input is a Polars frame of Silver rows tagged with their commit version (`__version`).
However many commits a batch holds, the watermark rule is applied per commit
(DESIGN §1), vectorised: each row's "watermark before its commit" is a cumulative max
over per-commit maxima. So Gold is a pure function of Silver's commit history, whatever
the batching.

State rows are partial aggregates keyed by (keys, pane, first window). The "first
window" (`__kmin`) is the oldest window a row may still count in: a row of pane p
belongs to windows p-n+1 … p, minus those already closed when its commit arrived.
Rows from later commits of the same batch get a later `__kmin`, so a window closed by
an earlier commit of the batch never sees them. `__minver` (the oldest Silver version
in a state row) tells a restart where to start re-reading Silver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from goldstream.config import QuerySpec, to_us
from goldstream.engine.aggregates import AggregateSet
from goldstream.engine.windows import Windows

VERSION = "__version"
_TS, _PANE, _KMIN, _K, _MINVER, _WM = "__ts", "__pane", "__kmin", "__k", "__minver", "__wm_before"


@dataclass
class StepResult:
    """What one batch did: closed windows to commit, and counters for progress/metrics."""

    closed: pl.DataFrame
    rows_in: int = 0
    rows_null_time: int = 0
    rows_late: int = 0
    late: pl.DataFrame | None = None
    max_event_time_us: int | None = None
    watermark_us: int = 0


@dataclass
class WindowedAggregation:
    """Event-time windowed aggregation of one query, with a watermark (Spark semantics)."""

    query: QuerySpec
    watermark_us: int = 0
    keep_late_rows: bool = False
    input_schema: dict[str, pl.DataType] = field(default_factory=dict)
    windows: Windows = field(init=False)
    aggs: AggregateSet = field(init=False)
    state: pl.DataFrame | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.max_event_time_us: int | None = None
        self.windows = Windows.from_spec(self.query.window)
        self.aggs = AggregateSet.for_query(self.query)
        self.delay_us = to_us(self.query.watermark_delay)
        self.keys = list(self.query.keys)

    # -- public --------------------------------------------------------------------

    @property
    def state_rows(self) -> int:
        return 0 if self.state is None else self.state.height

    def oldest_version_in_state(self) -> int | None:
        """Lowest Silver version with a row still feeding an open window (None: empty)."""
        if self.state is None or self.state.height == 0:
            return None
        return int(self.state[_MINVER].min())  # type: ignore[arg-type]

    def open_windows(self) -> int:
        """Number of (key, window) pairs still open."""
        if self.state is None or self.state.height == 0:
            return 0
        w = self.windows
        lo = pl.max_horizontal(pl.col(_KMIN), pl.col(_PANE) - (w.panes_per_window - 1),
                               pl.lit(w.first_open_window(self.watermark_us)))
        return (
            self.state.select(*self.keys, pl.int_ranges(lo, pl.col(_PANE) + 1).alias(_K))
            .explode(_K).unique().height
        )

    def process(self, rows: pl.DataFrame) -> StepResult:
        """Take in a batch of Silver rows (any number of whole commits, `__version`-tagged)
        and return the windows it closed, in the Gold schema."""
        w = self.windows
        wm_start = self.watermark_us
        ts = pl.col(self.query.event_time).cast(pl.Datetime("us", "UTC")).dt.epoch("us")
        frame = rows.with_columns(ts.alias(_TS))
        rows_in = frame.height
        timed = frame.filter(pl.col(_TS).is_not_null())
        result = StepResult(closed=self.empty_output(), rows_in=rows_in,
                            rows_null_time=rows_in - timed.height, watermark_us=wm_start)
        if timed.height == 0:
            return result

        # Watermark before each commit: cumulative max over per-commit maxima (ms-truncated).
        per_commit = (
            timed.group_by(VERSION).agg(pl.col(_TS).max().alias("__max"))
            .sort(VERSION)
            .with_columns(
                ((pl.col("__max") // 1000) * 1000 - self.delay_us).clip(lower_bound=wm_start)
                .cum_max().alias("__wm_after")
            )
            .with_columns(pl.col("__wm_after").shift(1, fill_value=wm_start).alias(_WM))
        )
        result.max_event_time_us = int(per_commit["__max"].max())  # type: ignore[arg-type]
        self.max_event_time_us = max(self.max_event_time_us or result.max_event_time_us, result.max_event_time_us)
        wm_end = int(per_commit["__wm_after"][-1])

        pane = w.pane(pl.col(_TS))
        kmin = pl.max_horizontal(pane - (w.panes_per_window - 1), w.first_open_window(pl.col(_WM)))
        tagged = (
            timed.join(per_commit.select(VERSION, _WM), on=VERSION, how="left")
            .with_columns(pane.alias(_PANE), kmin.alias(_KMIN))
        )
        on_time = tagged.filter(pl.col(_KMIN) <= pl.col(_PANE))
        result.rows_late = tagged.height - on_time.height
        if self.keep_late_rows and result.rows_late:
            result.late = tagged.filter(pl.col(_KMIN) > pl.col(_PANE)).with_columns(
                w.end(pl.col(_PANE)).alias("__missed_window_end")
            )

        group = [*self.keys, _PANE, _KMIN]
        partial = on_time.group_by(group).agg(
            *self.aggs.partial(), pl.col(VERSION).min().alias(_MINVER)
        )
        self._merge_into_state(partial, group)
        self.watermark_us = wm_end
        result.watermark_us = wm_end
        result.closed = self._close(wm_start, wm_end)
        return result

    def restore(self, watermark_us: int) -> None:
        """Start from a committed watermark (state is then rebuilt by re-reading Silver)."""
        self.watermark_us = watermark_us
        if watermark_us > 0:
            self.max_event_time_us = watermark_us + self.delay_us

    def advance_watermark(self, watermark_us: int) -> pl.DataFrame:
        """Move the watermark without new rows (idle timeout) and emit what that closes."""
        watermark_us = (watermark_us // 1000) * 1000
        if watermark_us <= self.watermark_us:
            return self.empty_output()
        closed = self._close(self.watermark_us, watermark_us)
        self.watermark_us = watermark_us
        return closed

    def flush(self) -> pl.DataFrame:
        """Emit every still-open window (end of a bounded replay with --flush)."""
        if self.state is None or self.state.height == 0:
            return self.empty_output()
        last_pane = int(self.state[_PANE].max())  # type: ignore[arg-type]
        wm_all = last_pane * self.windows.slide_us + self.windows.size_us
        closed = self._close(self.watermark_us, wm_all)
        # Flushed windows are final: later rows for them are late, as after a watermark move.
        self.watermark_us = max(self.watermark_us, wm_all)
        return closed

    # -- internals -------------------------------------------------------------------

    def _merge_into_state(self, partial: pl.DataFrame, group: list[str]) -> None:
        if self.state is None or self.state.height == 0:
            self.state = partial
            return
        both = pl.concat([self.state, partial], how="vertical_relaxed")
        self.state = both.group_by(group).agg(*self.aggs.merge(), pl.col(_MINVER).min())

    def _close(self, wm_from: int, wm_to: int) -> pl.DataFrame:
        """Emit windows with wm_from < end <= wm_to from state, then evict dead panes."""
        w = self.windows
        if self.state is None or self.state.height == 0 or wm_to <= wm_from:
            return self.empty_output()
        k_lo = w.first_open_window(wm_from)
        k_hi = w.last_closed_window(wm_to)
        if k_hi < k_lo:
            return self.empty_output()
        lo = pl.max_horizontal(pl.col(_KMIN), pl.col(_PANE) - (w.panes_per_window - 1), pl.lit(k_lo))
        hi = pl.min_horizontal(pl.col(_PANE), pl.lit(k_hi))
        contributing = self.state.filter(lo <= hi).with_columns(pl.int_ranges(lo, hi + 1).alias(_K)).explode(_K)
        merged = contributing.group_by([*self.keys, _K]).agg(*self.aggs.merge())
        out = self.aggs.finalize(merged, self.input_schema).select(
            w.start(pl.col(_K)).cast(pl.Datetime("us", "UTC")).alias("window_start"),
            w.end(pl.col(_K)).cast(pl.Datetime("us", "UTC")).alias("window_end"),
            *self.keys,
            *self.aggs.names,
        )
        self.state = self.state.filter(w.pane_is_needed(pl.col(_PANE), wm_to))
        return out

    def empty_output(self) -> pl.DataFrame:
        schema: dict[str, pl.DataType] = {
            "window_start": pl.Datetime("us", "UTC"),
            "window_end": pl.Datetime("us", "UTC"),
        }
        schema.update({k: self.input_schema.get(k, pl.String()) for k in self.keys})
        schema.update(self.aggs.output_schema(self.input_schema))
        return pl.DataFrame(schema=schema)
