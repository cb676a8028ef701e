"""Health, readiness and Prometheus metrics over HTTP, for Kubernetes probes and scraping.

`/healthz` is 200 while the loop iterates (503 once the last iteration is older than
`health_stale_factor` × poll interval: a stuck process gets restarted); `/readyz` is
200 once Silver and Gold were reached and state is rebuilt; `/metrics` is Prometheus.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from goldstream.config import to_us

if TYPE_CHECKING:
    from goldstream.runner import Pipeline

log = logging.getLogger(__name__)


def _handler(pipeline: Pipeline) -> type[BaseHTTPRequestHandler]:
    settings = pipeline.settings
    stale_after = max(1.0, settings.server.health_stale_factor * to_us(settings.source.poll_interval) / 1e6)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                age = time.monotonic() - pipeline.last_iteration
                ok = age <= stale_after
                self._send(200 if ok else 503, f"{'ok' if ok else 'stale'}: last iteration {age:.1f}s ago\n")
            elif path == "/readyz":
                self._send(200 if pipeline.ready else 503, "ready\n" if pipeline.ready else "starting\n")
            elif path == "/metrics":
                self._send(200, generate_latest(pipeline.progress.metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, "not found\n")

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


def start_http_server(pipeline: Pipeline, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _handler(pipeline))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="goldstream-http", daemon=True).start()
    log.info("health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", host, server.server_address[1])
    return server
