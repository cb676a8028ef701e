"""Health, readiness and Prometheus metrics over HTTP, for Kubernetes probes and scraping.

`/healthz` is 200 while the loop makes progress — each poll, each Silver commit read,
each query processed and committed, each wait of a storage backoff is a sign of life —
and 503 once the last one is older than `health_stale_factor` × poll interval (at least
1 s): a long batch that moves stays alive, a process stuck in one storage call is
restarted. `/readyz` is 200 once Silver and Gold were reached and every query's state is
rebuilt up to the Silver version its Gold records (503 while standing by for another
instance that owns the Gold tables). `/metrics` is Prometheus. With a status page, `/`
and `/api/*` serve it (goldstream/web/); `/api/*` shows data, so an optional bearer token
closes it, compared in constant time; the probes and `/metrics` stay open.

The server runs in its own daemon thread and only reads the pipeline's status snapshot
(which never waits) and its metrics registry, so it keeps answering while the loop is
blocked — which is the point of a liveness probe. It never touches storage itself.

It must also survive the clients a cluster throws at it: a connection costs a worker only
once its request has arrived (idle connections wait in one selector and are dropped after
`request_timeout_s`), a small fixed pool answers, a slow client is cut off after the same
timeout, the listen backlog holds a burst of scrapes, and a client hanging up early is
one DEBUG line rather than a traceback on stderr.
"""

from __future__ import annotations

import hmac
import json
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from goldstream.config import Settings
from goldstream.durations import to_us
from goldstream.errors import ConfigError
from goldstream.runner.status import PipelineStatus

if TYPE_CHECKING:
    from goldstream.web.app import StatusApp

log = logging.getLogger(__name__)

WORKERS = 4  # probes and scrapes take milliseconds: a few threads answer a whole burst
REQUEST_TIMEOUT_S = 5.0  # an idle or slow client is dropped after this
BACKLOG = 256  # pending connections the kernel holds: a Prometheus scrape burst
MAX_WAITING = 512  # accepted connections awaiting their request; beyond, the oldest is dropped


def stale_after_s(settings: Settings) -> float:
    """Seconds without a loop iteration after which `/healthz` reports stale."""
    return max(1.0, settings.server.health_stale_factor * to_us(settings.source.poll_interval) / 1e6)


def liveness(status: PipelineStatus, stale_after: float) -> tuple[bool, str]:
    """Alive while the loop's last sign of life is at most `stale_after` seconds old."""
    age = time.monotonic() - status.last_iteration
    ok = age <= stale_after
    return ok, f"{'ok' if ok else 'stale'}: last progress {age:.1f}s ago (limit {stale_after:.1f}s)"


def readiness(status: PipelineStatus) -> tuple[bool, str]:
    """Ready once `start()` reached Silver and Gold and the state of every query has been
    rebuilt: until the loop has re-read Silver past the version a query's Gold records, its
    open windows are incomplete, so its lag and watermark are not yet meaningful."""
    if status.standby:
        return False, status.standby
    if not status.ready:
        return False, "starting: opening Silver and Gold"
    behind = status.rebuilding()
    if behind:
        return False, f"rebuilding state of {', '.join(behind)} (Silver version {status.cursor})"
    return True, "ready"


def _handler(status: Callable[[], PipelineStatus], metrics: CollectorRegistry, stale_after: float,
             timeout_s: float, page: StatusApp | None, token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # socket timeout for reading the request and writing the answer

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path, _, query_string = self.path.partition("?")
            if path == "/healthz":
                ok, why = liveness(status(), stale_after)
                self._send(200 if ok else 503, why + "\n")
            elif path == "/readyz":
                ok, why = readiness(status())
                self._send(200 if ok else 503, why + "\n")
            elif path == "/metrics":
                self._send(200, generate_latest(metrics), CONTENT_TYPE_LATEST)
            elif page is not None and path.startswith("/api/") and not self._authorized():
                self._send(401, json.dumps({"error": "this status page needs its bearer token "
                                                     "(Authorization: Bearer <GOLDSTREAM_HTTP_TOKEN>)"}),
                           "application/json", {"WWW-Authenticate": "Bearer"})
            elif page is not None and (answer := page.answer(path, query_string, self._health())) is not None:
                self._send(*answer)
            else:
                self._send(404, "not found: try /, /healthz, /readyz or /metrics\n")

        def _authorized(self) -> bool:
            """No token configured: open, as /metrics is. Otherwise the bearer token, compared in
            constant time so the answer's timing does not reveal how much of a guess was right."""
            if not token:
                return True
            scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

        def _health(self) -> dict[str, object]:
            snapshot = status()
            live, live_why = liveness(snapshot, stale_after)
            ready, ready_why = readiness(snapshot)
            return {"live": live, "liveness": live_why, "ready": ready, "readiness": ready_why}

        def _send(self, code: int, body: str | bytes, ctype: str = "text/plain; charset=utf-8",
                  headers: dict[str, str] | None = None) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug("http: " + fmt, *args)

    return Handler


class ProbeServer(HTTPServer):
    """An HTTP server with a fixed pool of workers. Accepted connections wait in a selector
    until their request arrives (holding a file descriptor, no thread), then one worker
    answers; a connection whose request does not arrive within `request_timeout_s` is
    closed, and so is one that sends it too slowly."""

    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 workers: int = WORKERS, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        super().__init__(address, handler)
        self.request_timeout_s = request_timeout_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="goldstream-http")
        self._waiting: dict[socket.socket, tuple[float, object]] = {}  # conn -> (accepted at, address)
        self._stop = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.socket, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    for key, _ in sel.select(timeout=min(poll_interval, self.request_timeout_s / 2)):
                        if key.fileobj is self.socket:
                            self._accept(sel)
                        else:
                            conn = key.fileobj
                            assert isinstance(conn, socket.socket)
                            sel.unregister(conn)
                            _, address = self._waiting.pop(conn)
                            self._pool.submit(self._answer, conn, address)
                    self._drop_idle(sel, time.monotonic() - self.request_timeout_s)
            finally:
                for conn in list(self._waiting):
                    self._close(conn)
                self._waiting.clear()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._stopped.set()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            conn, address = self.socket.accept()
        except OSError:  # the client gave up before we accepted it
            return
        conn.setblocking(False)
        self._waiting[conn] = (time.monotonic(), address)
        sel.register(conn, selectors.EVENT_READ)
        if len(self._waiting) > MAX_WAITING:
            oldest = next(iter(self._waiting))
            sel.unregister(oldest)
            del self._waiting[oldest]
            self._close(oldest)

    def _drop_idle(self, sel: selectors.BaseSelector, accepted_before: float) -> None:
        for conn, (accepted_at, address) in list(self._waiting.items()):
            if accepted_at >= accepted_before:
                break  # in accept order: the rest are younger
            sel.unregister(conn)
            del self._waiting[conn]
            self._close(conn)
            log.debug("http: dropped %s: no request within %.0fs", _peer(address), self.request_timeout_s)

    def _answer(self, conn: socket.socket, address: object) -> None:
        conn.setblocking(True)
        try:
            self.finish_request(conn, address)
        except (ConnectionError, TimeoutError) as err:
            log.debug("http: client %s disconnected early (%s)", _peer(address), type(err).__name__)
        except Exception:
            log.exception("http: answering %s failed", _peer(address))
        finally:
            self._close(conn)

    def _close(self, conn: socket.socket) -> None:
        try:
            conn.close()
        except OSError:
            pass

    def shutdown(self) -> None:
        """Stop serving and close the listening socket (returns once the loop has ended)."""
        self._stop.set()
        self._stopped.wait()
        self.server_close()


def _peer(address: object) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


def start_http_server(status: Callable[[], PipelineStatus], metrics: CollectorRegistry, stale_after: float,
                      port: int, host: str = "0.0.0.0", workers: int = WORKERS,
                      request_timeout_s: float = REQUEST_TIMEOUT_S, page: StatusApp | None = None,
                      token: str | None = None) -> ProbeServer:
    """Serve the probes (from `status` snapshots, `/healthz` stale after `stale_after`
    seconds without a sign of life), `metrics` and the status `page` (its `/api/*` closed
    by `token` when one is given) from a daemon thread with `workers` threads answering;
    returns the bound server."""
    try:
        server = ProbeServer((host, port), _handler(status, metrics, stale_after, request_timeout_s, page, token),
                             workers, request_timeout_s)
    except OSError as err:
        raise ConfigError(
            f"cannot serve health and metrics on {host}:{port}: {err.strerror or err}. Choose a free port "
            "with --http-port or [server] http_port (0 disables the server)."
        ) from None
    threading.Thread(target=server.serve_forever, name="goldstream-http", daemon=True).start()
    paths = "/healthz, /readyz, /metrics" + (", status page at /" if page is not None else "")
    closed = " (/api/* needs the bearer token)" if page is not None and token else ""
    log.info("health and metrics on http://%s:%d (%s)%s", host, server.server_address[1], paths, closed)
    return server
