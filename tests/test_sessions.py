"""Session windows against the brute-force reference (Spark's session_window rules, row by
row, commit by commit): any batching, a restart at any commit (state rebuilt from Silver
with Gold's offsets), flush, and state kept per session, not per row."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldstream.columns import MISSED_WINDOW_END, VERSION
from goldstream.config import QuerySpec
from goldstream.engine.clock import EventClock
from goldstream.engine.sessions import SessionAggregation, windowed_operator
from goldstream.engine.state import WindowedAggregation, commit_partials
from gold_compare import assert_gold_equal
from reference import reference_frame, reference_gold, reference_sessions
from test_engine_properties import (BASE_US, LANGUAGE_QUERY, SEED_QUERIES, SILVER_SCHEMA, _frame, _spec, histories,
                                    windowing)

sessions = st.sampled_from([({"kind": "session", "gap": "1m"}, "2m"), ({"kind": "session", "gap": "5m"}, "0s"),
                            ({"kind": "session", "gap": "90s"}, "6m"), ({"kind": "session", "gap": "3m"}, "30s")])
# Seed aggregates (counts, conditions, extremes, avg, stddev, ratio) or the newer functions with conditions.
aggregate_sets = st.sampled_from([SEED_QUERIES[1], LANGUAGE_QUERY])


def _query(base: dict[str, Any], window: dict[str, Any], delay: str) -> tuple[dict[str, Any], QuerySpec]:
    qdict = {**base, "name": "flights", "window": window, "watermark_delay": delay}
    return qdict, _spec(qdict)


def _expected(frames: list[pl.DataFrame], qdict: dict[str, Any], flush: bool = False,
              stats: dict[str, Any] | None = None) -> pl.DataFrame:
    oracle = reference_sessions if qdict["window"]["kind"] == "session" else reference_gold
    return reference_frame(oracle(frames, qdict, flush=flush, stats=stats), qdict, SILVER_SCHEMA)


def _run(query: QuerySpec, frames: list[pl.DataFrame], cuts: list[int],
         late: list[pl.DataFrame] | None = None) -> tuple[WindowedAggregation, pl.DataFrame]:
    """Gold of `frames` processed in batches cut at `cuts`; the late rows go to `late`."""
    engine = windowed_operator(query, input_schema=SILVER_SCHEMA, keep_late_rows=late is not None)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(frames))), len(frames)]
    results = [engine.process(pl.concat(frames[a:b])) for a, b in zip(bounds, bounds[1:])]
    if late is not None:
        late += [r.late for r in results if r.late is not None]
    return engine, pl.concat([r.closed for r in results])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commits=histories, cuts=st.lists(st.integers(0, 14), max_size=6), win=sessions, base=aggregate_sets)
def test_sessions_equal_reference_for_any_batching(commits, cuts, win, base) -> None:
    qdict, query = _query(base, *win)
    frames = _frame(commits)
    stats: dict[str, Any] = {}
    expected = _expected(frames, qdict, stats=stats)
    for cut in (list(range(len(frames))), [], cuts):
        late: list[pl.DataFrame] = []
        engine, actual = _run(query, frames, cut, late)
        assert isinstance(engine, SessionAggregation)
        assert_gold_equal(actual, expected)
        assert engine.watermark_us == stats["watermark_us"]
        assert sum(f.height for f in late) == stats["late_rows"]
        for rows in late:  # a late row missed the session its own span would have opened: [t, t + gap]
            assert (rows[MISSED_WINDOW_END] == rows["event_timestamp"].dt.epoch("us") + engine.gap_us).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commits=histories, stop=st.integers(0, 13), win=st.one_of(sessions, windowing), base=aggregate_sets)
def test_restart_rebuilds_state_from_gold_offsets(commits, stop, win, base) -> None:
    """Live through commit `stop`, then a new engine resumes from what Gold's offsets hold
    (watermark, oldest version in state, for sessions the watermark before it), rebuilds its
    state from those Silver commits and goes on: together, the reference's Gold. Sessions
    and windows, the seed aggregates and the newer functions with conditions."""
    qdict, query = _query(base, *win)
    frames = _frame(commits)
    stop = min(stop, len(frames) - 1)
    first, before = _run(query, frames[:stop + 1], [])
    low = first.oldest_version_in_state()
    low = stop + 1 if low is None else low
    clock = EventClock.build(query, first.clock.snapshot(), rebuild_watermark_us=first.watermark_before_oldest())
    second = windowed_operator(query, input_schema=SILVER_SCHEMA, event_clock=clock)
    if low <= stop:
        second.rebuild(commit_partials([second], pl.concat(frames[low:stop + 1]).lazy())[0])
    after = [second.process(f).closed for f in frames[stop + 1:]]
    assert_gold_equal(pl.concat([before, *after]), _expected(frames, qdict))


@settings(max_examples=20, deadline=None)
@given(commits=histories, win=sessions)
def test_flush_emits_every_open_session_once(commits, win) -> None:
    qdict, query = _query(SEED_QUERIES[1], *win)
    frames = _frame(commits)
    engine, closed = _run(query, frames, [])
    assert_gold_equal(pl.concat([closed, engine.flush()]), _expected(frames, qdict, flush=True))
    assert engine.state_rows == 0


def test_state_is_one_row_per_open_session() -> None:
    """10,000 rows of two keys, 6 ms apart, with a 5-minute gap: two sessions in state."""
    _, query = _query(SEED_QUERIES[1], {"kind": "session", "gap": "5m"}, "10m")
    n = 10_000
    frame = pl.DataFrame({
        "event_timestamp": pl.Series([BASE_US + i * 6_000 for i in range(n)]).cast(pl.Datetime("us", "UTC")),
        "origin_country": ["France", "Germany"] * (n // 2),
        "altitude_meters": [1000.0] * n, "velocity_kmh": [500.0] * n, "on_ground": [False] * n,
    }).with_columns((pl.int_range(pl.len()) // 1000).cast(pl.Int64).alias(VERSION))
    engine = windowed_operator(query, input_schema=SILVER_SCHEMA)
    engine.process(frame)
    assert engine.state_rows == 2 and engine.open_windows() == 2
    out = engine.flush()
    assert out.sort("origin_country")["total_observations"].to_list() == [n // 2, n // 2]
