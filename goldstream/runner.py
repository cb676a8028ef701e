"""One loop for the daemon and for replay: poll → read → engine → commit.

Silver is read once per batch for all queries. Each query resumes from its own Gold
offsets: commits up to the version it already processed are replayed only to rebuild
its state (with the restored watermark, rows of already emitted windows are late by
construction, so nothing is emitted twice); later commits are processed live and
committed with their closed windows and new offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import polars as pl

from goldstream.config import QuerySpec, Settings
from goldstream.engine.state import VERSION, WindowedAggregation
from goldstream.errors import SourceError
from goldstream.observability import ProgressReporter
from goldstream.sink.gold import GoldSink
from goldstream.sink.late import LateSink
from goldstream.sink.offsets import Offsets
from goldstream.source.reader import Batch, SilverSource
from goldstream.storage import Storage

log = logging.getLogger(__name__)

# Commit offsets without rows after this many Silver commits, so restart work stays bounded
# even when no window closes for a long time.
OFFSETS_EVERY_COMMITS = 100


@dataclass
class QueryStats:
    commits_read: int = 0
    rows_in: int = 0
    rows_late: int = 0
    rows_null_time: int = 0
    windows_emitted: int = 0
    gold_commits: int = 0
    skipped_change_commits: int = 0


@dataclass
class QueryRun:
    """A query's engine, sink and position in Silver."""

    query: QuerySpec
    engine: WindowedAggregation
    sink: GoldSink
    rebuild_from: int  # first Silver version feeding its state
    committed: int  # Silver version processed through, as recorded in Gold (-1: none)
    processed: int  # Silver version processed through in memory
    stats: QueryStats = field(default_factory=QueryStats)
    last_batch_ms: float = 0.0
    late_sink: LateSink | None = None
    last_data_wall: float = field(default_factory=time.time)

    def offsets(self) -> Offsets:
        low = self.engine.oldest_version_in_state()
        return Offsets(
            version=self.processed,
            watermark_us=self.engine.watermark_us,
            low_version=self.processed + 1 if low is None else low,
            fingerprint=self.query.fingerprint(),
        )


class Pipeline:
    """Silver source → one engine per query → one Gold sink per query."""

    def __init__(self, settings: Settings, storage: Storage | None = None,
                 from_version: int | None = None, dry_run: bool = False) -> None:
        self.settings = settings
        self.storage = storage or Storage.from_env(settings.storage)
        self.source = SilverSource(settings.source, settings.queries, self.storage)
        self.from_version = from_version
        self.dry_run = dry_run  # status: rebuild state, never write
        self.runs: list[QueryRun] = []
        self.cursor = 0
        self.progress = ProgressReporter(self.source.uri)
        self.stop_event = threading.Event()
        self.last_iteration = time.monotonic()
        self.ready = False

    # -- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Check Silver and Gold, restore each query's offsets (nothing is written here)."""
        from goldstream.sink.schema import gold_schema

        self.source.open()
        assert self.source.plan is not None
        for q in self.settings.queries:
            engine = WindowedAggregation(q, input_schema=self.source.plan.polars_schema(),
                                         keep_late_rows=q.late_sink is not None)
            sink = GoldSink(self.settings.gold_path(q), q, gold_schema(q, self.source.plan), self.storage)
            offsets = sink.open()
            if offsets is not None:
                engine.restore(offsets.watermark_us)
                run = QueryRun(q, engine, sink, offsets.low_version, offsets.version, offsets.version)
                log.info("query %s resumes after Silver version %d (watermark %s, rebuilding from %d)",
                         q.name, offsets.version, fmt_us(offsets.watermark_us), offsets.low_version)
            else:
                starting = self.from_version if self.from_version is not None else self.settings.source.starting_version
                start = self.source.resolve_start(starting)
                run = QueryRun(q, engine, sink, start, start - 1, start - 1)
                log.info("query %s starts at Silver version %d", q.name, start)
            if q.late_sink and not self.dry_run:
                run.late_sink = LateSink(q.late_sink, q.resolved_app_id, self.storage)
            self.runs.append(run)
        self.cursor = min(r.rebuild_from for r in self.runs)
        self.ready = True

    # -- one batch ------------------------------------------------------------------------

    def step(self, stop: int | None = None) -> bool:
        """Process one batch (up to `stop`); False when there was nothing new."""
        self.last_iteration = time.monotonic()
        t0 = time.perf_counter()
        batch = self.source.next_batch(self.cursor, stop)
        if batch is None:
            return False
        t_log = time.perf_counter()
        frame = self.source.load(batch)
        t_read = time.perf_counter()
        for run in self.runs:
            self._process(run, batch, frame, durations={"latestOffset": (t_log - t0) * 1000,
                                                         "getBatch": (t_read - t_log) * 1000})
        self.cursor = batch.last + 1
        return True

    def _process(self, run: QueryRun, batch: Batch, frame: pl.DataFrame, durations: dict[str, float]) -> None:
        if batch.last < run.rebuild_from:
            return
        t0 = time.perf_counter()
        if batch.first <= run.processed:  # rebuild part: state only, never emitted twice
            old = frame.filter(pl.col(VERSION).is_between(run.rebuild_from, run.processed))
            rebuilt = run.engine.process(old)
            if rebuilt.closed.height:
                raise AssertionError(f"rebuild of {run.query.name} emitted windows; offsets are inconsistent")
            frame = frame.filter(pl.col(VERSION) > run.processed)
        live_commits = [c for c in batch.commits if c.version > run.processed]
        if not live_commits:
            return
        result = run.engine.process(frame)
        t_engine = time.perf_counter()
        run.processed = batch.last
        st = run.stats
        st.commits_read += len(live_commits)
        st.rows_in += result.rows_in
        st.rows_late += result.rows_late
        st.rows_null_time += result.rows_null_time
        st.skipped_change_commits += sum(1 for v in batch.skipped_changes if v > run.committed)
        if result.rows_in:
            run.last_data_wall = time.time()
        if run.late_sink is not None:
            run.late_sink.write(result.late, batch.last)
        if result.closed.height or batch.last - run.committed >= OFFSETS_EVERY_COMMITS:
            self._commit(run, result.closed)
        t_commit = time.perf_counter()
        durations = {**durations, "addBatch": (t_engine - t0) * 1000, "commitOffsets": (t_commit - t_engine) * 1000}
        run.last_batch_ms = sum(durations.values())
        self.progress.report(run, batch, result, durations, latest=self.source.latest_version)

    def _commit(self, run: QueryRun, closed: pl.DataFrame) -> None:
        if self.dry_run:
            return
        offsets = run.offsets()
        info = {
            "goldstream.query": run.query.name,
            "goldstream.silverVersions": f"{run.committed + 1}-{offsets.version}",
            "goldstream.windows": str(closed.height),
            "goldstream.fingerprint": str(offsets.fingerprint),
        }
        run.sink.commit(closed, offsets, info)
        run.committed = offsets.version
        run.stats.windows_emitted += closed.height
        run.stats.gold_commits += 1
        self.progress.metrics.commits.labels(query=run.query.name).inc()

    # -- loops ----------------------------------------------------------------------------

    def replay(self, to_version: int | None = None, flush: bool = False,
               on_batch: Callable[[Pipeline], None] | None = None) -> None:
        """Process Silver up to `to_version` (default: the latest now) and return."""
        stop = to_version if to_version is not None else self.source.latest_version()
        if stop is None:
            raise SourceError(f"Silver table {self.source.uri} has no commits")
        while not self.stop_event.is_set() and self.step(stop):
            if on_batch:
                on_batch(self)
        if flush and not self.stop_event.is_set():
            for run in self.runs:
                closed = run.engine.flush()
                if closed.height or run.processed > run.committed:
                    self._commit(run, closed)
        elif not self.stop_event.is_set():
            for run in self.runs:  # record how far we got, so a resume starts right after
                if run.processed > run.committed:
                    self._commit(run, run.engine.empty_output())

    def run_forever(self, poll_interval_s: float) -> None:
        """The daemon loop: poll, process what is new, commit, sleep; until stop_event."""
        while not self.stop_event.is_set():
            try:
                did = self.step()
                if not did:
                    self._advance_idle_queries()
            finally:
                self.last_iteration = time.monotonic()
            if not did:
                self.stop_event.wait(poll_interval_s)

    def _advance_idle_queries(self) -> None:
        """Opt-in idle timeout (a departure from Spark): with no new Silver commit for
        `idle_timeout`, event time is assumed to go on at wall-clock speed from the last
        event seen, so the watermark moves and windows still close when traffic stops."""
        now = time.time()
        for run in self.runs:
            timeout = run.query.idle_timeout
            max_event = run.engine.max_event_time_us
            if timeout is None or max_event is None:
                continue
            idle_s = now - run.last_data_wall
            if idle_s < timeout.total_seconds():
                continue
            target = max_event + int(idle_s * 1e6) - run.engine.delay_us
            closed = run.engine.advance_watermark(target)
            if closed.height:
                log.info("query %s idle for %.0fs: watermark advanced to %s, %d windows closed",
                         run.query.name, idle_s, fmt_us(run.engine.watermark_us), closed.height)
                self._commit(run, closed)

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "query": r.query.name,
                "gold": r.sink.uri,
                "commits_read": r.stats.commits_read,
                "rows_in": r.stats.rows_in,
                "rows_late": r.stats.rows_late,
                "rows_null_event_time": r.stats.rows_null_time,
                "windows_emitted": r.stats.windows_emitted,
                "skipped_change_commits": r.stats.skipped_change_commits,
                "silver_version": r.processed,
                "watermark": fmt_us(r.engine.watermark_us),
            }
            for r in self.runs
        ]


def fmt_us(us: int) -> str:
    return pl.Series([us]).cast(pl.Datetime("us", "UTC")).dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ")[0]
