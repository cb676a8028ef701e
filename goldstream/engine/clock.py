"""The event-time clock of one query: its watermark, and when it may move without rows.

Spark's rule, applied per Silver commit: the watermark after a commit is the largest event
time seen so far, truncated to the millisecond, minus the query's delay, and it never goes
back. It is the value Gold's offsets record (`snapshot`), and a restart resumes from it
(`build`), so the restarted stream judges rows late exactly as the one before it did.

The watermark also moves without rows in two cases: the opt-in idle timeout (a departure
from Spark: with no new rows for `idle_timeout`, event time is assumed to go on at the
speed of the time source from the last event seen, so windows still close when traffic
stops) and the end of a bounded replay with --flush. Idle durations are measured on the
monotonic clock, which only counts elapsed time; the time source is a parameter so a test
can drive it. Windows and their shape are not this module's concern (engine/windows.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import polars as pl

from goldstream.config import QuerySpec
from goldstream.durations import to_us

COMMIT_MAX = "__max"  # a commit's largest event time (µs), the input of `on_commits`
WM_BEFORE = "__wm_before"  # the watermark before a commit, the output of `on_commits`
_WM_AFTER = "__wm_after"
# The last instant a Delta (and Spark) timestamp holds, 9999-12-31T23:59:59.999999Z: no
# watermark moves past it, and no window ending after it can be written to Gold.
LATEST_TIMESTAMP_US = 253_402_300_799_999_999


@dataclass
class EventClock:
    delay_us: int
    idle_timeout_s: float | None = None  # None: the watermark moves only with rows
    # Seconds, only ever subtracted: how long since rows last arrived. Monotonic, so a step
    # of the wall clock (NTP, a VM resumed after a pause) is not taken for time idle.
    now: Callable[[], float] = field(default_factory=lambda: time.monotonic)
    watermark_us: int = 0
    max_event_time_us: int | None = None
    # The watermark before the first Silver version a restart re-reads (from Gold's
    # offsets), for operators whose rebuild replays the watermark's moves (sessions).
    rebuild_watermark_us: int | None = None
    last_rows_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_rows_at = self.now()

    @classmethod
    def build(cls, query: QuerySpec, resume_watermark_us: int | None = None,
              now: Callable[[], float] | None = None, rebuild_watermark_us: int | None = None) -> EventClock:
        """A query's clock, from the watermark its Gold offsets record (None: a new query).
        The max event time it implies is restored too, so lag and the idle advance start
        from there rather than from nothing."""
        idle = query.idle_timeout
        clock = cls(to_us(query.watermark_delay), None if idle is None else idle.total_seconds(),
                    *([] if now is None else [now]))
        clock.rebuild_watermark_us = rebuild_watermark_us
        if resume_watermark_us is not None:
            clock.watermark_us = resume_watermark_us
            if resume_watermark_us > 0:
                clock.max_event_time_us = resume_watermark_us + clock.delay_us
        return clock

    def snapshot(self) -> int:
        """What Gold's offsets record, and `build` resumes from."""
        return self.watermark_us

    def on_commits(self, per_commit: pl.DataFrame) -> pl.DataFrame:
        """Take in the largest event time of each commit of a batch (`COMMIT_MAX`, one row
        per commit, in commit order) and return each commit's watermark before it
        (`WM_BEFORE`, replacing `COMMIT_MAX`): a cumulative max over the commits, so the
        rule holds per commit however many commits a batch holds."""
        marks = self._marks(per_commit)
        batch_max = int(per_commit[COMMIT_MAX].max())  # type: ignore[arg-type]
        self.max_event_time_us = max(self.max_event_time_us or batch_max, batch_max)
        self.watermark_us = int(marks[_WM_AFTER][-1])
        return marks.drop(COMMIT_MAX, _WM_AFTER)

    def preview(self, per_commit: pl.DataFrame) -> pl.DataFrame:
        """What `on_commits` would return, without taking the commits in: the row pass
        needs each commit's watermark before the batch is taken in."""
        return self._marks(per_commit).drop(COMMIT_MAX, _WM_AFTER)

    def _marks(self, per_commit: pl.DataFrame) -> pl.DataFrame:
        start = self.watermark_us
        return per_commit.with_columns(
            ((pl.col(COMMIT_MAX) // 1000) * 1000 - self.delay_us).clip(lower_bound=start).cum_max().alias(_WM_AFTER)
        ).with_columns(pl.col(_WM_AFTER).shift(1, fill_value=start).alias(WM_BEFORE))

    def on_rows(self) -> None:
        """Live rows arrived (with an event time or not): the idle timeout counts from now."""
        self.last_rows_at = self.now()

    def idle_for_s(self) -> float:
        return self.now() - self.last_rows_at

    def on_notify(self) -> bool:
        """The idle timeout: once no rows arrived for `idle_timeout`, move the watermark to
        the last event seen plus the time idle, minus the delay. True if it moved."""
        if self.idle_timeout_s is None or self.max_event_time_us is None:
            return False
        idle_s = self.idle_for_s()
        if idle_s < self.idle_timeout_s:
            return False
        target = min(self.max_event_time_us + int(idle_s * 1e6) - self.delay_us, LATEST_TIMESTAMP_US)
        return self._move_to((target // 1000) * 1000)

    def on_eof(self, watermark_us: int) -> None:
        """End of a bounded replay with --flush: the watermark passes every flushed window,
        so later rows for them are late, as after any watermark move."""
        self._move_to(watermark_us)

    def _move_to(self, watermark_us: int) -> bool:
        if watermark_us <= self.watermark_us:
            return False
        self.watermark_us = watermark_us
        return True
