"""One loop for the daemon and for replay: poll → read → engine → commit.

The Pipeline wires the parts from the settings and runs the loops; a Stream (the source
and one run per query) does each batch, and the Supervisor rebuilds the Stream from Gold
whenever a transient storage failure interrupts it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from goldstream.config import Settings
from goldstream.durations import to_us
from goldstream.errors import OwnershipLost, SourceError
from goldstream.observability import NullMetrics, ProgressReporter
from goldstream.retry import RetryPolicy
from goldstream.runner.bounds import ReplayBound
from goldstream.runner.query_run import QueryRun
from goldstream.runner.standby import Standby
from goldstream.runner.status import PipelineStatus
from goldstream.runner.stream import Stream
from goldstream.runner.supervisor import Supervisor
from goldstream.runner.upkeep import Upkeep, tables
from goldstream.source.reader import SilverSource
from goldstream.storage import Storage

log = logging.getLogger(__name__)

class Pipeline:
    """Silver source → one engine per query → one Gold sink per query."""

    def __init__(self, settings: Settings, storage: Storage | None = None,
                 from_version: int | None = None, dry_run: bool = False,
                 retry: RetryPolicy | None = None, metrics: bool = True) -> None:
        self.settings = settings
        self.storage = storage or Storage.from_env(settings.storage)
        self.source = SilverSource(settings.source, settings.queries, self.storage)
        self.from_version = from_version
        self.dry_run = dry_run  # status: rebuild state, never write
        # metrics: False for a command that serves none (replay): Prometheus is not even imported
        self.progress = ProgressReporter(self.source.uri, None if metrics else NullMetrics())
        for q in settings.queries:  # every query's series exists from the start
            self.progress.track(q.name)
        self.stop_event = threading.Event()
        self.supervisor = Supervisor(self._open, retry or RetryPolicy(), self.stop_event, self._where,
                                     on_retry=self.progress.metrics.storage_retries.inc)
        self._wait_for_table = False
        self.standing_by: str | None = None  # why `run` waits for another instance (not ready meanwhile)
        self._started = False
        self._bound: ReplayBound | None = None  # checked against Gold before anything is written
        self.replay_stop: int | None = None  # the last version the current replay is to process
        self.upkeep: Upkeep | None = None  # `run`'s maintenance between batches ([maintenance] enabled)

    @property
    def runs(self) -> list[QueryRun]:
        stream = self.supervisor.stream
        return [] if stream is None else stream.runs

    @property
    def cursor(self) -> int:
        """Next Silver version to read."""
        stream = self.supervisor.stream
        return 0 if stream is None else stream.cursor

    def status(self, detailed: bool = False) -> PipelineStatus:
        """A read-only snapshot, safe to take from another thread (it reads, never waits)."""
        stream = self.supervisor.stream
        return PipelineStatus(
            ready=stream is not None,
            standby=self.standing_by,
            cursor=0 if stream is None else stream.cursor,
            last_iteration=self.supervisor.last_iteration,
            queries=tuple(run.status(detailed) for run in ([] if stream is None else stream.runs)),
        )

    def summary(self) -> list[dict[str, Any]]:
        return [run.summary() for run in self.runs]

    # -- start ----------------------------------------------------------------------------

    def start(self, wait_for_table: bool = False) -> None:
        """Check Silver and Gold, restore each query's offsets (nothing is written here).
        With `wait_for_table` (the daemon), a missing Silver table is waited for first.
        Transient storage failures are retried (see Supervisor)."""
        self._wait_for_table = wait_for_table
        self._started = True
        self.supervisor.reopen()
        self.supervisor.run(lambda stream: None)

    def _open(self, previous: Stream | None) -> Stream | None:
        """(Re)build everything as a fresh process would: a new Silver source, each query's
        offsets read from its Gold table, its state rebuilt by the steps that follow."""
        self.source = SilverSource(self.settings.source, self.settings.queries, self.storage)
        self.storage.check_access(self._uris())  # credentials, permissions, buckets: fail fast
        if self._wait_for_table and not self.source.wait_until_exists(self.stop_event,
                                                                      on_poll=self.supervisor.keep_alive):
            return None  # stopped while waiting
        carried = {} if previous is None else {r.query.name: r.committed_stats for r in previous.runs}
        return Stream.open(self.settings, self.source, self.storage, self.progress,
                           from_version=self.from_version, dry_run=self.dry_run, carried=carried,
                           alive=self.supervisor.keep_alive, before_writing=self._check_bound)

    def _check_bound(self, positions: dict[str, int]) -> None:
        if self._bound is not None:
            self._bound.check(positions)

    def _uris(self) -> list[str]:
        """Every table this pipeline reads or writes."""
        uris = [self.source.uri]
        for q in self.settings.queries:
            uris += [self.settings.gold_path(q), *([q.late_sink] if q.late_sink else [])]
        return uris

    def _where(self) -> str:
        return f"Silver {self.source.uri} / Gold {self.settings.sink.gold_root}"

    # -- loops ----------------------------------------------------------------------------

    def step(self, stop: int | None = None) -> bool:
        """Process one batch (up to `stop`) of the opened pipeline; False when there was
        nothing new. Storage failures are not retried here (replay and run_forever do)."""
        stream = self.supervisor.stream
        assert stream is not None, "start() first"
        return self._step(stream, stop)

    def _step(self, stream: Stream, stop: int | None = None) -> bool:
        self.supervisor.keep_alive()
        return stream.step(stop)

    def replay(self, to_version: int | None = None, flush: bool = False,
               on_batch: Callable[[Pipeline], None] | None = None) -> bool:
        """Process Silver up to `to_version` (default: the latest now) and return whether it
        got there (False: stopped first; what was processed is recorded in Gold). Starts
        the pipeline if start() was not called, checking the bound before anything is
        written (see ReplayBound)."""
        self._bound = ReplayBound(to_version, flush)
        if not self._started:
            self.start()
        elif (stream := self.supervisor.stream) is not None:
            self._bound.check({run.query.name: run.committed for run in stream.runs})
        stop = to_version if to_version is not None else self.supervisor.run(lambda s: s.source.latest_version())
        if self.stop_event.is_set():
            return False
        if stop is None:
            raise SourceError(f"Silver table {self.source.uri} has no commits")
        self.replay_stop = stop
        return self.supervisor.run(lambda stream: self._replay_to(stream, stop, flush, on_batch)) is True

    def _replay_to(self, stream: Stream, stop: int, flush: bool,
                   on_batch: Callable[[Pipeline], None] | None) -> bool:
        """replay's body; after a storage failure it runs again on the Stream rebuilt from Gold.
        When every query's Gold is already at `stop` or past it there is nothing to process,
        nor a state to rebuild unless it is to be flushed."""
        if flush or any(run.committed < stop for run in stream.runs):
            while not self.stop_event.is_set() and self._step(stream, stop):
                if on_batch:
                    on_batch(self)
        stopped = self.stop_event.is_set()
        if flush and not stopped:
            for run in stream.runs:  # every query's check before any query writes
                run.check_flush()
        for run in stream.runs:  # stopped or not, record how far each query got
            run.finish(flush and not stopped)
        return not stopped

    def run_forever(self, poll_interval_s: float, wait_for_table: bool = False) -> None:
        """The daemon loop: poll, process what is new, commit, sleep; until stop_event.
        Losing a Gold table to another instance makes this one a standby (runner/standby.py),
        also when that happens while opening (recording the start of a fresh Gold table):
        without start(), the loop opens the pipeline itself (`wait_for_table` as in start)."""
        if not self._started:
            self._wait_for_table = wait_for_table
            self._started = True
            self.supervisor.reopen()
        takeover_after_s = to_us(self.settings.sink.takeover_after) / 1e6
        if self.settings.maintenance.enabled:
            self.upkeep = Upkeep(self.settings.maintenance, self.progress.metrics)
        while not self.stop_event.is_set():
            try:
                did = self.supervisor.run(self._poll)
            except OwnershipLost as lost:
                self._stand_by(lost, poll_interval_s, takeover_after_s)
                continue
            finally:
                self.supervisor.keep_alive()
            if not did:
                self.stop_event.wait(poll_interval_s)

    def _stand_by(self, lost: OwnershipLost, poll_interval_s: float, takeover_after_s: float) -> None:
        """Wait (not ready, alive, polling) until the owner looks gone, then resume from Gold."""
        self.standing_by = f"standby: {lost}"
        log.warning("%s Standing by (not ready): polling every %gs; this instance resumes once these Gold tables "
                    "have not moved for %gs while Silver has new versions", lost, poll_interval_s, takeover_after_s)
        watch = Standby([self.settings.gold_path(q) for q in self.settings.queries], self.storage,
                        self.source.latest_version, takeover_after_s)
        while not self.stop_event.wait(poll_interval_s):
            self.supervisor.keep_alive()
            if self.supervisor.run(lambda stream: watch.observe()):
                break
        self.supervisor.reopen()  # as a restart would: from Gold's offsets
        self.standing_by = None

    def _poll(self, stream: Stream) -> bool:
        """One batch, then one slice of maintenance if some is due (the loop goes on without
        sleeping while it lasts): in this loop, so that it is fenced, retried and stood by
        exactly as the batches' commits are."""
        did = self._step(stream)
        if not did:
            for run in stream.runs:
                run.advance_if_idle()
        if self.upkeep is not None:
            current = [t for run in stream.runs for t in tables(run.query, run.sink, run.late_sink, self.storage,
                                                               fenced=True)]
            did = self.upkeep.slice(current) or did
        return did
