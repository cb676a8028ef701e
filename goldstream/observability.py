"""Logs, progress records and Prometheus metrics.

Each batch of each query yields one progress record shaped like Spark's
`StreamingQueryProgress`, logged as one JSON line (`{"progress": {...}}`), so tools
built for Spark's listener output can read it. Logs are JSON lines when stdout is not
a terminal (containers), readable lines on a terminal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from goldstream.secrets import redact

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from goldstream.engine.state import StepResult
    from goldstream.runner.status import QueryStatus
    from goldstream.source.reader import Batch

PROGRESS_LOGGER = "goldstream.progress"


def _iso(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_us(us: int | None) -> str | None:
    return None if us is None else _iso(us / 1e6)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if hasattr(record, "progress"):
            out["progress"] = record.progress
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname:<7} {record.getMessage()}"
        if hasattr(record, "progress"):
            p = record.progress
            line += (f" [{p['name']}] batch {p['batchId']}: {p['numInputRows']} rows, "
                     f"{p['sink']['numOutputRows']} windows, watermark {p['eventTime'].get('watermark')}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class RedactingFormatter(logging.Formatter):
    """Masks credential values in whatever `inner` formats: every logger (botocore,
    aiobotocore, s3fs, urllib3 included) at every level goes through the one root
    handler, so no record can carry a secret out, whoever wrote it."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def setup_logging(level: str = "INFO", json_lines: bool | None = None, route_native_stderr: bool = False) -> None:
    """JSON lines unless stdout is a TTY; one handler on the root logger, secrets masked.
    With `route_native_stderr` (replay and run), what native libraries write to stderr
    goes through that handler too (see `_route_native_stderr`)."""
    if json_lines is None:
        json_lines = not sys.stdout.isatty()
    if route_native_stderr:
        _route_native_stderr()  # first: a text handler must write to the real stderr, not the pipe
    handler = logging.StreamHandler(sys.stdout if json_lines else sys.stderr)
    handler.setFormatter(RedactingFormatter(JsonFormatter() if json_lines else TextFormatter()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# A Rust panic as the default hook prints it: a first line, the message, maybe a backtrace,
# then a "note: ..." line. Client libraries (delta-rs, object_store) print some while dropping a runtime
# after a failed request ("Already shut down"); the failure itself reaches Python as an
# exception, which is what gets reported.
_PANIC_START = re.compile(r"^thread '.*' panicked at ")
_native_routed = False


def _route_native_stderr() -> None:
    """Point file descriptor 2 at a pipe whose lines a thread logs as `goldstream.native`
    records: panic blocks at DEBUG, anything else at WARNING. Native code writes there
    directly, around Python's `sys.stderr`, which is why a handler cannot see it otherwise;
    `sys.stderr` itself is moved to a copy of the original descriptor, so what Python
    writes (the CLI's messages, tracebacks) still reaches stderr unchanged."""
    global _native_routed
    if _native_routed:
        return
    _native_routed = True
    sys.stderr.flush()
    original = os.dup(2)
    sys.stderr = os.fdopen(original, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    threading.Thread(target=_log_native_lines, args=(read_end,), name="goldstream-native-stderr", daemon=True).start()


def _log_native_lines(fd: int) -> None:
    log = logging.getLogger("goldstream.native")
    in_panic = False
    with os.fdopen(fd, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not line:
                in_panic = False
                continue
            in_panic = in_panic or bool(_PANIC_START.match(line))
            log.log(logging.DEBUG if in_panic else logging.WARNING, "%s", line)
            if line.startswith("note: "):  # the hook's last line, after the message or the backtrace
                in_panic = False


class Metrics:
    """Prometheus metrics, label `query`. One registry per pipeline (so tests and the demo
    can run several pipelines in one process), plus the standard process metrics
    (`process_resident_memory_bytes`, CPU, open fds) that size the Kubernetes limits."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # imported here: a command that serves no metrics (replay, status) does without it
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            PlatformCollector,
            ProcessCollector,
            disable_created_metrics,
        )

        disable_created_metrics()  # *_created series only clutter the scrape
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.input_rows = Counter("goldstream_input_rows", "Silver rows taken in", ["query"], registry=r)
        self.late_rows = Counter("goldstream_late_rows", "Rows dropped as late by the watermark", ["query"], registry=r)
        self.windows_emitted = Counter("goldstream_windows_emitted", "Closed windows appended to Gold", ["query"], registry=r)
        self.commits = Counter("goldstream_commits", "Gold commits", ["query"], registry=r)
        self.watermark = Gauge("goldstream_watermark_seconds", "Event-time watermark (Unix seconds)", ["query"], registry=r)
        self.lag_versions = Gauge("goldstream_lag_versions", "Silver versions not yet processed", ["query"], registry=r)
        self.lag_seconds = Gauge("goldstream_lag_seconds", "Event-time lag: wall clock minus max event time seen "
                                 "(negative: event time is ahead of the wall clock)", ["query"], registry=r)
        self.future_event_commits = Counter(
            "goldstream_future_event_commits", "Silver commits whose event time is far past the wall clock "
            "([source] future_event_time_warning); each moved the watermark there", ["query"], registry=r)
        self.storage_retries = Counter("goldstream_storage_retries", "Transient storage failures retried (each "
                                       "followed by every query resuming from its Gold offsets)", registry=r)
        self.state_rows = Gauge("goldstream_state_rows", "Partial-aggregate rows held in state", ["query"], registry=r)
        self.state_bytes = Gauge("goldstream_state_bytes", "Memory of the state's frames (Polars' estimate of "
                                 "their buffers)", ["query"], registry=r)
        self.batch_duration = Histogram("goldstream_batch_duration_seconds", "Batch processing time", ["query"],
                                        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        table = ["query", "table"]  # table: "gold" or "late"
        self.table_files = Gauge("goldstream_table_files", "Data files in the table, as the last maintenance round "
                                 "found them (when='before') and left them (when='after')", [*table, "when"], registry=r)
        self.bytes_rewritten = Counter("goldstream_maintenance_bytes_rewritten", "Bytes of small files rewritten "
                                       "by compaction", table, registry=r)
        self.files_vacuumed = Counter("goldstream_maintenance_files_vacuumed", "Files deleted by vacuum", table,
                                      registry=r)
        self.maintenance_duration = Histogram(
            "goldstream_maintenance_duration_seconds", "Duration of one slice of maintenance (action: compact, "
            "log, vacuum)", [*table, "action"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r)
        self._known: set[str] = set()

    def ensure(self, query: str, max_event_us: Callable[[], int | None]) -> None:
        """Create the query's series at zero before its first batch, so a scrape shows every
        query from the start (rate() and absent() alerts need the series to exist), and make
        the event-time lag a live value: it keeps growing while no data arrives."""
        if query in self._known:
            return
        self._known.add(query)
        for metric in (self.input_rows, self.late_rows, self.windows_emitted, self.commits, self.watermark,
                       self.lag_versions, self.state_rows, self.state_bytes, self.batch_duration,
                       self.future_event_commits):
            metric.labels(query=query)

        def lag() -> float:
            us = max_event_us()
            return 0.0 if us is None else time.time() - us / 1e6  # signed: a jump ahead is not "no lag"

        self.lag_seconds.labels(query=query).set_function(lag)


class NullMetrics:
    """Metrics nobody can scrape (`replay`, `status`: no HTTP server): every metric takes
    its updates and drops them, and prometheus_client is not even imported."""

    registry = None

    def __getattr__(self, name: str) -> _NullMetric:
        return _NULL_METRIC

    def ensure(self, query: str, max_event_us: Callable[[], int | None]) -> None:
        pass


class _NullMetric:
    def labels(self, *args: Any, **kwargs: Any) -> _NullMetric:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass

    def set_function(self, f: Callable[[], float]) -> None:
        pass


_NULL_METRIC = _NullMetric()

Listener = Callable[[dict[str, Any], "StepResult"], None]


class ProgressReporter:
    """Builds the per-batch progress record, logs it, and updates metrics."""

    def __init__(self, source_uri: str, metrics: Metrics | NullMetrics | None = None) -> None:
        self.source_uri = source_uri
        self.metrics: Any = metrics or Metrics()
        self.run_id = str(uuid.uuid4())
        self.log = logging.getLogger(PROGRESS_LOGGER)
        self.batch_ids: dict[str, int] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.max_event_us: dict[str, int] = {}
        self.listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(progress_record, step_result)` after each batch of each query, once
        its Gold commit (if any) is done: Spark's `StreamingQueryListener.onQueryProgress`.
        The demo uses it to show the windows just committed without re-reading Gold."""
        self.listeners.append(listener)

    def track(self, name: str) -> None:
        """Expose a query's metrics before its first batch."""
        self.metrics.ensure(name, lambda: self.max_event_us.get(name))

    def report(self, query: QueryStatus, batch: Batch, result: StepResult, durations: dict[str, float],
               latest: Callable[[], int | None]) -> dict[str, Any]:
        name = query.name
        batch_id = self.batch_ids.get(name, -1) + 1
        self.batch_ids[name] = batch_id
        total_ms = sum(durations.values())
        prev = self.last.get(name)
        since = (time.monotonic() - prev["_t"]) if prev else None  # a duration: never the wall clock
        if result.max_event_time_us is not None:
            self.max_event_us[name] = max(self.max_event_us.get(name, result.max_event_time_us), result.max_event_time_us)
        latest_v = latest()
        record: dict[str, Any] = {
            "id": query.app_id,
            "runId": self.run_id,
            "name": name,
            "timestamp": _iso(time.time()),
            "batchId": batch_id,
            "numInputRows": result.rows_in,
            "inputRowsPerSecond": (result.rows_in / since) if since else 0.0,
            "processedRowsPerSecond": (result.rows_in / (total_ms / 1000)) if total_ms else 0.0,
            "durationMs": {**{k: round(v, 3) for k, v in durations.items()}, "triggerExecution": round(total_ms, 3)},
            "eventTime": {"max": _iso_us(self.max_event_us.get(name)), "watermark": _iso_us(query.watermark_us)},
            "stateOperators": [{
                "operatorName": "windowedAggregation",
                "numRowsTotal": query.state_rows,
                "memoryUsedBytes": query.state_bytes,
                "numRowsDroppedByWatermark": result.rows_late,
                "numRowsDroppedNullEventTime": result.rows_null_time,
                "numRowsFiltered": result.rows_filtered,
            }],
            "sources": [{
                "description": f"DeltaSource[{self.source_uri}]",
                "startOffset": batch.first,
                "endOffset": batch.last,
                "latestOffset": latest_v,
                "numInputRows": result.rows_in,
            }],
            "sink": {"description": f"DeltaSink[{query.gold_uri}]", "numOutputRows": result.closed.height},
        }
        self.log.info("progress", extra={"progress": record})
        record["_t"] = time.monotonic()
        self.last[name] = record
        self.track(name)
        m, lbl = self.metrics, {"query": name}
        m.input_rows.labels(**lbl).inc(result.rows_in)
        m.late_rows.labels(**lbl).inc(result.rows_late)
        m.watermark.labels(**lbl).set(query.watermark_us / 1e6)
        if latest_v is not None:
            m.lag_versions.labels(**lbl).set(max(0, latest_v - query.processed))
        m.state_rows.labels(**lbl).set(query.state_rows)
        m.state_bytes.labels(**lbl).set(query.state_bytes)
        m.batch_duration.labels(**lbl).observe(total_ms / 1000)
        for listener in self.listeners:
            listener(record, result)
        return record
