"""The stateful operator: per-commit watermarks, late filtering, pane state, closing windows.

Input is Silver rows tagged with their commit version (`__version`). A step has two
halves: one pass over the rows (engine/rowpass.py: a first pass over the event times, then
one group-by shared by queries with the same row grouping, streamed by Polars straight
from the Parquet files) that yields partial aggregates at the grain of the state, (keys,
pane), for the rows of each pane whose first open window is the same whatever their
commit, and per commit for the few others; everything else (`process_partials`) runs on
those partials. However many commits a batch holds, the watermark rule is applied per
commit (the query's clock, engine/clock.py), vectorised. So Gold is a pure function of
Silver's commit history, whatever the batching.

State rows are partial aggregates keyed by (keys, pane, first window), held per pane
(engine/panes.py) so that a batch touches only the panes its rows and its closing
windows need. The "first window" (`__kmin`) is the oldest window a row may still count
in: a row of pane p belongs to windows p-n+1 … p, minus those already closed when its
commit arrived. Rows from later commits of the same batch get a later `__kmin`, so a
window closed by an earlier commit of the batch never sees them. The pane store keeps,
per pane, the oldest Silver version with a row in it: where a restart starts re-reading.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field

import polars as pl

from goldstream.columns import COMMIT_MS, MISSED_WINDOW_END, VERSION
from goldstream.config import QuerySpec
from goldstream.engine.aggregates import AggregateSet, gold_frame_schema
from goldstream.engine.clock import COMMIT_MAX, WM_BEFORE, EventClock
from goldstream.engine.panes import PANE as _PANE
from goldstream.engine.panes import PaneStore
from goldstream.engine.rowpass import BUCKET, Partials, RowScan, batch_partials
from goldstream.engine.windows import Windows
from goldstream.sql.rows import SqlRows

_TS, _KMIN, _K = "__ts", "__kmin", "__k"
# Closing windows repeats a pane's rows once per window they count in; at most this many
# such rows are built at a time (~100 bytes each for the seed queries' state).
CLOSE_ROWS = 2_000_000
_TSMAX, _ROWS, _FUTURE, _PASSED = "__tsmax", "__rows", "__future", "__passed"


@dataclass
class StepResult:
    """What one batch did: closed windows to commit, and counters for progress/metrics."""

    closed: pl.DataFrame
    rows_in: int = 0
    rows_null_time: int = 0
    rows_late: int = 0
    rows_filtered: int = 0  # failed the query's filter: no input at all
    late: pl.DataFrame | None = None
    max_event_time_us: int | None = None
    watermark_us: int = 0
    # The largest event time of each commit that moved the clock (`VERSION`, `COMMIT_MAX`),
    # so a jump far past the wall clock can be reported with its version.
    commit_max: pl.DataFrame | None = None


@dataclass
class WindowedAggregation:
    """Event-time windowed aggregation of one query, with a watermark (Spark semantics)."""

    query: QuerySpec
    keep_late_rows: bool = False
    max_event_time_skew_us: int | None = None  # opt-in: see _is_future
    input_schema: dict[str, pl.DataType] = field(default_factory=dict)
    event_clock: InitVar[EventClock | None] = None  # None: a new query's (EventClock.build resumes one)
    clock: EventClock = field(init=False)
    windows: Windows = field(init=False)
    aggs: AggregateSet = field(init=False)
    panes: PaneStore = field(default_factory=PaneStore, init=False)
    dimensions: object = None  # a SQL query's joined tables (sql/dimensions.py)

    def __post_init__(self, event_clock: EventClock | None) -> None:
        # A SQL query: its projection step (sql/rows.py) runs before the row pass, and its
        # derived columns are inputs like Silver's.
        self.sql = SqlRows.build(self.query, self.input_schema, self.dimensions) \
            if self.query.sql_query is not None else SqlRows.for_conditions(self.query, self.input_schema)
        if self.sql is not None:
            self.input_schema = {**self.input_schema, **self.sql.compiled.derived_types}
        self.clock = event_clock or EventClock.build(self.query)
        self._now_ms = 0  # the skew bound's "now" for rows whose commit has no timestamp
        self._empty: pl.DataFrame | None = None
        self.windows = Windows.from_spec(self.query.window)
        self.aggs = AggregateSet.for_query(self.query, self.input_schema)
        self.keys = list(self.query.keys)

    # -- public --------------------------------------------------------------------

    @property
    def watermark_us(self) -> int:
        return self.clock.watermark_us

    @property
    def max_event_time_us(self) -> int | None:
        return self.clock.max_event_time_us

    @property
    def state_rows(self) -> int:
        return self.panes.rows

    @property
    def state_bytes(self) -> int:
        """Memory held by the state frames (Polars' estimate)."""
        return self.panes.bytes

    def oldest_version_in_state(self) -> int | None:
        """Lowest Silver version with a row still feeding an open window (None: empty)."""
        return self.panes.min_version()

    def open_windows(self) -> int:
        """Number of (key, window) pairs still open: a pass over the whole state, for
        `status` only."""
        state = self.panes.all()
        if state is None:
            return 0
        w = self.windows
        lo = pl.max_horizontal(pl.col(_KMIN), pl.col(_PANE) - (w.panes_per_window - 1),
                               pl.lit(w.first_open_window(self.watermark_us)))
        return (
            state.select(*self.keys, pl.int_ranges(lo, pl.col(_PANE) + 1).alias(_K))
            .explode(_K).unique().height
        )

    def process(self, rows: pl.DataFrame) -> StepResult:
        """Take in a batch of Silver rows (any number of whole commits, `__version`-tagged)
        and return the windows it closed, in the Gold schema."""
        lazy = rows.lazy()
        return self.process_partials(commit_partials([self], lazy)[0], lazy)

    @property
    def pane_grain(self) -> bool:
        """Whether its row pass groups at state grain (keys, pane) across commits; session
        windows close per commit and keep the commit grain."""
        return True

    # -- the two halves of a step: the row pass, then everything else on partials ----------

    def row_grouping(self) -> tuple[object, ...]:
        """What the group-by over the rows depends on: queries with equal row groupings
        share one group-by (commit_partials)."""
        return (self.query.event_time, tuple(self.keys), self.windows.slide_us, self.max_event_time_skew_us,
                self.query.filter, self.query.sql, self.query.ansi)

    def pane_expr(self) -> pl.Expr:
        return self.windows.pane(self._event_us())

    def first_pass_plan(self, rows: pl.LazyFrame, commit_column: str) -> pl.LazyFrame:
        """The first pass (engine/rowpass.py): the largest event time per (commit, pane)
        over the rows that move the clock (timed, passing the filter and the skew bound)."""
        ts = self._event_us()
        keep = ts.is_not_null()
        if self.max_event_time_skew_us is not None:
            self._now_ms = int(time.time() * 1000)  # one "now" per batch, for both passes
            keep = keep & ~self._is_future(ts, rows.collect_schema().names())
        extra = []
        if self._has_filter():
            rows = self._prepared(rows)  # a SQL WHERE may read joined or derived columns
            if self._clock_sees_filtered():
                # SQL: withWatermark precedes WHERE and joins, so rows failing them still move
                # the clock; `__passed` tells which (commit, pane) had a row that passed (the
                # restart point counts only those)
                extra.append(self._passes_filter().any().alias(_PASSED))
            else:
                keep = keep & self._passes_filter()  # TOML filter: failing rows move nothing
        return rows.filter(keep).group_by(commit_column, self.windows.pane(ts).alias(_PANE)).agg(
            ts.max().alias(COMMIT_MAX), *extra)

    def first_windows(self, panes: pl.DataFrame, wm_before: pl.DataFrame) -> pl.DataFrame:
        """The first window (`__kmin`) of rows of each (commit, pane) of the first pass, given
        each commit's watermark before it; greater than the pane when every window refuses them."""
        passed = [_PASSED] if _PASSED in panes.columns else []
        return (panes.join(wm_before, on=VERSION, how="inner")
                .select(VERSION, _PANE, self._kmin(pl.col(_PANE), pl.col(WM_BEFORE)).alias(_KMIN), *passed))

    def guards_by_commit(self) -> bool:
        """Whether the row pass must keep every group's commit: a SQL query's ANSI guards are
        reported with the Silver version that hit them, so they cannot be grouped across
        commits (such queries take the commit grain; their state is the same)."""
        return self.sql is not None and bool(self.sql.compiled.guards)

    def row_pass_plan(self, rows: pl.LazyFrame, partials: list[pl.Expr], bucket: pl.Expr | None) -> pl.LazyFrame:
        """Silver rows → partials per (keys, pane[, commit bucket]): the only pass over the
        rows' values (engine/rowpass.py). Rows with a null event time form the null-pane
        groups (counted, then dropped); with a skew bound, far-future rows form their own
        groups, and with a filter, the rows failing it. A SQL query's joins and derived
        columns are added first, and its ANSI guards computed per group."""
        ts = self._event_us()
        if self.sql is not None:
            rows = self.sql.prepare(rows)
            partials = [*partials, *self.sql.guard_partials()]
        group = [*self.keys, self.windows.pane(ts).alias(_PANE)]
        if bucket is not None:
            group.append(bucket.alias(BUCKET))
        if self._has_filter():
            group.append(self._passes_filter().alias(_PASSED))
        if self.max_event_time_skew_us is not None:
            group.append(self._is_future(ts, rows.collect_schema().names()).alias(_FUTURE))
        if self.max_event_time_skew_us is not None and not self.pane_grain:
            self._now_ms = int(time.time() * 1000)  # one "now" per batch (pane grain: set by the first pass)
        extra = [] if self.pane_grain else [ts.max().alias(_TSMAX)]
        return rows.group_by(group).agg(*partials, *extra, pl.len().alias(_ROWS))

    def merge_chunks(self, frames: list[pl.DataFrame]) -> pl.DataFrame:
        """The partials of a batch's chunks as one frame: groups present in several chunks
        merged (aggregate merge is associative), in chunk order."""
        both = pl.concat(frames, how="vertical_relaxed")
        group = [*self.keys, _PANE, VERSION, *(c for c in (_FUTURE, _PASSED) if c in both.columns)]
        guards = [pl.col(g).any() for g in (self.sql.guard_names() if self.sql is not None else [])
                  if g in both.columns]
        extra = [pl.col(_ROWS).sum(), *([pl.col(_TSMAX).max()] if _TSMAX in both.columns else []), *guards]
        return self.aggs.merge(both, group, *extra).select(both.columns).cast(both.schema)

    def process_partials(self, partials: Partials, rows: pl.LazyFrame | None = None) -> StepResult:
        """Take in the commit partials of whole new commits (engine/rowpass.py) and
        return the windows they closed. `rows` (the same commits' rows, lazily) is read
        again only to hand dropped rows to an optional late table; None skips that."""
        result = self._take_in(partials, rows)
        if result.rows_in:
            self.clock.on_rows()
        return result

    def rebuild(self, partials: Partials) -> None:
        """Take in the commit partials of commits Gold already records, to rebuild state
        only. With the watermark restored from Gold, their windows were emitted before:
        closing one here would mean Gold's offsets are inconsistent."""
        if self._take_in(partials, None).closed.height:
            raise AssertionError(f"rebuild of {self.query.name} emitted windows; offsets are inconsistent")

    def _take_in(self, partials: Partials, rows: pl.LazyFrame | None) -> StepResult:
        frame = partials.frame
        wm_start = self.watermark_us
        rows_in = int(frame[_ROWS].sum())
        filtered = 0
        if self.sql is not None:
            self.sql.check_guards(frame, VERSION, self.query.name)
        clock_frame = None
        if _PASSED in frame.columns:  # rows failing the filter are no input at all
            filtered = int(frame.filter(~pl.col(_PASSED))[_ROWS].sum())
            if self._clock_sees_filtered():  # SQL: withWatermark precedes WHERE, joins
                clock_frame = frame
            frame = frame.filter(pl.col(_PASSED))
            rows = None if rows is None else \
                self._prepared(rows).filter(self._passes_filter()).select(rows.collect_schema().names())
        want_rows = self.keep_late_rows and rows is not None and frame.height > 0
        refused = 0
        if _FUTURE in frame.columns:
            refused = int(frame.filter(pl.col(_FUTURE))[_ROWS].sum())
            if want_rows and refused:  # rows of these commits only (a rebuild split the batch)
                refused_rows = self._refused_rows(rows, partials.first, partials.last)  # type: ignore[arg-type]
            frame = frame.filter(~pl.col(_FUTURE))
        guards = self.sql.guard_names() if self.sql is not None else []  # checked above
        timed = frame.filter(pl.col(_PANE).is_not_null()).drop(_PASSED, _FUTURE, *guards, strict=False)
        rows_timed = int(timed[_ROWS].sum())
        result = StepResult(closed=self.empty_output(), rows_in=rows_in, rows_late=refused, rows_filtered=filtered,
                            rows_null_time=rows_in - filtered - refused - rows_timed, watermark_us=wm_start)
        if want_rows and refused:
            result.late = refused_rows
        clock_timed = timed  # commit grain (sessions): the groups of rows that move the clock
        if clock_frame is not None:
            if _FUTURE in clock_frame.columns:
                clock_frame = clock_frame.filter(~pl.col(_FUTURE))
            clock_timed = clock_frame.filter(pl.col(_PANE).is_not_null())
        per_commit = partials.commit_maxima(clock_timed)
        if per_commit.height == 0:
            return result
        result.max_event_time_us = int(per_commit[COMMIT_MAX].max())  # type: ignore[arg-type]
        result.commit_max = per_commit
        wm_before = self.clock.on_commits(per_commit)
        wm_end = self.watermark_us

        kmins = None if partials.panes is None else self.first_windows(partials.panes, wm_before)
        on_time = self._on_time(timed, wm_before if kmins is None else kmins)
        late_rows = rows_timed - int(on_time[_ROWS].sum())
        result.rows_late += late_rows
        if want_rows and late_rows:
            late = self._late_rows(rows, wm_before)  # type: ignore[arg-type]
            result.late = late if result.late is None else pl.concat([late, result.late], how="diagonal_relaxed")

        result.watermark_us = wm_end
        result.closed = self._fold(on_time, wm_before, wm_start, wm_end, kmins)
        return result

    # -- what the window kind decides (engine/sessions.py replaces these for sessions) --------

    def _on_time(self, timed: pl.DataFrame, kmins: pl.DataFrame) -> pl.DataFrame:
        """The batch's timed partials as state rows: one per (keys, pane, first window
        `__kmin`), rows refused by every window dropped. Groups of any commit (null
        `__version`) take the first window of their pane's first commit, which all of them
        share; groups kept per commit take their commit's and are merged where several
        commits give the same first window (in commit order: the same float sums run after
        run)."""
        by_pane = kmins.sort(VERSION).group_by(_PANE).agg(pl.col(_KMIN).first())  # the pane's first commit's
        anyv = timed.filter(pl.col(VERSION).is_null()).drop(VERSION)
        anyv = anyv.with_columns(pl.col(_PANE).replace_strict(by_pane[_PANE], by_pane[_KMIN], default=None)
                                 .alias(_KMIN)).filter(pl.col(_KMIN) <= pl.col(_PANE))
        per_commit = timed.filter(pl.col(VERSION).is_not_null())
        if per_commit.height == 0:
            return anyv
        tagged = (per_commit.join(kmins.select(VERSION, _PANE, _KMIN), on=[VERSION, _PANE], how="left")
                  .filter(pl.col(_KMIN) <= pl.col(_PANE)))
        # a later commit with the same first window as its pane's early ones (the window that
        # changed was another query's): their groups are merged too, so that state holds one
        # row per (keys, pane, first window) whatever the batching
        clash = tagged.select(_PANE, _KMIN).unique().join(by_pane, on=[_PANE, _KMIN], how="semi")[_PANE]
        early = anyv.filter(pl.col(_PANE).is_in(clash.implode())).with_columns(pl.lit(None, pl.Int64).alias(VERSION))
        anyv = anyv.filter(~pl.col(_PANE).is_in(clash.implode()))
        both = pl.concat([early, tagged.select(early.columns)], how="vertical_relaxed").sort(VERSION, nulls_last=False)
        merged = self.aggs.merge(both, [*self.keys, _PANE, _KMIN], pl.col(_ROWS).sum())
        return pl.concat([anyv, merged.select(anyv.columns).cast(anyv.schema)], how="vertical_relaxed")

    def _pane_versions(self, kmins: pl.DataFrame) -> dict[int, int]:
        """The oldest commit with a row counted in each pane (a restart's starting point),
        from the first pass, which knows each (commit, pane) of the batch (and, where rows
        failing a SQL WHERE moved the clock, which of them had a row passing it)."""
        if _PASSED in kmins.columns:
            kmins = kmins.filter(pl.col(_PASSED))
        counted = kmins.filter(pl.col(_KMIN) <= pl.col(_PANE)).group_by(_PANE).agg(pl.col(VERSION).min())
        return dict(zip(counted[_PANE].to_list(), counted[VERSION].to_list()))

    def _is_late(self, pane: pl.Expr, wm_before: pl.Expr) -> pl.Expr:
        """Whether a row of `pane` is refused by every window, given the watermark before its commit."""
        return self._kmin(pane, wm_before) > pane

    def _missed_end(self, pane: pl.Expr) -> pl.Expr:
        """The end of the last window a late row of `pane` missed (for the late table)."""
        return self.windows.end(pane)

    def _fold(self, on_time: pl.DataFrame, wm_before: pl.DataFrame, wm_start: int, wm_end: int,
              kmins: pl.DataFrame | None) -> pl.DataFrame:
        """Fold a batch's state rows into state and return the windows that the
        watermark's move from `wm_start` to `wm_end` closed (`wm_before`: each commit's
        watermark before it, for operators that close per commit; `kmins`: the first
        window of each (commit, pane) of the batch)."""
        columns = [*self.keys, _PANE, _KMIN, *self.aggs.state_fields()]
        group = [*self.keys, _PANE, _KMIN]
        assert kmins is not None
        self.panes.add(on_time.select(columns), self._pane_versions(kmins),
                       lambda rows: self.aggs.merge(rows, group).select(columns))
        return self._close(wm_start, wm_end)

    def watermark_before_oldest(self) -> int | None:
        """The watermark before `oldest_version_in_state()`, when a rebuild needs it to judge
        rows late as the live stream did (None: it needs only the restored watermark, as
        here: a row's windows are late or not whatever came before)."""
        return None

    def _has_filter(self) -> bool:
        return self.sql is not None and self.sql.passed is not None

    def _clock_sees_filtered(self) -> bool:
        """Whether rows failing the filter still move the watermark (a SQL query's WHERE and
        inner joins: Spark's withWatermark precedes them; not a TOML `filter`)."""
        return self._has_filter() and self.sql is not None and self.sql.watermark_first

    def _passes_filter(self) -> pl.Expr:
        """The query's filter (a SQL query's WHERE and inner joins) over Silver rows; a null
        condition fails it, as in Spark."""
        assert self.sql is not None and self.sql.passed is not None
        return self.sql.passed.fill_null(False)

    def _prepared(self, rows: pl.LazyFrame) -> pl.LazyFrame:
        """Silver rows as the row pass sees them (a SQL query's joins and derived columns added)."""
        return rows if self.sql is None else self.sql.prepare(rows)

    def dimension_versions(self) -> tuple[tuple[str, int], ...]:
        """The version of each dimension table the last batch joined (Gold's offsets keep them)."""
        if self.sql is None or not self.sql.compiled.joins or self.dimensions is None:
            return ()
        used = self.dimensions.versions()  # type: ignore[attr-defined]
        return tuple((j.table, used[j.table]) for j in self.sql.compiled.joins if j.table in used)

    def gold(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Closed windows (window bounds, keys, aggregates) as Gold rows: a SQL query's SELECT
        list, its names and Spark's types; a TOML query's as they are."""
        return frame if self.sql is None else self.sql.gold(frame, self.query.name)

    def _event_us(self) -> pl.Expr:
        return pl.col(self.query.event_time).cast(pl.Datetime("us", "UTC")).dt.epoch("us")

    def _is_future(self, ts: pl.Expr, columns: list[str]) -> pl.Expr:
        """The opt-in skew bound (`max_event_time_skew`), a documented departure from Spark:
        one row stamped years ahead (a broken device clock, a unit error) would move the
        watermark years ahead and make every later row late, so a row whose event time is
        more than the bound ahead of its Silver commit's timestamp is refused instead
        (counted as late, sent to the late table, moving nothing). The reference is the
        commit's own timestamp from the Delta log, not this process's clock, so a replay
        years later decides as the live stream did; a commit without one gets its log
        file's modification time when read, and only then "now"."""
        now_ms = self._now_ms
        ref_ms = pl.col(COMMIT_MS).fill_null(now_ms) if COMMIT_MS in columns else pl.lit(now_ms)
        return (ts > ref_ms.cast(pl.Int64) * 1000 + self.max_event_time_skew_us).fill_null(False)

    def _kmin(self, pane: pl.Expr, wm_before: pl.Expr) -> pl.Expr:
        """First window a row of `pane` still counts in, given the watermark before its commit."""
        w = self.windows
        return pl.max_horizontal(pane - (w.panes_per_window - 1), w.first_open_window(wm_before))

    def _refused_rows(self, rows: pl.LazyFrame, first: object, last: object) -> pl.DataFrame:
        """Rows of versions first..last refused by the skew bound, for the late table (they
        missed no window)."""
        ts = self._event_us()
        return (
            rows.filter(pl.col(VERSION).is_between(first, last))
            .with_columns(ts.alias(_TS))
            .filter(self._is_future(pl.col(_TS), rows.collect_schema().names()))
            .with_columns(pl.lit(None, dtype=pl.Int64).alias(MISSED_WINDOW_END))
            .collect(engine="streaming")
        )

    def _late_rows(self, rows: pl.LazyFrame, wm_before: pl.DataFrame) -> pl.DataFrame:
        """The rows every window refused (for the optional late table): a second read of the
        batch's rows, paid only when a late table is configured and the batch has late rows.
        It streams (chunk after chunk of the batch), so its memory is that of the late rows
        found, which the late table takes in one commit, not that of the batch."""
        pane = self.windows.pane(pl.col(_TS))
        lazy = rows.join(wm_before.lazy(), on=VERSION, how="inner").with_columns(self._event_us().alias(_TS))
        if self.max_event_time_skew_us is not None:
            lazy = lazy.filter(~self._is_future(pl.col(_TS), rows.collect_schema().names()))
        return (
            lazy.filter(pl.col(_TS).is_not_null())
            .filter(self._is_late(pane, pl.col(WM_BEFORE)))
            .with_columns(self._missed_end(pane).alias(MISSED_WINDOW_END))
            .collect(engine="streaming")
        )

    def on_idle(self) -> pl.DataFrame | None:
        """Let the clock's idle timeout move the watermark; the windows that closes, or None
        if it passed no window end (then there is nothing to commit: a move within a window
        changes no decision that must survive a crash)."""
        before = self.watermark_us
        if not self.clock.on_notify():
            return None
        w = self.windows
        if w.last_closed_window(self.watermark_us) == w.last_closed_window(before):
            return None
        return self._close(before, self.watermark_us)

    def flush_end_us(self) -> int | None:
        """The end of the last window `flush` would emit (None: no open window)."""
        last_pane = self.panes.last_pane
        if last_pane is None:
            return None
        return last_pane * self.windows.slide_us + self.windows.size_us

    def flush(self) -> pl.DataFrame:
        """Emit every still-open window (end of a bounded replay with --flush)."""
        wm_all = self.flush_end_us()
        if wm_all is None:
            return self.empty_output()
        closed = self._close(self.watermark_us, wm_all)
        self.clock.on_eof(wm_all)
        return closed

    # -- internals -------------------------------------------------------------------

    def _close(self, wm_from: int, wm_to: int) -> pl.DataFrame:
        """Emit windows with wm_from < end <= wm_to from the panes they cover, then evict
        the panes whose last window is closed. Many windows closing at once (a catch-up
        batch) are assembled a slice at a time (`_close_slices`), so the pane rows
        repeated once per window they count in never exceed `CLOSE_ROWS` at a time."""
        w = self.windows
        if wm_to <= wm_from:
            return self.empty_output()
        k_lo = w.first_open_window(wm_from)
        k_hi = w.last_closed_window(wm_to)
        outs = [self._close_windows(a, b) for a, b in self._close_slices(k_lo, k_hi)]
        self.panes.evict(lambda pane: w.pane_is_needed(pane, wm_to))
        outs = [o for o in outs if o is not None]
        return pl.concat(outs) if outs else self.empty_output()

    def _close_slices(self, k_lo: int, k_hi: int) -> list[tuple[int, int]]:
        """Windows k_lo … k_hi cut into consecutive ranges whose exploded pane rows (a row
        of pane p once per window of the range it counts in) stay within CLOSE_ROWS."""
        n = self.windows.panes_per_window
        heights = self.panes.heights(k_lo, k_hi + n - 1)
        # Only windows with a held pane (a watermark jump may close years of empty ones).
        windows = sorted({k for p in heights for k in range(max(p - n + 1, k_lo), min(p, k_hi) + 1)})
        slices: list[tuple[int, int]] = []
        rows = 0
        for k in windows:
            window_rows = sum(heights.get(p, 0) for p in range(k, k + n))
            if slices and rows + window_rows <= CLOSE_ROWS:
                slices[-1] = (slices[-1][0], k)
            else:
                slices.append((k, k))
                rows = 0
            rows += window_rows
        return slices

    def _close_windows(self, k_lo: int, k_hi: int) -> pl.DataFrame | None:
        """Windows k_lo … k_hi assembled from their panes, in the Gold schema (None: no
        pane of theirs is held)."""
        w = self.windows
        covered = self.panes.select(k_lo, k_hi + w.panes_per_window - 1)
        if covered is None:
            return None
        lo = pl.max_horizontal(pl.col(_KMIN), pl.col(_PANE) - (w.panes_per_window - 1), pl.lit(k_lo))
        hi = pl.min_horizontal(pl.col(_PANE), pl.lit(k_hi))
        # a window's panes merged in (pane, first window) order: the same float sums every run
        contributing = (covered.filter(lo <= hi).sort(_PANE, _KMIN)
                        .with_columns(pl.int_ranges(lo, hi + 1).alias(_K)).explode(_K))
        merged = self.aggs.merge(contributing, [*self.keys, _K])
        return self.gold(self.aggs.finalize(merged, self.input_schema).select(
            w.start(pl.col(_K)).cast(pl.Datetime("us", "UTC")).alias("window_start"),
            w.end(pl.col(_K)).cast(pl.Datetime("us", "UTC")).alias("window_end"),
            *self.keys,
            *self.aggs.names,
        ))

    def empty_output(self) -> pl.DataFrame:
        """No windows, in the Gold schema. Built once (~1 ms each, several per batch):
        Polars frames are immutable, so sharing the instance is safe."""
        if self._empty is None:
            self._empty = pl.DataFrame(schema=gold_frame_schema(self.query, self.input_schema))
        return self._empty


def commit_partials(engines: Sequence[WindowedAggregation], rows: pl.LazyFrame) -> list[Partials]:
    """The partials of whole commits of `__version`-tagged rows, for each engine
    (engine/rowpass.py; the pipeline reads batches in chunks with `batch_partials`)."""
    bounds = rows.select(pl.col(VERSION).min().alias("lo"), pl.col(VERSION).max().alias("hi")).collect()
    lo, hi = bounds["lo"][0], bounds["hi"][0]
    return batch_partials(engines, [RowScan(rows)], 0 if lo is None else lo, -1 if hi is None else hi)
