"""The queries of one config over one Silver table: open from Gold, then batch by batch.

Silver's rows are read once per batch for all queries (again only to fill an optional
late table); each query's run takes its share from there. A Stream is what a rebuild
replaces: it is built only from Silver and Gold, as a fresh process would build it.

`alive` is called at every step that moves (each Silver commit read, each chunk of rows
read, each query opened or processed, which includes its Gold commit): the liveness probe
then tells a long batch that makes progress from a loop stuck in one call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import polars as pl

from goldstream.config import QuerySpec, Settings
from goldstream.durations import to_us
from goldstream.engine.clock import EventClock
from goldstream.engine.rowpass import batch_partials
from goldstream.engine.sessions import windowed_operator
from goldstream.errors import GoldstreamError, SourceError
from goldstream.observability import ProgressReporter
from goldstream.runner.query_run import QueryRun
from goldstream.runner.status import QueryStats, fmt_us
from goldstream.sink.gold import GoldSink
from goldstream.sink.location import refuse_foreign_folder
from goldstream.sink.late import LateSink
from goldstream.sink.schema import gold_schema
from goldstream.sql.dimensions import Dimensions
from goldstream.source.reader import SilverSource, Start
from goldstream.storage import Storage

log = logging.getLogger(__name__)

# Silver's latest version (lag in progress records and metrics) costs a listing of the whole
# log, ~50 ms at 8,640 commits: refreshed at most this often, off the per-batch path.
LATEST_REFRESH_S = 10.0


@dataclass
class Stream:
    source: SilverSource
    runs: list[QueryRun]
    cursor: int  # next Silver version to read
    alive: Callable[[], None] = lambda: None  # a sign of progress, for the liveness probe
    dimensions: Dimensions | None = None  # tables SQL queries join
    recorded: dict[str, dict[str, int]] = field(default_factory=dict)  # query -> dimension versions in Gold
    _latest: tuple[float, int | None] = field(default=(float("-inf"), None), init=False)  # (when listed, version)

    @classmethod
    def open(cls, settings: Settings, source: SilverSource, storage: Storage, progress: ProgressReporter,
             from_version: int | None = None, dry_run: bool = False,
             carried: dict[str, QueryStats] | None = None, alive: Callable[[], None] = lambda: None,
             before_writing: Callable[[dict[str, int]], None] | None = None) -> Stream:
        """Open Silver and each query's Gold table; a query with Gold offsets resumes from
        them, a new one starts at `from_version` (or the configured starting version),
        resolved once and recorded in its Gold before any row is read. Every Gold table is
        read, and `before_writing` sees each resuming query's Gold position, before anything
        is written; nothing is written in a dry run. `carried` stats continue those of a
        previous Stream as of each query's last Gold commit (what came after is processed again)."""
        carried = carried or {}
        dimensions = Dimensions(dict(settings.tables), storage, settings.source.max_dimension_rows) \
            if settings.tables else None
        source.open()
        alive()
        runs = []
        recorded: dict[str, dict[str, int]] = {}
        for q in settings.queries:
            sink = GoldSink(settings.gold_path(q), q, None, storage)
            gold_here = f"the Gold table of query {q.name!r}"
            try:
                types = source.engine_types(q, sink.load())  # the one open of this Gold table
            except GoldstreamError:  # a file, or someone's folder, is named as such: not as a damaged table
                refuse_foreign_folder(settings.gold_path(q), storage, gold_here)
                raise
            if q.sql_query is not None and q.sql_query.tables:
                assert dimensions is not None
                types = {**types, **dimensions.types(q.sql_query.tables)}
            sink.schema = gold_schema(q, types)
            offsets = sink.open(create=False, repair=not dry_run, loaded=True)
            if sink.dt is None:  # no table yet: goldstream will create it, only in a folder of its own
                refuse_foreign_folder(settings.gold_path(q), storage, gold_here)
            if q.late_sink:
                refuse_foreign_folder(q.late_sink, storage, f"the late sink of query {q.name!r}")
            skew = settings.max_event_time_skew(q)
            clock = EventClock.build(q, None if offsets is None else offsets.watermark_us,
                                     rebuild_watermark_us=None if offsets is None else offsets.low_watermark_us)
            engine = windowed_operator(q, input_schema=types, keep_late_rows=q.late_sink is not None,
                                       max_event_time_skew_us=None if skew is None else to_us(skew),
                                       event_clock=clock, dimensions=dimensions)
            if offsets is not None:
                _check_silver_reaches(source, q, offsets.version)
                start = None if offsets.start is None else Start(offsets.start, offsets.snapshot)
                run = QueryRun(q, engine, sink, progress, offsets.low_version, offsets.version, offsets.version,
                               start=start, dry_run=dry_run)
                log.info("query %s resumes after Silver version %d (watermark %s, rebuilding from %d)",
                         q.name, offsets.version, fmt_us(offsets.watermark_us), offsets.low_version)
            else:
                starting = from_version if from_version is not None else settings.source.starting_version
                start = source.resolve_start(starting)  # before creating Gold: may refuse
                run = QueryRun(q, engine, sink, progress, start.version, start.version - 1, start.version - 1,
                               start=start, dry_run=dry_run, new=True)
            run.future_warning_us = to_us(settings.source.future_event_time_warning)
            if q.late_sink and not dry_run:
                run.late_sink = LateSink(q.late_sink, q.resolved_app_id, storage, query=q.name)
            if q.name in carried:
                run.stats = run.committed_stats = carried[q.name]
            if offsets is not None:
                run.late_base = offsets.late_rows - run.stats.rows_late
                if offsets.dimensions:
                    recorded[q.name] = dict(offsets.dimensions)
            runs.append(run)
            alive()
        _use_snapshot(source, runs)
        if before_writing is not None:
            before_writing({run.query.name: run.committed for run in runs if not run.new})
        for run in runs:
            if run.new:
                run.record_start()
                alive()
        return cls(source, runs, min(r.rebuild_from for r in runs), alive, dimensions, recorded)

    def step(self, stop: int | None = None) -> bool:
        """Process one batch (up to `stop`); False when there was nothing new."""
        t0 = time.perf_counter()
        batch = self.source.next_batch(self.cursor, stop, on_commit=self.alive)
        if batch is None:
            return False
        t_log = time.perf_counter()
        # The one pass over the rows, shared by the queries (engine/rowpass.py): rows stream
        # from Parquet into partials at state grain, chunk by chunk; the rest of each query's
        # step runs on those, once the whole batch is in (the watermark moves per whole commit).
        active = [run for run in self.runs if batch.last >= run.rebuild_from]
        self._pin_dimensions(batch.first)
        scans = self.source.scans(batch)
        # where the batch will be cut (a query's rebuild part, then its live part)
        splits = [v for r in active for v in (r.rebuild_from, r.processed + 1)]
        partials = self.source.reading(batch, lambda: batch_partials(
            [r.engine for r in active], scans, batch.first, batch.last, splits, self.alive))
        t_read = time.perf_counter()
        self.alive()
        durations = {"latestOffset": (t_log - t0) * 1000, "getBatch": (t_read - t_log) * 1000}
        rows = pl.concat([scan.versioned() for scan in scans], how="vertical_relaxed")
        for run, own in zip(active, partials):
            run.process(batch, own, rows, durations, latest=lambda: self._latest_version(batch.last))
            self.alive()
        self.cursor = batch.last + 1
        return True

    def _pin_dimensions(self, first: int) -> None:
        """A batch that rebuilds a query's open windows joins the dimension versions its Gold
        recorded (as the batches that built them did); any other joins the latest versions."""
        if self.dimensions is None:
            return
        pinned: dict[str, int] = {}
        for run in self.runs:
            if first <= run.processed:
                pinned.update(self.recorded.get(run.query.name, {}))
        if pinned:
            self.dimensions.pin(pinned)
        else:
            self.dimensions.unpin()

    def _latest_version(self, read: int) -> int | None:
        """Silver's latest version for lag metrics: a cached listing, never below `read`."""
        listed_at, latest = self._latest
        if time.monotonic() - listed_at >= LATEST_REFRESH_S:
            latest = self.source.latest_version()
            self._latest = (time.monotonic(), latest)
        return read if latest is None else max(latest, read)


def _use_snapshot(source: SilverSource, runs: list[QueryRun]) -> None:
    """Tell the source which version, if any, is read as a snapshot: the one a query started
    from, as long as it still feeds that query's state. One Silver version read two ways by
    two queries of one pipeline (a snapshot for one, a commit for the other) cannot be served
    by the one read both share."""
    def reads_snapshot(run: QueryRun) -> bool:
        return run.start is not None and run.start.snapshot and run.rebuild_from <= run.start.version

    for run in filter(reads_snapshot, runs):
        assert run.start is not None
        version = run.start.version
        other = next((o for o in runs if o.rebuild_from <= version and not (reads_snapshot(o) and o.start == run.start)),
                     None)
        if other is not None:
            raise SourceError(
                f"query {run.query.name!r} started from the snapshot of Silver {source.uri} at version {version} "
                f"and still needs it, while query {other.query.name!r} reads Silver from version "
                f"{other.rebuild_from} commit by commit: one pipeline reads each version once, for every query. "
                "Run them under separate configurations until both are past that version."
            )
        source.resolve_start(run.start)


def _check_silver_reaches(source: SilverSource, query: QuerySpec, version: int) -> None:
    latest = source.latest_version()
    if latest is None or latest < version:
        raise SourceError(
            f"Gold of query {query.name!r} records Silver version {version} as processed, but "
            f"Silver {source.uri} only goes to version {latest}: Silver was recreated or "
            "restored to an older version. Point the query at a new Gold path (or name) to start fresh."
        )
