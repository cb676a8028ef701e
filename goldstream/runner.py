"""One loop for the daemon and for replay: poll → read → engine → commit.

Silver's rows are read once per batch for all queries (again only to fill an optional
late table). Each query resumes from its own Gold
offsets: commits up to the version it already processed are replayed only to rebuild
its state (with the restored watermark, rows of already emitted windows are late by
construction, so nothing is emitted twice); later commits are processed live and
committed with their closed windows and new offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, TypeVar

import polars as pl

from goldstream.config import QuerySpec, Settings
from goldstream.durations import to_us
from goldstream.columns import VERSION
from goldstream.engine.state import WindowedAggregation, fine_partials
from goldstream.errors import SourceError, TransientStorageError
from goldstream.observability import ProgressReporter
from goldstream.retry import RetryPolicy, storage_failure
from goldstream.sink.definition import fingerprint
from goldstream.sink.gold import GoldSink
from goldstream.sink.late import LateSink
from goldstream.sink.offsets import Offsets
from goldstream.source.reader import Batch, SilverSource
from goldstream.storage import Storage

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Commit offsets without rows after this many Silver commits, so restart work stays bounded
# even when no window closes for a long time.
OFFSETS_EVERY_COMMITS = 100
# Silver's latest version (lag in progress records and metrics) costs a listing of the whole
# log, ~50 ms at 8,640 commits: refreshed at most this often, off the per-batch path.
LATEST_REFRESH_S = 10.0


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
    committed_stats: QueryStats = field(default_factory=QueryStats)  # as of the last Gold commit
    last_batch_ms: float = 0.0
    late_sink: LateSink | None = None
    last_data_wall: float = field(default_factory=time.time)
    late_base: int = 0  # late rows counted before this process (from Gold), for the offsets

    def offsets(self) -> Offsets:
        low = self.engine.oldest_version_in_state()
        return Offsets(
            version=self.processed,
            watermark_us=self.engine.watermark_us,
            low_version=self.processed + 1 if low is None else low,
            fingerprint=fingerprint(self.query),
            late_rows=self.late_base + self.stats.rows_late,
        )


class Pipeline:
    """Silver source → one engine per query → one Gold sink per query."""

    def __init__(self, settings: Settings, storage: Storage | None = None,
                 from_version: int | None = None, dry_run: bool = False,
                 retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy()  # the daemon passes retry.FOREVER
        self._must_open = True  # (re)build from Silver and Gold before the next action
        self._wait_for_table = False
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
        self._latest: tuple[float, int | None] = (float("-inf"), None)  # (when listed, version)

    # -- start ----------------------------------------------------------------------------

    def start(self, wait_for_table: bool = False) -> None:
        """Check Silver and Gold, restore each query's offsets (nothing is written here).
        With `wait_for_table` (the daemon), a missing Silver table is waited for first.
        Transient storage failures are retried (`_resilient`)."""
        self._wait_for_table = wait_for_table
        self._must_open = True
        self._resilient(lambda: None)

    def _open(self) -> None:
        """(Re)build everything as a fresh process would: a new Silver source, each query's
        offsets read from its Gold table, its state rebuilt by the steps that follow. Stats
        carry over as of each query's last Gold commit (what came after is processed again)."""
        from goldstream.sink.schema import gold_schema

        carried = {r.query.name: r.committed_stats for r in self.runs}
        self.ready = False
        self.runs = []
        self.source = SilverSource(self.settings.source, self.settings.queries, self.storage)
        self.storage.check_access(self._uris())  # credentials, permissions, buckets: fail fast
        if self._wait_for_table and not self.source.wait_until_exists(self.stop_event, on_poll=self._touch):
            return  # stopped while waiting
        self.source.open()
        assert self.source.plan is not None
        for q in self.settings.queries:
            skew = self.settings.max_event_time_skew(q)
            engine = WindowedAggregation(q, input_schema=self.source.plan.polars_schema(),
                                         keep_late_rows=q.late_sink is not None,
                                         max_event_time_skew_us=None if skew is None else to_us(skew))
            sink = GoldSink(self.settings.gold_path(q), q, gold_schema(q, self.source.plan), self.storage)
            offsets = sink.open(create=False)
            if offsets is not None:
                self._check_silver_reaches(q, offsets.version)
                engine.restore(offsets.watermark_us)
                run = QueryRun(q, engine, sink, offsets.low_version, offsets.version, offsets.version)
                log.info("query %s resumes after Silver version %d (watermark %s, rebuilding from %d)",
                         q.name, offsets.version, fmt_us(offsets.watermark_us), offsets.low_version)
            else:
                starting = self.from_version if self.from_version is not None else self.settings.source.starting_version
                start = self.source.resolve_start(starting)  # before creating Gold: may refuse
                if not self.dry_run:
                    sink.open(create=True)
                run = QueryRun(q, engine, sink, start, start - 1, start - 1)
                log.info("query %s starts at Silver version %d", q.name, start)
            if q.late_sink and not self.dry_run:
                run.late_sink = LateSink(q.late_sink, q.resolved_app_id, self.storage, query=q.name)
            if q.name in carried:
                run.stats, run.committed_stats = replace(carried[q.name]), carried[q.name]
            if offsets is not None:
                run.late_base = offsets.late_rows - run.stats.rows_late
            self.runs.append(run)
        self.cursor = min(r.rebuild_from for r in self.runs)
        self.ready = True

    def _touch(self) -> None:
        self.last_iteration = time.monotonic()  # alive while waiting: /healthz stays green

    def _uris(self) -> list[str]:
        """Every table this pipeline reads or writes."""
        uris = [self.source.uri]
        for q in self.settings.queries:
            uris += [self.settings.gold_path(q), *([q.late_sink] if q.late_sink else [])]
        return uris

    # -- transient storage failures -------------------------------------------------------

    def _resilient(self, action: Callable[[], _T]) -> _T | None:
        """Run `action`, riding out transient storage failures (connection refused or reset,
        timeouts, 5xx): each is logged as a WARNING naming the tables, the cause and the
        attempt, waited out with exponential backoff and jitter, and followed by a rebuild of
        every query from its Gold offsets (`_open`) before `action` runs again.

        Why rebuild rather than retry the failed call: a batch can fail after the engine took
        its rows in, or after one query committed and before the next did, so in-memory state
        may be ahead of Gold. Gold's `txn` offsets are the only state known to match Gold's
        rows; rebuilding from them is exactly what a restart does (DESIGN §3), so a retry can
        neither lose nor duplicate a window, and as a Gold commit is one atomic Delta commit,
        nothing partial is ever committed. A permanent failure (credentials rejected, access
        denied, no such bucket) raises StorageAccessError at once; `self.retry` bounds how
        long failures are retried (forever in the daemon), then TransientStorageError.
        Returns None if stopped while waiting."""
        backoff = self.retry.backoff()
        while True:
            try:
                if self._must_open:
                    self._open()
                    self._must_open = False
                    if self.stop_event.is_set():
                        return None  # stopped while waiting for Silver
                return action()
            except Exception as err:
                failure = storage_failure(err, self._where())
                if failure is None:
                    raise
                if not isinstance(failure, TransientStorageError):
                    raise failure from None
                self._must_open = True
                delay = backoff.next_delay()
                if delay is None:
                    raise TransientStorageError(
                        f"{failure}; still failing after {backoff.attempt + 1} attempts over "
                        f"{backoff.failing_for_s:.0f}s, giving up. Nothing partial was committed: run it again "
                        "once storage answers, and every query resumes from its Gold offsets."
                    ) from None
                log.warning("%s (attempt %d): retrying in %.1fs, then resuming every query from its Gold "
                            "offsets", failure, backoff.attempt, delay)
                if self._pause(delay):
                    return None

    def _where(self) -> str:
        return f"Silver {self.source.uri} / Gold {self.settings.sink.gold_root}"

    def _pause(self, seconds: float) -> bool:
        """Wait `seconds` (True if stopped meanwhile), keeping the liveness clock fresh: a
        loop waiting out a storage outage is alive, and restarting it would not help."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._touch()
            if self.stop_event.wait(min(left, 0.5)):
                return True
        self._touch()
        return self.stop_event.is_set()

    def _check_silver_reaches(self, query: QuerySpec, version: int) -> None:
        latest = self.source.latest_version()
        if latest is None or latest < version:
            raise SourceError(
                f"Gold of query {query.name!r} records Silver version {version} as processed, but "
                f"Silver {self.source.uri} only goes to version {latest}: Silver was recreated or "
                "restored to an older version. Point the query at a new Gold path (or name) to start fresh."
            )

    # -- one batch ------------------------------------------------------------------------

    def step(self, stop: int | None = None) -> bool:
        """Process one batch (up to `stop`); False when there was nothing new."""
        self.last_iteration = time.monotonic()
        t0 = time.perf_counter()
        batch = self.source.next_batch(self.cursor, stop)
        if batch is None:
            return False
        t_log = time.perf_counter()
        # The one pass over the rows, shared by the queries: rows stream from Parquet into
        # per-(keys, pane, commit) partials; the rest of each query's step runs on those.
        active = [run for run in self.runs if batch.last >= run.rebuild_from]
        scan = self.source.scan(batch)
        fines = self.source.reading(batch, lambda: [
            scan.resolve(f) for f in fine_partials([r.engine for r in active], scan.rows, scan.unit)])
        t_read = time.perf_counter()
        for run, fine in zip(active, fines):
            self._process(run, batch, fine, scan.versioned(), durations={"latestOffset": (t_log - t0) * 1000,
                                                                         "getBatch": (t_read - t_log) * 1000})
        self.cursor = batch.last + 1
        return True

    def _process(self, run: QueryRun, batch: Batch, fine: pl.DataFrame, rows: pl.LazyFrame,
                 durations: dict[str, float]) -> None:
        t0 = time.perf_counter()
        if batch.first <= run.processed:  # rebuild part: state only, never emitted twice
            old = fine.filter(pl.col(VERSION).is_between(run.rebuild_from, run.processed))
            rebuilt = run.engine.process_partials(old)
            if rebuilt.closed.height:
                raise AssertionError(f"rebuild of {run.query.name} emitted windows; offsets are inconsistent")
            fine = fine.filter(pl.col(VERSION) > run.processed)
        if self.dry_run:
            return  # status: state as of what Gold records, nothing beyond
        live_commits = [c for c in batch.commits if c.version > run.processed]
        if not live_commits:
            return
        result = run.engine.process_partials(fine, rows)
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
        self.progress.report(run, batch, result, durations, latest=lambda: self._latest_version(batch.last))

    def _latest_version(self, read: int) -> int | None:
        """Silver's latest version for lag metrics: a cached listing, never below `read`."""
        listed_at, latest = self._latest
        if time.monotonic() - listed_at >= LATEST_REFRESH_S:
            latest = self.source.latest_version()
            self._latest = (time.monotonic(), latest)
        return read if latest is None else max(latest, read)

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
        self.progress.metrics.windows_emitted.labels(query=run.query.name).inc(closed.height)
        run.stats.gold_commits += 1
        run.committed_stats = replace(run.stats)
        self.progress.metrics.commits.labels(query=run.query.name).inc()

    # -- loops ----------------------------------------------------------------------------

    def replay(self, to_version: int | None = None, flush: bool = False,
               on_batch: Callable[[Pipeline], None] | None = None) -> None:
        """Process Silver up to `to_version` (default: the latest now) and return."""
        stop = to_version if to_version is not None else self._resilient(lambda: self.source.latest_version())
        if self.stop_event.is_set():
            return
        if stop is None:
            raise SourceError(f"Silver table {self.source.uri} has no commits")
        self._resilient(lambda: self._replay_to(stop, flush, on_batch))

    def _replay_to(self, stop: int, flush: bool, on_batch: Callable[[Pipeline], None] | None) -> None:
        """replay's body; after a storage failure it runs again on the state rebuilt from Gold."""
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
                did = self._resilient(self._poll)
            finally:
                self.last_iteration = time.monotonic()
            if not did:
                self.stop_event.wait(poll_interval_s)

    def _poll(self) -> bool:
        did = self.step()
        if not did:
            self._advance_idle_queries()
        return did

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
            windows = run.engine.windows
            before = windows.last_closed_window(run.engine.watermark_us)
            closed = run.engine.advance_watermark(target)
            if windows.last_closed_window(run.engine.watermark_us) != before:
                # committed once it passes a window end, even an empty window's: later rows
                # are judged late against it, so it must survive a crash
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
