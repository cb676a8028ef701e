"""One query's run: its engine, its Gold sink, where it stands in Silver, process → commit.

A query resumes from its own Gold offsets: commits up to the version Gold records are
taken in only to rebuild its state (with the restored watermark, rows of windows already
emitted are late by construction, so nothing is emitted twice); later commits are
processed live and committed with their closed windows and new offsets.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import polars as pl

from goldstream.columns import VERSION
from goldstream.config import QuerySpec
from goldstream.engine.clock import COMMIT_MAX, LATEST_TIMESTAMP_US
from goldstream.engine.rowpass import Partials
from goldstream.engine.state import StepResult, WindowedAggregation
from goldstream.errors import OwnershipLost, SinkError
from goldstream.observability import ProgressReporter
from goldstream.runner.status import QueryStats, QueryStatus, fmt_span_us, fmt_us
from goldstream.sink.definition import fingerprint
from goldstream.sink.gold import GoldSink
from goldstream.sink.late import LateSink
from goldstream.sink.offsets import Offsets
from goldstream.source.reader import Batch, Start

log = logging.getLogger(__name__)

# Commit offsets without rows after this many Silver commits, so restart work stays bounded
# even when no window closes for a long time.
OFFSETS_EVERY_COMMITS = 100


@dataclass
class QueryRun:
    query: QuerySpec
    engine: WindowedAggregation
    sink: GoldSink
    progress: ProgressReporter
    rebuild_from: int  # first Silver version feeding its state
    committed: int  # Silver version processed through, as recorded in Gold (-1: none)
    processed: int  # Silver version processed through in memory
    start: Start | None = None  # where the query started reading Silver (None: not recorded in Gold)
    dry_run: bool = False  # rebuild state as of what Gold records, never write
    new: bool = False  # no Gold offsets yet: its start is still to be recorded
    late_sink: LateSink | None = None
    stats: QueryStats = field(default_factory=QueryStats)
    committed_stats: QueryStats = field(default_factory=QueryStats)  # as of the last Gold commit
    late_base: int = 0  # late rows counted before this process (from Gold), for the offsets
    future_warning_us: int = 86_400_000_000  # report a commit whose event time is this far past the wall clock

    def offsets(self) -> Offsets:
        low = self.engine.oldest_version_in_state()
        return Offsets(
            version=self.processed,
            watermark_us=self.engine.clock.snapshot(),
            low_version=self.processed + 1 if low is None else low,
            fingerprint=fingerprint(self.query),
            late_rows=self.late_base + self.stats.rows_late,
            start=None if self.start is None else self.start.version,
            snapshot=self.start is not None and self.start.snapshot,
            low_watermark_us=self.engine.watermark_before_oldest(),
            dimensions=self.engine.dimension_versions(),
        )

    def process(self, batch: Batch, partials: Partials, rows: pl.LazyFrame,
                durations: dict[str, float], latest: Callable[[], int | None]) -> None:
        """Take in a batch's commit partials (the part already in Gold only rebuilds
        state), commit what closed, and report progress. `latest` is Silver's latest
        version, for the lag in the progress record."""
        t0 = time.perf_counter()
        if batch.first <= self.processed:  # rebuild part: state only, never emitted twice
            self.engine.rebuild(partials.versions(self.rebuild_from, self.processed))
            partials = partials.versions(self.processed + 1)
        if self.dry_run:
            return
        live_commits = [c for c in batch.commits if c.version > self.processed]
        if not live_commits:
            return
        result = self.engine.process_partials(partials, rows)
        self._report_far_future(result)
        t_engine = time.perf_counter()
        self.processed = batch.last
        self.stats = replace(
            self.stats,
            commits_read=self.stats.commits_read + len(live_commits),
            rows_in=self.stats.rows_in + result.rows_in,
            rows_late=self.stats.rows_late + result.rows_late,
            rows_null_time=self.stats.rows_null_time + result.rows_null_time,
            rows_filtered=self.stats.rows_filtered + result.rows_filtered,
            skipped_change_commits=self.stats.skipped_change_commits
            + sum(1 for v in batch.skipped_changes if v > self.committed),
        )
        if self.late_sink is not None:
            self.late_sink.write(result.late, batch.last)
        if result.closed.height or batch.last - self.committed >= OFFSETS_EVERY_COMMITS:
            self.commit(result.closed)
        t_commit = time.perf_counter()
        durations = {**durations, "addBatch": (t_engine - t0) * 1000, "commitOffsets": (t_commit - t_engine) * 1000}
        self.progress.report(self.status(), batch, result, durations, latest=latest)

    def _report_far_future(self, result: StepResult) -> None:
        """Spark moves the watermark to whatever event time a row carries, and so does
        goldstream; but a commit dated far past the wall clock (a broken device clock, a
        unit error) makes every later row late, so it must not pass unnoticed."""
        if result.commit_max is None:
            return
        now_us = int(time.time() * 1e6)  # wall time: event times are compared with it
        far = result.commit_max.filter(pl.col(COMMIT_MAX) > now_us + self.future_warning_us)
        for version, max_us in far.select(VERSION, COMMIT_MAX).iter_rows():
            log.warning(
                "query %r: Silver version %d holds an event time of %s, %s ahead of the wall clock. The watermark "
                "moves there (Spark's rule), so every later row before it counts as late. If a device clock or a "
                "unit error is to blame, set max_event_time_skew ([source] or per query) to refuse such rows "
                "instead, and rebuild this query's Gold from a new gold_path.",
                self.query.name, version, fmt_us(max_us), fmt_span_us(max_us - now_us))
            self.progress.metrics.future_event_commits.labels(query=self.query.name).inc()

    def check_flush(self) -> None:
        """Refuse a --flush whose windows end past the last instant a Delta timestamp holds
        (a row dated 9999-12-31): the window end would be written as year 10000, which no
        reader takes. Called for every query before any of them flushes."""
        end_us = self.engine.flush_end_us()
        if end_us is not None and end_us > LATEST_TIMESTAMP_US:
            raise SinkError(
                f"--flush would close a window of query {self.query.name!r} ending at {fmt_us(end_us)}, past "
                f"9999-12-31T23:59:59.999999Z, the last instant a Delta timestamp holds (a row's event time is "
                f"{fmt_us(self.engine.max_event_time_us or end_us)}). Nothing was flushed for any query. Replay "
                "without --flush, or set max_event_time_skew and rebuild this query's Gold from a new gold_path "
                "so that such rows are refused.")

    def record_start(self) -> None:
        """Create Gold and record where this new query starts, before it reads a row: a
        start resolved again later ('latest' moves on, log cleanup changes what 'earliest'
        finds) would skip or misread what this run goes on to process. The table's create
        commit carries the start's offsets (one commit, atomic); only a table that already
        existed without offsets (a start interrupted before) gets a commit recording it."""
        log.info("query %s starts at %s", self.query.name, self.start)
        if self.dry_run:
            return
        # No table when the Stream opened: create it straight away (a concurrent creator's table is loaded)
        start = self.offsets()
        found = self.sink.open(create=True, loaded=self.sink.dt is None, start=(start, self._info(0, start)))
        if self.sink.started:
            self.new = False
            return
        if found is not None:  # offsets not there a moment ago
            raise OwnershipLost(
                f"another instance owns query {self.query.name!r}: it recorded its start in Gold table "
                f"{self.sink.uri} while this one was starting. Stopping without writing (no duplicate rows). "
                "Run one instance per query; restarting this one resumes from what Gold records.")
        self.commit(self.engine.empty_output())
        self.new = False

    def commit(self, closed: pl.DataFrame) -> None:
        """Append `closed` to Gold with the offsets as of now, in one Delta commit."""
        if self.dry_run:
            return
        offsets = self.offsets()
        self.sink.commit(closed, offsets, self._info(closed.height, offsets))
        self.committed = offsets.version
        self.stats = replace(self.stats, windows_emitted=self.stats.windows_emitted + closed.height,
                             gold_commits=self.stats.gold_commits + 1)
        self.committed_stats = self.stats
        metrics = self.progress.metrics
        metrics.windows_emitted.labels(query=self.query.name).inc(closed.height)
        metrics.commits.labels(query=self.query.name).inc()

    def _info(self, windows: int, offsets: Offsets) -> dict[str, str]:
        """A Gold commit's commitInfo: context for people reading the table's history."""
        return {
            "goldstream.query": self.query.name,
            "goldstream.silverVersions": f"starts at {self.start}" if self.new else
            f"{self.committed + 1}-{offsets.version}",
            "goldstream.windows": str(windows),
            "goldstream.fingerprint": str(offsets.fingerprint),
        }

    def finish(self, flush: bool) -> None:
        """End of a bounded replay: with `flush`, emit every open window; in any case
        record how far it got, so a resume starts right after."""
        closed = self.engine.flush() if flush else self.engine.empty_output()
        if closed.height or self.processed > self.committed:
            self.commit(closed)

    def advance_if_idle(self) -> None:
        """The opt-in idle timeout (engine/clock.py): a watermark move that passes a window
        end is committed, even an empty window's, as later rows are judged late against it,
        so it must survive a crash."""
        closed = self.engine.on_idle()
        if closed is not None:
            log.info("query %s idle for %.0fs: watermark advanced to %s, %d windows closed",
                     self.query.name, self.engine.clock.idle_for_s(), fmt_us(self.engine.watermark_us),
                     closed.height)
            self.commit(closed)

    def status(self, detailed: bool = False) -> QueryStatus:
        """A read-only snapshot; `detailed` adds the open windows and the last Gold commit's
        time, which cost a pass over the state and a read of Gold's log."""
        last_commit_ms = None
        if detailed and self.sink.dt is not None and self.committed >= 0:
            # the last commit of the query's rows and offsets: maintenance commits after it are
            # not the stream writing (a stalled query must not look alive)
            recent = self.sink.dt.history(20)
            last_commit_ms = next((h.get("timestamp") for h in recent if "goldstream.query" in h),
                                  recent[0].get("timestamp"))
        return QueryStatus(
            name=self.query.name,
            app_id=self.query.resolved_app_id,
            gold_uri=self.sink.uri,
            committed=self.committed,
            processed=self.processed,
            watermark_us=self.engine.watermark_us,
            max_event_time_us=self.engine.max_event_time_us,
            state_rows=self.engine.state_rows,
            state_bytes=self.engine.state_bytes,
            late_rows=self.late_base + self.stats.rows_late,
            stats=self.stats,
            open_windows=self.engine.open_windows() if detailed else None,
            last_gold_commit_ms=last_commit_ms,
        )

    def summary(self) -> dict[str, Any]:
        """What `replay` prints for this query."""
        st = self.stats
        return {
            "query": self.query.name,
            "gold": self.sink.uri,
            "commits_read": st.commits_read,
            "rows_in": st.rows_in,
            "rows_late": st.rows_late,
            "rows_null_event_time": st.rows_null_time,
            "rows_filtered": st.rows_filtered,
            "windows_emitted": st.windows_emitted,
            "skipped_change_commits": st.skipped_change_commits,
            "silver_version": self.processed,
            "watermark": fmt_us(self.engine.watermark_us),
        }
