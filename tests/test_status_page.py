"""The status page: `/api/*` over a real pipeline and HTTP server, its bearer token, and
the page itself in a real headless Chromium against a `run` subprocess whose Silver
table grows during the test (what a person would see: one section per query, charts
whose points are the progress records' values, the latest closed windows)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import struct
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from goldstream.config import QuerySpec, load_settings
from goldstream.demo.synth import synth_commit_frames
from goldstream.engine.state import StepResult
from goldstream.runner import Pipeline
from goldstream.server import start_http_server
from goldstream.web.app import attach
from goldstream.web.history import ProgressHistory
from stream_helpers import Proc, wait_until
from testsupport.config import seed_queries, write_config
from testsupport.process import cli_env
from testsupport.silver import fast_silver

TOKEN = "s3cr3t-status-token"
QUERIES = ["country_stats", "country_anomalies"]
GROW_TO = 40  # Silver versions: both seed queries close windows well before (a minute of event time each)


def _get(port: int, path: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body, status, ctype = resp.read(), resp.status, resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        body, status, ctype = err.read(), err.code, err.headers["Content-Type"]
    return status, json.loads(body) if ctype.startswith("application/json") else body.decode()


def test_api_serves_recent_progress_and_the_token_closes_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    fast_silver(silver, list(synth_commit_frames(12, 40, seed=5, commit_interval_s=60)))
    settings = load_settings(write_config(tmp_path / "c.toml", silver, gold, max_commits_per_batch=2))
    pipeline = Pipeline(settings)
    logged: list[dict[str, Any]] = []
    pipeline.progress.add_listener(lambda record, _: logged.append({k: v for k, v in record.items() if k != "_t"}))
    page = attach(settings, pipeline.progress, pipeline.status)
    caplog.set_level(logging.DEBUG)
    pipeline.replay()
    server = start_http_server(pipeline.status, pipeline.progress.metrics.registry, 60.0, 0, "127.0.0.1",
                               page=page, token=TOKEN)
    port = server.server_address[1]
    try:
        for query in QUERIES:
            status, body = _get(port, f"/api/progress?query={query}", TOKEN)
            assert status == 200
            assert body == {"query": query, "progress": [r for r in logged if r["name"] == query]}  # oldest first
            assert [r["batchId"] for r in body["progress"]] == list(range(7))  # 13 commits, 2 a batch
        status, body = _get(port, "/api/progress?query=nope", TOKEN)
        assert status == 404 and body["error"] == "unknown query 'nope': this process runs country_stats, country_anomalies"
        status, overview = _get(port, "/api/status", TOKEN)
        stats = next(q for q in overview["queries"] if q["name"] == "country_stats")
        assert stats["gold"] == str(gold / "country_stats") and stats["appId"] == "goldstream-country_stats"
        assert stats["definition"]["window"] == "tumbling 1m" and overview["health"]["ready"] is True
        windows = stats["latestWindows"]
        assert windows["columns"][:3] == ["window_start", "window_end", "origin_country"]
        assert len({row[1] for row in windows["rows"]}) == 1, "only the latest window end"

        for token in (None, "wrong", TOKEN[:-1]):
            for path in ("/api/status", "/api/progress?query=country_stats"):
                status, body = _get(port, path, token)
                assert status == 401 and "bearer token" in body["error"]
        for path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapes stay open
            assert _get(port, path)[0] == 200
        status, html = _get(port, "/")
        assert status == 200 and "country_stats" not in html and str(gold) not in html, "the page shell holds no data"
    finally:
        server.shutdown()
    assert not any(TOKEN in r.getMessage() for r in caplog.records)


def test_history_keeps_the_last_records_per_query() -> None:
    history = ProgressHistory([QuerySpec(**q) for q in seed_queries().values()], keep=3)
    for batch in range(5):
        history.on_progress({"name": "country_stats", "batchId": batch, "_t": 1.0}, StepResult(pl.DataFrame()))
    assert history.records("country_stats") == [{"name": "country_stats", "batchId": b} for b in (2, 3, 4)]
    assert history.records("country_anomalies") == [] and not history.knows("nope")


# -- in a real browser ------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("the status page test needs Debian's chromium: apt-get update && apt-get install -y "
                    "--no-install-recommends chromium (.ci/run installs it when missing)")
    return found


def _browser(url: str, *args: str) -> str:
    """Chromium headless on `url` once the page's scripts ran (virtual time lets its first
    fetches and renders finish before the DOM is taken)."""
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--virtual-time-budget=8000", *args, url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _points(section: str, chart: str, series: str) -> dict[int, float]:
    """The points of one series of one chart: batch id -> value drawn."""
    figure = re.search(rf'<figure class="chart" data-chart="{chart}">(.*?)</figure>', section, re.S)
    assert figure, f"no chart {chart}"
    group = re.search(rf'<g class="series" data-series="{series}"[^>]*>(.*?)</g>', figure.group(1), re.S)
    assert group, f"no series {series} in chart {chart}"
    return {int(b): float(v) for b, v in re.findall(r'data-batch="(\d+)" data-value="([^"]+)"', group.group(1))}


def test_status_page_in_a_browser_shows_each_query_live(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    frames = synth_commit_frames(GROW_TO + 2, 30, seed=8, commit_interval_s=60)  # a minute of event time a commit
    table = fast_silver(silver, [next(frames) for _ in range(3)])
    cfg = write_config(tmp_path / "c.toml", silver, gold, max_commits_per_batch=1)
    port = _free_port()
    proc = Proc(["run", "--config", str(cfg), "--http-port", str(port)], tmp_path / "logs", "run",
                env=cli_env(GOLDSTREAM_SOURCE__POLL_INTERVAL="0.05s", GOLDSTREAM_SERVER__HTTP_HOST="127.0.0.1"))
    try:
        def windows_closed() -> bool:
            if table.version < GROW_TO:
                table.append(next(frames))  # Silver grows while the page is watched
            try:
                overview = _get(port, "/api/status")[1]
            except OSError:
                return False
            return all(q["latestWindows"] for q in overview["queries"])

        wait_until(windows_closed, "both queries to close windows", proc, interval=0.1)
        dom = _browser(f"http://127.0.0.1:{port}/", "--dump-dom")
        table.append(next(frames))
        shot = tmp_path / "status-page.png"
        _browser(f"http://127.0.0.1:{port}/", f"--screenshot={shot}", "--window-size=1400,1800")
        progress = {q: _get(port, f"/api/progress?query={q}")[1]["progress"] for q in QUERIES}
        overview = _get(port, "/api/status")[1]
    finally:
        proc.kill()

    shown = re.sub(r"<script>.*?</script>", "", dom, flags=re.S)  # what is rendered, not the code rendering it
    sections = dict(re.findall(r'<section class="query" data-query="([^"]+)">(.*?)</section>', shown, re.S))
    assert sorted(sections) == sorted(QUERIES), "one section per query"
    for name, section in sections.items():
        by_batch = {r["batchId"]: r for r in progress[name]}
        rows = _points(section, "rows", "numInputRows")
        assert len(rows) >= 3
        assert all(v == by_batch[b]["numInputRows"] for b, v in rows.items())
        rates = _points(section, "rates", "processedRowsPerSecond")
        assert all(v == pytest.approx(by_batch[b]["processedRowsPerSecond"]) for b, v in rates.items())
        added = _points(section, "duration", "addBatch")
        assert all(v == pytest.approx(by_batch[b]["durationMs"]["addBatch"]) for b, v in added.items())
        state = _points(section, "stateRows", "numRowsTotal")
        assert all(v == by_batch[b]["stateOperators"][0]["numRowsTotal"] for b, v in state.items())
        memory = _points(section, "stateMemory", "memoryUsedBytes")
        assert memory and all(v == by_batch[b]["stateOperators"][0]["memoryUsedBytes"] for b, v in memory.items())
        table_html = re.search(rf'<table class="windows" data-query="{name}">(.*?)</table>', section, re.S)
        assert table_html, f"{name}: no latest windows table"
        assert "<th>window start</th>" in table_html.group(1) and "<th>origin country</th>" in table_html.group(1)
        cells = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", table_html.group(1))
        assert cells, f"{name}: the windows table has no rows"
        shown_end = {end for _, end, _ in cells}
        assert len(shown_end) == 1 and len({key for *_, key in cells}) == len(cells), "one latest window, a row per key"
        latest_end = next(q for q in overview["queries"] if q["name"] == name)["latestWindows"]["rows"][0][1]
        assert shown_end.pop() <= latest_end.replace("T", " ").removesuffix("Z")  # the page polled a moment earlier
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1400, 1800)
