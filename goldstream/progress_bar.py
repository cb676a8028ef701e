"""A progress bar for long work on a terminal: Silver versions done of total, rows/s,
event time reached, time left.

It is fed by the progress records (a `ProgressReporter` listener), so it costs the loop
nothing it does not already compute. While it is shown, the per-batch text log lines it
replaces are held back and every other log line prints above it; JSON log lines (stdout
not a terminal) are left as they are, for the machines that read them.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:  # rich is imported only when a bar is shown (a terminal): ~50 ms of every start
    from rich.console import Console
    from rich.progress import Progress

    from goldstream.engine.state import StepResult
    from goldstream.observability import ProgressReporter


@contextmanager
def shown(progress: ProgressReporter, title: str, queries: int, target: Callable[[], int | None]) -> Iterator[None]:
    """A bar fed by `progress` (`queries` report each batch) while the block runs, when
    stderr is a terminal (a person watches); otherwise nothing changes. With a `target`
    known before the first batch (replay), the per-batch lines are held back from the start."""
    if not sys.stderr.isatty():
        yield
        return
    bar = VersionProgress(title, target, queries)
    progress.add_listener(bar.on_progress)
    try:
        yield
    finally:
        bar.stop()


class VersionProgress:
    """Silver versions processed towards `target()` (None: the latest version when the first
    batch was read, as `run` catching up). The bar ends by itself once every one of the
    `queries` reported the target version."""

    def __init__(self, title: str, target: Callable[[], int | None], queries: int,
                 console: Console | None = None) -> None:
        self.title = title
        self.target = target
        self.queries = queries
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.progress: Progress | None = None
        self._task: Any = None
        self._query: str | None = None  # rows are counted on one query's records: each sees the same batch
        self._first = 0
        self._last = 0
        self._reached: set[str] = set()
        self._rows = 0
        self._t0 = time.monotonic()  # rows/s over the whole run, opening included
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    def on_progress(self, record: dict[str, Any], result: StepResult) -> None:
        """A `ProgressReporter` listener."""
        source = record["sources"][0]
        if self._query is None:
            self._query = record["name"]
            self._first = source["startOffset"]
            target = self.target()
            self._last = source["latestOffset"] if target is None else target
            if self._last is None or self._last <= source["endOffset"]:
                return  # one batch does it all: nothing to watch
            self._start()
        if self.progress is None:
            return
        if source["endOffset"] >= self._last:
            self._reached.add(record["name"])
        if record["name"] == self._query:
            self._rows += record["numInputRows"]
            elapsed = max(time.monotonic() - self._t0, 1e-6)
            event = (record.get("eventTime") or {}).get("max") or "–"
            self.progress.update(self._task, completed=min(source["endOffset"], self._last) - self._first + 1,
                                 rate=f"{self._rows / elapsed:,.0f} rows/s", event=event.replace("T", " ")[:19])
        if len(self._reached) >= self.queries:
            self.stop()

    def _start(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("versions"),
            TextColumn("{task.fields[rate]}"), TextColumn("event time {task.fields[event]}"), TimeRemainingColumn(),
            console=self.console, redirect_stderr=True)
        self._task = self.progress.add_task(self.title, total=self._last - self._first + 1, rate="–", event="–")
        self.progress.start()
        for handler in logging.getLogger().handlers:  # log lines print above the bar
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.console.file:
                self._handlers.append((handler, handler.setStream(sys.stderr)))
                handler.addFilter(_not_progress)

    def stop(self) -> None:
        if self.progress is None:
            return
        for handler, stream in self._handlers:
            handler.removeFilter(_not_progress)
            handler.setStream(stream)
        self._handlers.clear()
        self.progress.stop()
        self.progress = None


def _not_progress(record: logging.LogRecord) -> bool:
    """The per-batch lines the bar stands for."""
    return not hasattr(record, "progress")
