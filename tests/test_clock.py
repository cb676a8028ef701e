"""The event-time clock on an injected time source: the idle timeout moves the watermark
only after `idle_timeout` without rows, by the time idle, and never backwards; a restart
resumes the watermark Gold records."""

from __future__ import annotations

import time
from datetime import timedelta

import polars as pl
import pytest

from goldstream.config import QuerySpec
from goldstream.engine.clock import COMMIT_MAX, WM_BEFORE, EventClock

S = 1_000_000  # µs


class FakeTime:
    def __init__(self) -> None:
        self.s = 1000.0

    def __call__(self) -> float:
        return self.s


def _query(**extra: object) -> QuerySpec:
    return QuerySpec.model_validate({
        "name": "q", "event_time": "t", "keys": [], "window": {"kind": "tumbling", "size": "10s"},
        "watermark_delay": "2s", "aggregates": [{"name": "n", "fn": "count"}], **extra,
    })


def test_watermark_is_a_cumulative_max_per_commit() -> None:
    clock = EventClock.build(_query())
    per_commit = pl.DataFrame({"__version": [1, 2, 3], COMMIT_MAX: [50 * S + 999, 40 * S, 60 * S]})
    before = clock.on_commits(per_commit)
    assert before[WM_BEFORE].to_list() == [0, 48 * S, 48 * S]  # 50 s (ms-truncated) - 2 s, never back
    assert clock.snapshot() == 58 * S and clock.max_event_time_us == 60 * S


def test_idle_timeout_moves_the_watermark_by_the_time_idle() -> None:
    now = FakeTime()
    clock = EventClock.build(_query(idle_timeout="30s"), resume_watermark_us=100 * S, now=now)
    assert clock.max_event_time_us == 102 * S  # implied by the resumed watermark
    now.s += 29.9
    assert not clock.on_notify() and clock.watermark_us == 100 * S
    now.s += 0.1
    assert clock.on_notify() and clock.watermark_us == 130 * S  # 102 s + 30 s idle - 2 s delay
    assert not clock.on_notify()  # no time passed: no move
    clock.on_rows()
    now.s += 29.0
    assert not clock.on_notify() and clock.watermark_us == 130 * S  # rows restart the idle count


def test_without_idle_timeout_only_rows_move_the_watermark() -> None:
    now = FakeTime()
    clock = EventClock.build(_query(), resume_watermark_us=100 * S, now=now)
    now.s += timedelta(days=1).total_seconds()
    assert not clock.on_notify() and clock.watermark_us == 100 * S
    clock.on_eof(200 * S)
    clock.on_eof(150 * S)
    assert clock.watermark_us == 200 * S


class SteppedClocks:
    """The two clocks of a machine: the wall clock can step (NTP, a VM resumed after a
    pause), the monotonic clock only counts time elapsed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall, self.elapsed = 1_700_000_000.0, 1000.0
        monkeypatch.setattr(time, "time", lambda: self.wall)
        monkeypatch.setattr(time, "monotonic", lambda: self.elapsed)

    def step_wall(self, seconds: float) -> None:
        self.wall += seconds

    def wait(self, seconds: float) -> None:
        self.wall += seconds
        self.elapsed += seconds


def test_idle_timeout_counts_elapsed_time_not_wall_clock_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = SteppedClocks(monkeypatch)
    clock = EventClock.build(_query(idle_timeout="30m"), resume_watermark_us=100 * S)  # the daemon's time source
    clocks.wait(60)
    clocks.step_wall(3600)  # NTP step or VM resume while caught up: no time passed for the stream
    assert not clock.on_notify() and clock.watermark_us == 100 * S
    assert clock.idle_for_s() == 60
    clocks.wait(30 * 60)
    assert clock.on_notify() and clock.watermark_us == (102 + 60 + 30 * 60 - 2) * S
