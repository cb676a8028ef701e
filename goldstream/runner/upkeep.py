"""Maintenance on a schedule, in bounded slices: `run` between batches, `maintain` at once.

`run` must not hold a batch back for long, so maintenance is cut into slices, one per
loop iteration: one compaction bin (at most about target_file_size bytes read and
written), or the log work of one table (its properties, a checkpoint, the cleanup), or
the vacuum of one table. A compaction round starts every compact_every and goes through
every table the queries write, a vacuum round every vacuum_every. What to do is planned
once per table and round; each slice then works on the table as it is (see
TableMaintenance), fenced by its owner's offsets, so an instance that lost a table stops
maintaining it as it stops writing it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable


from goldstream.columns import LATE_MISSED_WINDOW_END, LATE_VERSION
from goldstream.config import MaintenanceSpec, QuerySpec, Settings
from goldstream.durations import format_duration, to_us
from goldstream.observability import Metrics
from goldstream.sink.gold import GoldSink
from goldstream.sink.late import LateSink
from goldstream.sink.maintenance import Bin, Layout, TableMaintenance
from goldstream.sink.schema import gold_schema
from goldstream.source.reader import SilverSource
from goldstream.storage import Storage

log = logging.getLogger(__name__)

LATE_LAYOUT = Layout(LATE_MISSED_WINDOW_END, (LATE_MISSED_WINDOW_END, LATE_VERSION))


@dataclass(frozen=True)
class Table:
    query: str
    kind: str  # "gold" or "late"
    maintenance: TableMaintenance

    @property
    def key(self) -> tuple[str, str]:
        return self.query, self.kind

    @property
    def labels(self) -> dict[str, str]:
        return {"query": self.query, "table": self.kind}


def tables(query: QuerySpec, gold: GoldSink, late: LateSink | None, storage: Storage, fenced: bool) -> list[Table]:
    """The tables of one query (a late table once it holds rows). `fenced`: each slice first checks that the
    sink's offsets are still the ones it last saw or wrote (the owner in `run`); `maintain`
    writes neither rows nor offsets, and stands beside the owner unfenced."""
    out = [Table(query.name, "gold", TableMaintenance(
        gold.committer, Layout(query.gold_columns.window_start,
                                 (query.gold_columns.window_start, *query.gold_columns.keys)), storage,
        (lambda: gold.fence) if fenced else dict))]
    if late is not None and late.written_through >= 0:
        out.append(Table(query.name, "late", TableMaintenance(late.committer, LATE_LAYOUT, storage,
                                                              (lambda: late.fence) if fenced else dict)))
    return out


def maintain(settings: Settings, storage: Storage, dry_run: bool = False) -> dict[tuple[str, str], Report]:
    """`goldstream maintain`: one whole round now on every table of the queries, safe beside
    a live `run` (see `tables`). Each Gold table is checked as `run` checks it (its query's
    definition and columns, which follow Silver's types) and audited before it is touched."""
    source = SilverSource(settings.source, settings.queries, storage)
    current: list[Table] = []
    for q in settings.queries:
        uri = settings.gold_path(q)
        gold = GoldSink(uri, q, gold_schema(q, source.engine_types(q, uri)), storage)
        if gold.open(create=False, repair=False) is None:  # a commit of ours now would read as lost offsets
            log.info("query %s has no Gold offsets yet (%s): nothing to maintain", q.name, uri)
            continue
        late = LateSink(q.late_sink, q.resolved_app_id, storage, query=q.name) if q.late_sink else None
        current += tables(q, gold, late, storage, fenced=False)
    return Upkeep(settings.maintenance, dry_run=dry_run, immediate=True).run_all(current)


@dataclass
class Report:
    """One table's round, for the log and `maintain`'s summary."""

    files_before: int | None = None
    files_after: int | None = None
    compacted: int = 0  # files replaced
    bytes_rewritten: int = 0
    vacuumed: list[str] = field(default_factory=list)
    gave_up: bool = False  # a compaction lost its race: the next round does it


@dataclass
class _Pending:
    key: tuple[str, str]
    bins: list[Bin] | None = None  # None: not planned yet
    report: Report = field(default_factory=Report)


class Upkeep:
    """When, and how much at a time. `immediate`: both rounds are due now (`maintain`),
    else one interval after start (`run`)."""

    def __init__(self, spec: MaintenanceSpec, metrics: Metrics | None = None, dry_run: bool = False,
                 immediate: bool = False, now: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.metrics = metrics or Metrics()
        self.dry_run = dry_run
        self._now = now
        start = now()
        self._next_compact = start if immediate else start + _seconds(spec.compact_every)
        self._next_vacuum = start if immediate else start + _seconds(spec.vacuum_every)
        self._compacting: list[_Pending] = []
        self._vacuuming: list[tuple[str, str]] = []
        self.reports: dict[tuple[str, str], Report] = {}

    def slice(self, current: list[Table]) -> bool:
        """Do one slice of the work due on the `current` tables; False when none is due."""
        now = self._now()
        if not self._compacting and now >= self._next_compact:
            self._compacting = [_Pending(t.key) for t in current]
            self._next_compact = now + _seconds(self.spec.compact_every)
        if not self._vacuuming and now >= self._next_vacuum:
            self._vacuuming = [t.key for t in current]
            self._next_vacuum = now + _seconds(self.spec.vacuum_every)
        by_key = {t.key: t for t in current}
        if self._compacting:
            pending = self._compacting[0]
            if pending.key in by_key:
                self._compact(by_key[pending.key], pending)
            else:
                self._compacting.pop(0)
            return True
        if self._vacuuming:
            key = self._vacuuming.pop(0)
            if key in by_key:
                self._vacuum(by_key[key])
            return True
        return False

    def run_all(self, current: list[Table]) -> dict[tuple[str, str], Report]:
        """Every slice due now, one after the other (`maintain`)."""
        while self.slice(current):
            pass
        return self.reports

    # -- slices ---------------------------------------------------------------------------

    def _compact(self, table: Table, pending: _Pending) -> None:
        """One bin of the table (planned at its first slice of the round); once none is
        left, its log work, and the table is done for this round."""
        m, report = table.maintenance, pending.report
        self.reports[table.key] = report
        if pending.bins is None:
            files = m.files()
            pending.bins = m.plan(files, self.spec.target_file_size)
            report.files_before = len(files)
            if pending.bins:
                log.info("%s: %d data files, %d bins of small files to compact", m.what, len(files), len(pending.bins))
        if pending.bins:
            self._compact_bin(table, pending.bins, report)
        else:
            self._compacting.pop(0)
            self._finish(table, report)

    def _compact_bin(self, table: Table, bins: list[Bin], report: Report) -> None:
        m, labels = table.maintenance, table.labels
        t0 = time.perf_counter()
        work = bins.pop(0)
        done = m.compact(work, self.spec.target_file_size, self.dry_run)
        if done.committed or self.dry_run:
            report.compacted += done.files_before
            report.bytes_rewritten += done.bytes_rewritten
            if not self.dry_run:
                self.metrics.bytes_rewritten.labels(**labels).inc(done.bytes_rewritten)
            log.info("%s: %s %d files of %s (%d bytes) into %d; %d bins left", m.what,
                     "would compact" if self.dry_run else "compacted", done.files_before,
                     work.day or "unknown days", done.bytes_rewritten, done.files_after, len(bins))
        else:  # lost a race: the next round plans afresh
            report.gave_up = True
            bins.clear()
        self.metrics.maintenance_duration.labels(**labels, action="compact").observe(time.perf_counter() - t0)

    def _finish(self, table: Table, report: Report) -> None:
        """The table's log work after its compaction, and its files before and after."""
        m, labels = table.maintenance, table.labels
        t0 = time.perf_counter()
        if not self.dry_run:
            self._tidy_log(table)
        report.files_after = report.files_before if self.dry_run else len(m.files())
        self.metrics.table_files.labels(**labels, when="before").set(report.files_before or 0)
        self.metrics.table_files.labels(**labels, when="after").set(report.files_after or 0)
        self.metrics.maintenance_duration.labels(**labels, action="log").observe(time.perf_counter() - t0)
        log.info("%s: maintenance round done, data files %s -> %s", m.what, report.files_before, report.files_after)

    def _tidy_log(self, table: Table) -> None:
        m = table.maintenance
        m.configure_log(self.spec.checkpoint_every, self.spec.log_retention)  # a lost race: the next round
        m.checkpoint()
        m.clean_log()

    def _vacuum(self, table: Table) -> None:
        m = table.maintenance
        report = self.reports.setdefault(table.key, Report())
        t0 = time.perf_counter()
        report.vacuumed = m.vacuum(self.spec.retention, self.dry_run)  # a lost race: nothing, the next round
        if not self.dry_run:
            self.metrics.files_vacuumed.labels(**table.labels).inc(len(report.vacuumed))
        self.metrics.maintenance_duration.labels(**table.labels, action="vacuum").observe(time.perf_counter() - t0)
        log.info("%s: vacuum %s %d files older than %s", m.what, "would delete" if self.dry_run else "deleted",
                 len(report.vacuumed), format_duration(self.spec.retention))


def _seconds(td: timedelta) -> float:
    return to_us(td) / 1e6
