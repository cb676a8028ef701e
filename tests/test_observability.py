"""Health, readiness and metrics of a running `goldstream run`, and the logs.

The daemon is a real subprocess reading Silver from the real S3 server (SeaweedFS);
the probes are plain HTTP requests (urllib). To make the loop stall the way a hung
object store does, the S3 server is frozen with SIGSTOP: the daemon's storage call then
blocks while its HTTP thread keeps answering, which is exactly what `/healthz` is for.
SIGCONT lets everything continue. Metrics are checked against Gold and against an
in-process replay of the same Silver (Gold is a pure function of Silver's history).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from prometheus_client.parser import text_string_to_metric_families

from gold_compare import assert_gold_equal
from goldstream.config import Settings, load_settings, with_overrides
from goldstream.runner import Pipeline
from goldstream.server import readiness
from goldstream.storage import Storage
from goldstream.demo.synth import DEFAULT_START, generate_silver
from testsupport import ROOT
from testsupport.config import QUERIES
from testsupport.gold import read_gold
from terminal import run_on_terminal
from testsupport.process import cli_env, goldstream, goldstream_argv

METRICS = ("goldstream_input_rows_total", "goldstream_late_rows_total", "goldstream_windows_emitted_total",
           "goldstream_commits_total", "goldstream_watermark_seconds", "goldstream_lag_versions",
           "goldstream_lag_seconds", "goldstream_state_rows", "goldstream_batch_duration_seconds_bucket",
           "goldstream_batch_duration_seconds_count", "goldstream_batch_duration_seconds_sum")
WAIT_S = 90.0  # upper bound for things that happen within a second or two on an idle machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str] | None:
    """(status, body), or None when nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _wait_for(what: str, probe: Callable[[], Any], proc: subprocess.Popen[bytes] | None = None,
              log: Path | None = None) -> Any:
    """Poll until `probe()` is truthy; fail with context if it never is (or the daemon died)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            pytest.fail(f"daemon exited with {proc.returncode} while waiting for {what}:\n{tail}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {WAIT_S:.0f}s waiting for {what}")


def _metrics(port: int) -> dict[tuple[str, str], float]:
    got = _get(port, "/metrics")
    assert got is not None and got[0] == 200, got
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(got[1]):
        for s in family.samples:
            key = s.labels.get("query", "")
            if s.name.endswith("_bucket"):
                key = f"{key}|le={s.labels['le']}"
            out[(s.name, key)] = s.value
    return out


@contextmanager
def _frozen(pid: int) -> Iterator[None]:
    """SIGSTOP a process (the S3 server) for the duration of the block."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _progress_records(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        obj = json.loads(line)  # every stdout line is JSON when stdout is not a TTY
        if "progress" in obj:
            records.append(obj["progress"])
    return records


# -- the daemon over S3 -----------------------------------------------------------------------


def test_daemon_health_readiness_and_metrics(s3_server: Any, tmp_path: Path, example_config: Path) -> None:
    prefix = f"s3://{s3_server.bucket}/observability-{uuid.uuid4().hex[:8]}"
    silver, gold_root = f"{prefix}/silver", f"{prefix}/gold"
    opts = s3_server.deltalake_storage_options()
    generate_silver(silver, commits=12, rows_per_commit=300, seed=11, storage_options=opts)

    port = _free_port()
    env = cli_env(**s3_server.env(), GOLDSTREAM_SOURCE__PATH=silver, GOLDSTREAM_SINK__GOLD_ROOT=gold_root,
                  GOLDSTREAM_SOURCE__POLL_INTERVAL="200ms", GOLDSTREAM_SERVER__HEALTH_STALE_FACTOR="5",
                  GOLDSTREAM_SERVER__HTTP_HOST="127.0.0.1")  # stale after max(1 s, 5 x 0.2 s) = 1 s
    log = tmp_path / "daemon.stdout"
    with log.open("wb") as out, _frozen(s3_server.pid):
        # Storage is frozen before the daemon starts: start() cannot reach Silver, so not ready.
        proc = subprocess.Popen(goldstream_argv("run", "--config", str(example_config), "--http-port", str(port)),
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            status, body = _wait_for("the HTTP server", lambda: _get(port, "/readyz"), proc, log)
            assert status == 503 and body.startswith("starting"), (status, body)
            metrics = _metrics(port)  # served while start() is blocked; every query's series already there
            for q in QUERIES:
                assert metrics[("goldstream_input_rows_total", q)] == 0
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    try:
        _wait_for("/readyz 200 after storage came back", lambda: (_get(port, "/readyz") or (0,))[0] == 200, proc, log)
        assert _get(port, "/healthz")[0] == 200  # type: ignore[index]

        def caught_up(rows: int) -> Callable[[], dict[tuple[str, str], float] | None]:
            def probe() -> dict[tuple[str, str], float] | None:
                m = _metrics(port)
                done = all(m[("goldstream_input_rows_total", q)] == rows and m[("goldstream_lag_versions", q)] == 0
                           for q in QUERIES)
                return m if done else None
            return probe

        def silver_rows() -> int:
            return DeltaTable(silver, storage_options=opts).to_pyarrow_table(columns=["icao24"]).num_rows

        _wait_for("the daemon to process the first 12 commits", caught_up(silver_rows()), proc, log)
        # Tail: more commits arrive once the daemon has caught up and is polling.
        generate_silver(silver, commits=8, rows_per_commit=300, seed=12, storage_options=opts,
                        start=DEFAULT_START + timedelta(seconds=120))
        latest = DeltaTable(silver, storage_options=opts).version()
        total_rows = silver_rows()
        metrics = _wait_for("the daemon to process the 8 new commits", caught_up(total_rows), proc, log)
        assert _get(port, "/healthz")[0] == 200  # type: ignore[index]

        # The same Silver replayed in-process: the daemon's counters must agree with it, and with Gold.
        settings = with_overrides(load_settings(example_config), silver=silver, gold_root=str(tmp_path / "ref"))
        ref = Pipeline(settings, storage=Storage.from_env(env=s3_server.env()))
        ref.start()
        ref.replay()
        for run in ref.runs:
            q = run.query.name
            gold_path = f"{gold_root}/{q}"
            gold = read_gold(gold_path, opts)
            assert_gold_equal(gold, read_gold(tmp_path / "ref" / q))
            writes = [h for h in DeltaTable(gold_path, storage_options=opts).history()
                      if h.get("operation") == "WRITE"]
            assert metrics[("goldstream_windows_emitted_total", q)] == gold.height == run.stats.windows_emitted > 0
            assert metrics[("goldstream_commits_total", q)] == len(writes) > 0
            assert metrics[("goldstream_input_rows_total", q)] == run.stats.rows_in == total_rows
            assert metrics[("goldstream_late_rows_total", q)] == run.stats.rows_late > 0
            assert metrics[("goldstream_watermark_seconds", q)] == pytest.approx(run.engine.watermark_us / 1e6, abs=1e-3)
            assert metrics[("goldstream_state_rows", q)] == run.engine.state_rows > 0
            # ~8 bytes per state field and row at least: the estimate follows the rows held
            assert metrics[("goldstream_state_bytes", q)] == run.engine.state_bytes > 8 * run.engine.state_rows
            # event time is 2024: the lag behind the wall clock is large and keeps growing
            lag = metrics[("goldstream_lag_seconds", q)]
            assert lag > (datetime.now(DEFAULT_START.tzinfo) - DEFAULT_START).total_seconds() - 3600
            count = metrics[("goldstream_batch_duration_seconds_count", q)]
            assert count >= 1 and metrics[("goldstream_batch_duration_seconds_sum", q)] > 0
            assert metrics[("goldstream_batch_duration_seconds_bucket", f"{q}|le=+Inf")] == count
            assert ref.runs and latest == run.processed

        # Storage hangs: the loop blocks in a storage call, the HTTP thread still answers 503.
        with _frozen(s3_server.pid):
            status, body = _wait_for("/healthz 503 while storage hangs",
                                     lambda: (g := _get(port, "/healthz")) and g[0] == 503 and g, proc, log)
            assert body.startswith("stale: last progress") and "limit 1.0s" in body
        _wait_for("/healthz 200 once storage answers again",
                  lambda: (_get(port, "/healthz") or (0,))[0] == 200, proc, log)
        assert _get(port, "/nope")[0] == 404  # type: ignore[index]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    out_text = log.read_text()
    assert rc == 0, out_text[-3000:]
    records = _progress_records(out_text)
    for q in QUERIES:
        mine = [r for r in records if r["name"] == q]
        assert sum(r["numInputRows"] for r in mine) == total_rows
        assert len(mine) == metrics[("goldstream_batch_duration_seconds_count", q)]
    assert "stopped cleanly" in out_text


# -- readiness means "state rebuilt" ------------------------------------------------------------


def test_ready_only_after_state_is_rebuilt(tmp_path: Path, example_config: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    generate_silver(str(silver), commits=20, rows_per_commit=200, seed=4)
    settings: Settings = with_overrides(load_settings(example_config), silver=str(silver), gold_root=str(gold))
    first = Pipeline(settings)
    first.start()
    first.replay(to_version=15)

    again = Pipeline(settings)
    assert readiness(again.status()) == (False, "starting: opening Silver and Gold")
    again.start()
    ok, why = readiness(again.status())
    assert not ok and why.startswith("rebuilding state of"), why  # open windows are fed by versions <= 15
    steps = 0
    while not readiness(again.status())[0]:
        assert again.step(), "Silver ran out before the state was rebuilt"
        steps += 1
    assert steps >= 1 and again.cursor > 15


# -- logs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_silver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("obs") / "silver"
    generate_silver(str(path), commits=24, rows_per_commit=200, seed=9)
    return path


def test_progress_records_have_the_spark_shape(small_silver: Path, tmp_path: Path, example_config: Path) -> None:
    proc = goldstream("replay", "--config", str(example_config), "--silver", str(small_silver),
                      "--gold-root", str(tmp_path / "gold"), "--json",
                      env={"GOLDSTREAM_SOURCE__MAX_COMMITS_PER_BATCH": "5"})
    lines = proc.stdout.splitlines()
    summary = {r["query"]: r for r in json.loads(lines[-1])["summary"]}
    records = _progress_records("\n".join(lines[:-1]))
    run_ids = {r["runId"] for r in records}
    assert len(run_ids) == 1 and uuid.UUID(run_ids.pop())
    for q in QUERIES:
        mine = [r for r in records if r["name"] == q]
        assert [r["batchId"] for r in mine] == list(range(5))  # 24 commits, 5 per batch
        for r in mine:
            assert r["id"] == f"goldstream-{q}"
            datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
            assert isinstance(r["numInputRows"], int)
            assert isinstance(r["inputRowsPerSecond"], float) and isinstance(r["processedRowsPerSecond"], float)
            assert r["durationMs"]["triggerExecution"] >= 0
            assert {"getBatch", "addBatch", "latestOffset"} <= set(r["durationMs"])
            (op,) = r["stateOperators"]
            assert op["numRowsTotal"] >= 0 and op["numRowsDroppedByWatermark"] >= 0
            assert op["memoryUsedBytes"] >= 8 * op["numRowsTotal"] and (op["memoryUsedBytes"] > 0) == (op["numRowsTotal"] > 0)
            (src,) = r["sources"]
            assert src["startOffset"] <= src["endOffset"] <= src["latestOffset"] == 23
            assert r["sink"]["description"] == f"DeltaSink[{tmp_path / 'gold' / q}]"
        assert [r["sources"][0]["startOffset"] for r in mine] == [0, 5, 10, 15, 20]
        assert mine[-1]["sources"][0]["endOffset"] == 23
        assert sum(r["numInputRows"] for r in mine) == summary[q]["rows_in"]
        assert sum(r["stateOperators"][0]["numRowsDroppedByWatermark"] for r in mine) == summary[q]["rows_late"]
        assert sum(r["sink"]["numOutputRows"] for r in mine) == summary[q]["windows_emitted"]
        assert mine[-1]["eventTime"]["watermark"] == summary[q]["watermark"]
        assert mine[-1]["eventTime"]["max"] > mine[-1]["eventTime"]["watermark"]
        watermarks = [r["eventTime"]["watermark"] for r in mine]
        assert watermarks == sorted(watermarks)


def test_log_level_comes_from_the_environment(small_silver: Path, tmp_path: Path, example_config: Path) -> None:
    args = ("replay", "--config", str(example_config), "--silver", str(small_silver), "--json")
    quiet = goldstream(*args, "--gold-root", str(tmp_path / "g1"), env={"GOLDSTREAM_LOG_LEVEL": "WARNING"})
    assert len(quiet.stdout.splitlines()) == 1 and "summary" in json.loads(quiet.stdout)
    bad = goldstream(*args, "--gold-root", str(tmp_path / "g2"), env={"GOLDSTREAM_LOG_LEVEL": "LOUD"}, check=False)
    assert bad.returncode == 2
    assert "log_level" in bad.stderr and "'LOUD'" in bad.stderr and "GOLDSTREAM_LOG_LEVEL" in bad.stderr
    assert not (tmp_path / "g2").exists()


def test_readable_log_lines_on_a_terminal(small_silver: Path, tmp_path: Path, example_config: Path) -> None:
    text = run_on_terminal("replay", "--config", str(example_config), "--silver", str(small_silver),
                           "--gold-root", str(tmp_path / "gold")).replace("\r\n", "\n")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines and not any(ln.lstrip().startswith("{") for ln in lines), text
    assert any("INFO" in ln and "[country_stats] batch 0:" in ln and "windows, watermark" in ln for ln in lines), text


def test_native_library_panics_become_debug_log_lines(tmp_path: Path) -> None:
    """Rust client libraries print panics ("Already shut down" from a runtime dropped after
    a failed request) straight to file descriptor 2, around Python: routed through the
    logging handler they are DEBUG JSON lines, other native output a WARNING, and what
    Python itself writes to stderr (the CLI's error messages) still reaches stderr."""
    script = (
        "import os, sys, time\n"
        "from goldstream.observability import setup_logging\n"
        "setup_logging('DEBUG', json_lines=True, route_native_stderr=True)\n"
        "os.write(2, b\"thread 'tokio-runtime-worker' panicked at src/buffered.rs:10:5:\\nAlready shut down\\n"
        "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\\n\")\n"
        "os.write(2, b'a native warning\\n')\n"
        "print('error: a message for the operator', file=sys.stderr)\n"
        "time.sleep(1.0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "error: a message for the operator\n"
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    native = {r["msg"]: r["level"] for r in records if r["logger"] == "goldstream.native"}
    assert native["thread 'tokio-runtime-worker' panicked at src/buffered.rs:10:5:"] == "DEBUG"
    assert native["Already shut down"] == "DEBUG"
    assert native["a native warning"] == "WARNING"
