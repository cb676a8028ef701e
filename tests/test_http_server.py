"""The health and metrics server under hostile clients, on real sockets on 127.0.0.1:
idle or slow connections hold no thread and are dropped, a burst of scrapes is answered
in full, and clients that hang up early leave one DEBUG line, never a traceback."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry, Counter

from goldstream.runner.status import PipelineStatus
from goldstream.server import readiness, start_http_server

GENEROUS_S = 60.0  # bounds for what takes well under a second on an idle machine


def _status() -> PipelineStatus:
    return PipelineStatus(ready=True, cursor=0, last_iteration=time.monotonic(), queries=())


@pytest.fixture
def server() -> Iterator[tuple[int, object]]:
    registry = CollectorRegistry()
    counter = Counter("padding", "a metric with many series, so a scrape is a few kB", ["n"], registry=registry)
    for n in range(300):
        counter.labels(n=str(n)).inc()
    srv = start_http_server(_status, registry, stale_after=60.0, port=0, host="127.0.0.1",
                            request_timeout_s=1.0)
    try:
        yield srv.server_address[1], srv
    finally:
        srv.shutdown()


def _scrape(port: int, path: str = "/metrics") -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=GENEROUS_S) as resp:
        resp.read()
        return resp.status


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=GENEROUS_S)


def test_idle_connections_hold_no_thread_and_are_dropped(server: tuple[int, object]) -> None:
    port, _ = server
    threads_before = threading.active_count()
    idle = [_connect(port) for _ in range(300)]
    try:
        assert _scrape(port) == 200  # answered while 300 connections sit idle
        assert threading.active_count() <= threads_before + 16  # a small pool, not a thread each
        for sock in idle:  # each idle connection is closed by the server after its timeout
            assert sock.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()


def test_a_slow_client_is_dropped_and_does_not_block_others(server: tuple[int, object]) -> None:
    port, _ = server
    slow = [_connect(port) for _ in range(20)]  # more than the pool has workers
    try:
        for sock in slow:
            sock.sendall(b"GET /metr")  # a request line that never ends
        assert _scrape(port, "/healthz") == 200
        for sock in slow:
            data = sock.recv(65536)
            while data and not data.endswith(b"\n") and b"408" not in data:
                data = sock.recv(65536)
            assert sock.recv(65536) == b""  # then closed
    finally:
        for sock in slow:
            sock.close()


def test_a_scrape_burst_is_answered_in_full(server: tuple[int, object]) -> None:
    port, srv = server
    assert srv.request_queue_size >= 128  # type: ignore[attr-defined]  # the listen backlog
    with ThreadPoolExecutor(200) as pool:
        codes = list(pool.map(lambda _: _scrape(port), range(200)))
    assert codes == [200] * 200


def test_early_disconnects_log_one_debug_line_and_no_traceback(server: tuple[int, object],
                                                               capfd: pytest.CaptureFixture[str],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    port, _ = server
    caplog.set_level(logging.DEBUG, logger="goldstream.server")
    for _ in range(50):
        sock = _connect(port)
        sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
        sock.close()
    assert _scrape(port) == 200
    deadline = time.monotonic() + GENEROUS_S
    while time.monotonic() < deadline and not any("disconnected" in r.getMessage() for r in caplog.records):
        time.sleep(0.05)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err
    hangups = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert hangups and all(r.levelno == logging.DEBUG and "\n" not in r.getMessage() for r in hangups)


def test_a_standby_is_alive_but_not_ready() -> None:
    """An instance waiting for another that owns its Gold tables: /readyz says why."""
    standby = PipelineStatus(ready=True, cursor=5, last_iteration=time.monotonic(), queries=(),
                             standby="standby: another instance owns query 'q'")
    assert readiness(standby) == (False, "standby: another instance owns query 'q'")
