"""Keeping a Stream going: rebuild from Gold after a transient storage failure, liveness.

Why rebuild rather than retry the failed call: a batch can fail after the engine took its
rows in, or after one query committed and before the next did, so in-memory state may be
ahead of Gold. Gold's `txn` offsets are the only state known to match Gold's rows;
rebuilding from them is exactly what a restart does, so a retry can neither lose nor
duplicate a window, and as a Gold commit is one atomic Delta commit, nothing partial is
ever committed.

The backoff spans consecutive failures, not one call: after a rebuild, the first batch
only re-reads what Gold records, which succeeds even while every write fails, so it is
no sign of recovery. Only real progress (a Gold commit, or a Silver version processed
beyond the previous high-water mark) starts the next outage from the first delay.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

from goldstream.errors import TransientStorageError
from goldstream.retry import RetryPolicy, storage_failure
from goldstream.runner.stream import Stream

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Builds a Stream as a fresh process would (given the previous one, for its statistics);
# None if stopped while waiting for Silver.
OpenStream = Callable[[Stream | None], Stream | None]


class Supervisor:
    def __init__(self, open_stream: OpenStream, retry: RetryPolicy, stop_event: threading.Event,
                 where: Callable[[], str], on_retry: Callable[[], None] = lambda: None) -> None:
        self._open_stream = open_stream
        self._on_retry = on_retry  # counts each transient failure ridden out (a metric)
        self.retry = retry  # the daemon passes retry.FOREVER
        self.stop_event = stop_event
        self._where = where  # names the tables in failure messages
        self.stream: Stream | None = None  # None until opened, and while being rebuilt
        self._must_open = True  # (re)build from Silver and Gold before the next action
        self.last_iteration = time.monotonic()
        self._backoff = retry.backoff()  # across calls: reset only by real progress
        self._high_water = (-1, -1)  # the furthest (Gold commit, Silver version processed) seen

    def reopen(self) -> None:
        """Build the Stream afresh before the next action."""
        self._must_open = True

    def keep_alive(self) -> None:
        """Record a sign of progress (what `/healthz` checks): called at every poll and at
        every step within a batch, so only a loop where nothing moves goes stale."""
        self.last_iteration = time.monotonic()

    def run(self, action: Callable[[Stream], _T]) -> _T | None:
        """Run `action` on the Stream, riding out transient storage failures (connection
        refused or reset, timeouts, 5xx): each is logged as a WARNING naming the tables,
        the cause and the attempt, waited out with exponential backoff and jitter, and
        followed by a rebuild of the Stream from Gold before `action` runs again.

        A permanent failure (credentials rejected, access denied, no such bucket) raises
        StorageAccessError at once; `retry` bounds how long failures are retried (forever
        in the daemon), then TransientStorageError. Returns None if stopped meanwhile."""
        backoff = self._backoff
        while True:
            try:
                if self._must_open:
                    previous, self.stream = self.stream, None  # not ready while rebuilding
                    self.stream = self._open_stream(previous)
                    self._must_open = False
                if self.stream is None or self.stop_event.is_set():
                    return None  # stopped while waiting for Silver
                result = action(self.stream)
                self._note_progress()
                return result
            except Exception as err:
                self._note_progress()
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
                self._on_retry()
                if self._pause(delay):
                    return None

    def _note_progress(self) -> None:
        """Reset the backoff if the Stream got further than ever before."""
        if self.stream is None or not self.stream.runs:
            return
        gold = max(run.committed for run in self.stream.runs)
        silver = max(run.processed for run in self.stream.runs)
        if gold > self._high_water[0] or silver > self._high_water[1]:
            if self._high_water != (-1, -1):  # the first Stream's position is no progress
                self._backoff.reset()
            self._high_water = (max(gold, self._high_water[0]), max(silver, self._high_water[1]))

    def _pause(self, seconds: float) -> bool:
        """Wait `seconds` (True if stopped meanwhile), keeping the liveness clock fresh: a
        loop waiting out a storage outage is alive, and restarting it would not help."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.keep_alive()
            if self.stop_event.wait(min(left, 0.5)):
                return True
        self.keep_alive()
        return self.stop_event.is_set()
