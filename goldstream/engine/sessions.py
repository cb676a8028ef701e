"""Session windows (Spark's `session_window` in append mode), and the choice of operator.

A key's session starts at a row's event time; each row extends it to `event time + gap`,
and rows whose spans [t, t + gap] overlap (touching counts: Spark merges a span that starts
exactly where another ends) belong to one session, also across commits, so sessions merge
as rows arrive. `window_start` is the first event time, `window_end` the last + gap.

The row pass is the windowed operator's, with panes of 1 µs: partials per (keys, event
time, commit). The rest follows Spark's rules per Silver commit, however many commits a
batch holds:
- a row is late when its own span has ended, `event time + gap <= watermark before its
  commit` (Spark filters a session's input rows by their span before merging them); late
  rows are dropped and counted, so a late row never bridges two sessions;
- the commit's on-time partials merge with the open sessions of their keys;
- every session whose end is `<= watermark after the commit` is emitted, once, and
  dropped from state: a later row that would have touched it starts a new session.
Closing is decided per commit, so the step loops over a batch's commits; each iteration is
vectorised over keys and sessions. State is one row per open session: its bounds and its
merged partial aggregates, never its rows.

A restart re-reads Silver from the oldest version feeding an open session. Lateness
depends on each row's own event time, not on its session's end, so the replay must see
the watermark move as the live stream did: it starts from the watermark before that
version (Gold's offsets record it: `watermark_before_oldest`), re-closes (and discards)
the sessions Gold already holds, and ends at the watermark Gold records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from goldstream.columns import VERSION
from goldstream.config import QuerySpec
from goldstream.durations import to_us
from goldstream.engine.clock import WM_BEFORE, EventClock
from goldstream.engine.rowpass import Partials
from goldstream.engine.panes import MINVER as _MINVER
from goldstream.engine.state import _PANE, StepResult, WindowedAggregation

_START, _LAST, _WM0, _SESSION = "__start", "__last", "__wm0", "__session"
_BOUND = pl.Datetime("us", "UTC")


@dataclass
class SessionAggregation(WindowedAggregation):
    """Per-key session windows with a watermark: the windowed operator's interface."""

    gap_us: int = field(init=False)
    _restored_us: int | None = field(default=None, init=False)  # Gold's watermark, while rebuilding
    state: pl.DataFrame | None = field(default=None, init=False)  # one row per open session

    def __post_init__(self, event_clock: EventClock | None) -> None:
        super().__post_init__(event_clock)
        assert self.query.window.gap is not None
        self.gap_us = to_us(self.query.window.gap)

    @property
    def state_rows(self) -> int:
        return 0 if self.state is None else self.state.height

    @property
    def state_bytes(self) -> int:
        return 0 if self.state is None else int(self.state.estimated_size())

    def oldest_version_in_state(self) -> int | None:
        if self.state is None or self.state.height == 0:
            return None
        return int(self.state[_MINVER].min())  # type: ignore[arg-type]

    # -- the window kind's decisions -------------------------------------------------------

    @property
    def pane_grain(self) -> bool:
        return False

    def _on_time(self, timed: pl.DataFrame, wm_before: pl.DataFrame) -> pl.DataFrame:
        tagged = timed.join(wm_before, on=VERSION, how="left")
        return tagged.filter(~self._is_late(pl.col(_PANE), pl.col(WM_BEFORE)))

    def _is_late(self, pane: pl.Expr, wm_before: pl.Expr) -> pl.Expr:
        return pane + self.gap_us <= wm_before

    def _missed_end(self, pane: pl.Expr) -> pl.Expr:
        return pane + self.gap_us

    def _fold(self, on_time: pl.DataFrame, wm_before: pl.DataFrame, wm_start: int, wm_end: int,
              kmins: pl.DataFrame | None) -> pl.DataFrame:
        """Commit by commit: merge its on-time partials into the open sessions, then emit
        the sessions its watermark closed. Consecutive commits are merged in one step while
        no session can close in between (every session ends at or after the earliest end of
        what it is made of), which gives the same sessions with fewer steps."""
        sessions = on_time.select(
            *self.keys, pl.col(_PANE).alias(_START), pl.col(_PANE).alias(_LAST), *self.aggs.state_fields(),
            pl.col(VERSION).alias(_MINVER), pl.col(WM_BEFORE).alias(_WM0))
        by_commit = sessions.partition_by(_MINVER, as_dict=True)
        marks = wm_before.sort(VERSION).with_columns(pl.col(WM_BEFORE).shift(-1, fill_value=wm_end).alias("__after"))
        closed, pending = [], []
        earliest_end = self._earliest_end()
        for version, before, after in marks.select(VERSION, WM_BEFORE, "__after").iter_rows():
            new = by_commit.get((version,))
            if new is not None:
                pending.append(new)
                earliest_end = min(earliest_end, int(new[_LAST].min()) + self.gap_us)  # type: ignore[arg-type]
            if after > before and earliest_end <= after:
                if pending:
                    self._merge(pl.concat(pending))
                    pending = []
                closed.append(self._close(before, after))
                earliest_end = self._earliest_end()
        if pending:
            self._merge(pl.concat(pending))
        return pl.concat(closed) if closed else self.empty_output()

    def _earliest_end(self) -> float:
        if self.state is None or self.state.height == 0:
            return float("inf")
        return int(self.state[_LAST].min()) + self.gap_us  # type: ignore[arg-type]

    def _merge(self, new: pl.DataFrame) -> None:
        """Merge new sessions into the open ones of their keys: sorted by start per key, a
        session opens where its start is after every earlier end (start + gap of the last)."""
        kept = None  # open sessions of keys the new ones do not have: unchanged
        if self.state is None or self.state.height == 0:
            combined = new
        elif self.keys:
            present = new.select(self.keys).unique()
            kept = self.state.join(present, on=self.keys, how="anti", nulls_equal=True)
            touched = self.state.join(present, on=self.keys, how="semi", nulls_equal=True)
            combined = pl.concat([touched, new], how="vertical_relaxed")
        else:
            combined = pl.concat([self.state, new], how="vertical_relaxed")
        # sessions merged in (start, version, end) order: the same float sums every run
        ordered = combined.sort([*self.keys, _START, _MINVER, _LAST], nulls_last=False)
        merged = (
            self.aggs.merge(ordered.with_columns(self._opens(ordered).cum_sum().alias(_SESSION)),
                            [*self.keys, _SESSION], pl.col(_START).min(), pl.col(_LAST).max(),
                            pl.col(_MINVER).min(), pl.col(_WM0).min())
            .drop(_SESSION)
            .select(combined.columns)
        )
        merged = merged.cast(combined.schema)
        self.state = merged if kept is None else pl.concat([kept, merged], how="vertical_relaxed")

    def _opens(self, ordered: pl.DataFrame) -> pl.Series:
        """Which rows (sorted by key, then start) open a session: the first of their key, or
        one starting after every earlier end of their key. A running max per key, computed
        as one global running max (a per-key window over thousands of keys is slow): start
        and end times are replaced by their dense rank among all of them (same order, small
        numbers), and the key's ordinal times R is added, so that every key's values lie
        above all earlier keys' and the running max never carries over from one key to the
        next."""
        n = ordered.height
        times = pl.concat([ordered[_START], ordered[_LAST] + self.gap_us]).rank("dense").cast(pl.Int64)
        spread = int(times.max()) + 1  # type: ignore[arg-type]
        key = ordered.select(pl.struct(self.keys).rle_id()).to_series().cast(pl.Int64) * spread if self.keys \
            else pl.zeros(n, pl.Int64, eager=True)
        start, end = key + times[:n], key + times[n:]
        return (start > end.cum_max().shift(1)).fill_null(True)

    def _close(self, wm_from: int, wm_to: int) -> pl.DataFrame:
        """Emit the sessions whose end is at or before `wm_to`, and free their state."""
        if self.state is None or self.state.height == 0 or wm_to <= wm_from:
            return self.empty_output()
        ended = pl.col(_LAST) + self.gap_us <= wm_to
        done = self.state.filter(ended)
        if done.height == 0:
            return self.empty_output()
        self.state = self.state.filter(~ended)
        return self.gold(self.aggs.finalize(done, self.input_schema).select(
            pl.col(_START).cast(_BOUND).alias("window_start"),
            (pl.col(_LAST) + self.gap_us).cast(_BOUND).alias("window_end"),
            *self.keys,
            *self.aggs.names,
        ))

    # -- restart ---------------------------------------------------------------------------

    def watermark_before_oldest(self) -> int | None:
        if self.state is None or self.state.height == 0:
            return self.watermark_us
        return int(self.state[_WM0].min())  # type: ignore[arg-type]

    def rebuild(self, partials: Partials) -> None:
        """Replay commits Gold already records from the watermark before the first of them,
        as the live stream saw them: sessions closing on the way are in Gold already and
        are discarded; the watermark Gold records is restored before the next live step."""
        if self._restored_us is None:
            self._restored_us = self.clock.watermark_us
            if self.clock.rebuild_watermark_us is not None:
                self.clock.watermark_us = self.clock.rebuild_watermark_us
        closed = self._take_in(partials, None).closed
        if closed.height and closed["window_end"].dt.epoch("us").max() > self._restored_us:  # type: ignore[operator]
            raise AssertionError(f"rebuild of {self.query.name} closed a session Gold does not hold; "
                                 "offsets are inconsistent")

    def _end_rebuild(self) -> None:
        """Back to the watermark Gold records (it also counts moves without rows: an idle
        advance, a flush), once the rebuild is over."""
        if self._restored_us is not None:
            self.clock.watermark_us = max(self.clock.watermark_us, self._restored_us)
            self._restored_us = None

    def process_partials(self, partials: Partials, rows: pl.LazyFrame | None = None) -> StepResult:
        self._end_rebuild()
        return super().process_partials(partials, rows)

    def on_idle(self) -> pl.DataFrame | None:
        """An idle advance of the watermark: the sessions it closes, or None if none closed
        (no Gold commit then; the advance is recomputed from the idle time after a restart)."""
        self._end_rebuild()
        before = self.watermark_us
        if not self.clock.on_notify():
            return None
        closed = self._close(before, self.watermark_us)
        return closed if closed.height else None

    def flush_end_us(self) -> int | None:
        if self.state is None or self.state.height == 0:
            return None
        return int(self.state[_LAST].max()) + self.gap_us  # type: ignore[arg-type]

    def flush(self) -> pl.DataFrame:
        self._end_rebuild()
        return super().flush()

    def open_windows(self) -> int:
        return self.state_rows


def windowed_operator(query: QuerySpec, **options: object) -> WindowedAggregation:
    """The stateful operator for a query's window kind (the one place that chooses)."""
    kind = SessionAggregation if query.window.kind == "session" else WindowedAggregation
    return kind(query, **options)  # type: ignore[arg-type]
