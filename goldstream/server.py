"""Health, readiness and Prometheus metrics over HTTP, for Kubernetes probes and scraping.

`/healthz` is 200 while the loop iterates (503 once the last iteration is older than
`health_stale_factor` × poll interval, at least 1 s: a process stuck in a storage call
gets restarted); `/readyz` is 200 once Silver and Gold were reached and every query's
state is rebuilt up to the Silver version its Gold records; `/metrics` is Prometheus.

The server runs in its own daemon thread and only reads the pipeline's status snapshot
(which never waits) and its metrics registry, so it keeps answering while the loop is
blocked — which is the point of a liveness probe. It never touches storage itself.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from goldstream.config import Settings
from goldstream.durations import to_us
from goldstream.errors import ConfigError
from goldstream.runner.status import PipelineStatus

log = logging.getLogger(__name__)


def stale_after_s(settings: Settings) -> float:
    """Seconds without a loop iteration after which `/healthz` reports stale."""
    return max(1.0, settings.server.health_stale_factor * to_us(settings.source.poll_interval) / 1e6)


def readiness(status: PipelineStatus) -> tuple[bool, str]:
    """Ready once `start()` reached Silver and Gold and the state of every query has been
    rebuilt: until the loop has re-read Silver past the version a query's Gold records, its
    open windows are incomplete, so its lag and watermark are not yet meaningful."""
    if not status.ready:
        return False, "starting: opening Silver and Gold"
    behind = status.rebuilding()
    if behind:
        return False, f"rebuilding state of {', '.join(behind)} (Silver version {status.cursor})"
    return True, "ready"


def _handler(status: Callable[[], PipelineStatus], metrics: CollectorRegistry,
             stale_after: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                age = time.monotonic() - status().last_iteration
                ok = age <= stale_after
                self._send(200 if ok else 503,
                           f"{'ok' if ok else 'stale'}: last iteration {age:.1f}s ago (limit {stale_after:.1f}s)\n")
            elif path == "/readyz":
                ok, why = readiness(status())
                self._send(200 if ok else 503, why + "\n")
            elif path == "/metrics":
                self._send(200, generate_latest(metrics), CONTENT_TYPE_LATEST)
            else:
                self._send(404, "not found: try /healthz, /readyz or /metrics\n")

        def _send(self, code: int, body: str | bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug("http: " + fmt, *args)

    return Handler


def start_http_server(status: Callable[[], PipelineStatus], metrics: CollectorRegistry, stale_after: float,
                      port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve the probes (from `status` snapshots, `/healthz` stale after `stale_after`
    seconds without a loop iteration) and `metrics` from a daemon thread; returns the
    bound server."""
    try:
        server = ThreadingHTTPServer((host, port), _handler(status, metrics, stale_after))
    except OSError as err:
        raise ConfigError(
            f"cannot serve health and metrics on {host}:{port}: {err.strerror or err}. Choose a free port "
            "with --http-port or [server] http_port (0 disables the server)."
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="goldstream-http", daemon=True).start()
    log.info("health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", host, server.server_address[1])
    return server
