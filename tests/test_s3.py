"""Silver and Gold on S3, against a real S3 server (SeaweedFS, tests/s3server.py).

- Both conformance cases, Silver uploaded as it is (log and files) and Gold on S3, via the
  CLI: Gold equals Spark's, and no secret appears in anything the run wrote.
- The crash test (SIGKILL `run` while a writer appends) and the fencing test (two `run`
  instances on one Gold: the loser exits 3) of the exactly-once suite, on S3.
- Fault test: the S3 server stops during a `run` and comes back 10 s later on the same
  data dir: goldstream logs its retries, resumes, and Gold equals an uninterrupted run.
- Wrong secret, missing bucket, missing Silver table: a fast non-zero exit naming the URI
  and the cause, nothing written.

Every goldstream here is a real subprocess given the AWS_* environment of the server
(`S3Server.env()`), except the reference replays, which run in-process from the same
S3 Silver into a local Gold.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import s3fs
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from gold_compare import assert_gold_equal
from goldstream.config import load_settings
from goldstream.retry import Backoff, classify
from goldstream.runner import Pipeline
from goldstream.storage import Storage, fs_path
from goldstream.demo.synth import DEFAULT_START, synth_commit_frames
from conformance_cases import conformance_cases
from s3server import S3Server, S3ServerError
from stream_helpers import Proc, grow_until_one_stands_by, wait_caught_up, wait_until
from testsupport import ROOT
from testsupport.config import QUERIES, example_doc, seed_queries, write_config
from testsupport.gold import read_gold
from testsupport.process import cli_env, goldstream_argv
from testsupport.silver import DeltaAppender, append_commits, fast_silver

pytestmark = pytest.mark.s3

CASES = conformance_cases()
CLI_TIMEOUT = 300  # a hang guard only
FAST_FAIL_S = 30  # the bound for a permanent error


# -- helpers ----------------------------------------------------------------------------------


def _prefix(s3: S3Server, name: str) -> str:
    return f"s3://{s3.bucket}/{name}-{uuid.uuid4().hex[:8]}"


def _fs(s3: S3Server) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(skip_instance_cache=True, **s3.s3fs_kwargs())


def _upload(s3: S3Server, local: Path, uri: str) -> None:
    """A local Delta table copied to S3 as it is: the log and the data files."""
    fs = _fs(s3)
    fs.put(str(local) + "/", fs_path(uri), recursive=True)
    assert len(fs.find(fs_path(uri))) == sum(1 for p in local.rglob("*") if p.is_file())


def _objects(s3: S3Server, uri: str) -> list[str]:
    fs = _fs(s3)
    fs.invalidate_cache()
    return fs.find(fs_path(uri))


def _env(s3: S3Server, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in cli_env().items() if not k.startswith(("AWS_", "S3_"))}
    return {**env, **s3.env(), **extra}


def _cli(args: list[str], env: dict[str, str], timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(goldstream_argv(*args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _wait_caught_up(s3: S3Server, proc: Proc, gold_root: str, queries: list[str], version: int) -> None:
    wait_caught_up(proc, gold_root, queries, version, s3.deltalake_storage_options(), interval=0.3)


def _reference(s3: S3Server, tmp: Path, silver: str, queries: list[dict[str, Any]]) -> Path:
    """One uninterrupted in-process replay of the S3 Silver into a local Gold (+ late sinks)."""
    ref = tmp / "reference"
    local = [{**q, **({"late_sink": str(ref / "late" / q["name"])} if "late_sink" in q else {})} for q in queries]
    pipeline = Pipeline(load_settings(write_config(tmp / "reference.toml", silver, ref / "gold", local)),
                        storage=Storage.from_env(env=s3.env()))
    pipeline.start()
    pipeline.replay()
    return ref


def _assert_same_output(s3: S3Server, gold_root: str, ref: Path, queries: list[dict[str, Any]]) -> None:
    """Gold (and late tables) on S3 equal the reference, no window emitted twice."""
    opts = s3.deltalake_storage_options()
    for q in queries:
        actual = read_gold(f"{gold_root}/{q['name']}", opts)
        expected = read_gold(ref / "gold" / q["name"])
        assert expected.height > 0
        ids = actual.select("window_start", "window_end", *q["keys"])
        assert not ids.is_duplicated().any(), f"{q['name']}: a window was emitted twice"
        assert_gold_equal(actual, expected)
        if "late_sink" in q:
            late = _late_rows(q["late_sink"], opts)
            late_ref = _late_rows(str(ref / "late" / q["name"]))
            assert late.height == 0 and late_ref.height == 0 or late.columns == late_ref.columns
            assert Counter(late.rows()) == Counter(late_ref.rows()), f"late table of {q['name']} differs"


def _late_rows(uri: str, opts: dict[str, str] | None = None) -> pl.DataFrame:
    """A late table's rows; none when it was never created (no row was ever late)."""
    try:
        return read_gold(uri, opts)
    except TableNotFoundError:
        return pl.DataFrame()


def _assert_no_secret(secret: str, texts: dict[str, str | bytes]) -> None:
    for where, text in texts.items():
        data = text.encode() if isinstance(text, str) else text
        assert secret.encode() not in data, f"the secret appears in {where}"


def _small_silver(tmp: Path, commits: int, rows: int, seed: int) -> tuple[Path, list[pl.DataFrame]]:
    frames = list(synth_commit_frames(commits, rows, seed=seed))
    return fast_silver(tmp / f"silver-{seed}", frames).path, frames


def _late_queries(late_root: str, names: list[str] = list(QUERIES)) -> list[dict[str, Any]]:
    seeds = seed_queries()
    return [{**seeds[q], "late_sink": f"{late_root}/{q}"} for q in names]


# -- 1. conformance on S3 -----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance_on_s3_and_no_secret_in_anything_written(s3_server: S3Server, tmp_path: Path,
                                                            case: Path) -> None:
    prefix = _prefix(s3_server, f"conformance-{case.name}")
    silver, gold, late = f"{prefix}/silver", f"{prefix}/gold", f"{prefix}/late"
    _upload(s3_server, case / "silver", silver)
    cfg = write_config(tmp_path / "s3.toml", silver, gold, _late_queries(late))
    env = _env(s3_server)

    replay = _cli(["replay", "--config", str(cfg), "--json"], env)
    assert replay.returncode == 0, replay.stderr[-3000:]
    meta = json.loads((case / "case.json").read_text())
    summary = {s["query"]: s for s in json.loads(replay.stdout.splitlines()[-1])["summary"]}
    opts = s3_server.deltalake_storage_options()
    for q in QUERIES:
        actual = read_gold(f"{gold}/{q}", opts)
        assert actual.height == meta["expected_rows"][q]
        assert_gold_equal(actual, pl.read_parquet(case / "expected" / f"{q}.parquet"))
        assert summary[q]["gold"] == f"{gold}/{q}"
        assert summary[q]["rows_in"] == meta["rows"]
        assert summary[q]["silver_version"] == meta["silver_versions"] - 1
        assert _late_rows(f"{late}/{q}", opts).height == summary[q]["rows_late"]

    outputs = {"the config file": cfg.read_text(), "replay's stdout": replay.stdout, "replay's stderr": replay.stderr}
    if case.name == "synthetic_small":  # status rebuilds the state: once is enough
        status = _cli(["status", "--config", str(cfg), "--json"], env)
        assert status.returncode == 0, status.stderr[-3000:]
        rows = json.loads(status.stdout)
        assert [r["processed_through_version"] for r in rows] == [meta["silver_versions"] - 1] * 2
        outputs.update({"status's stdout": status.stdout, "status's stderr": status.stderr})

    # The secret is in the environment only: not in the config, the output, or any object written.
    fs = _fs(s3_server)
    written = {f"s3://{key}": fs.cat_file(key) for key in _objects(s3_server, gold) + _objects(s3_server, late)}
    assert any("/_delta_log/" in k for k in written) and any(k.endswith(".parquet") for k in written)
    _assert_no_secret(s3_server.secret_key, {**outputs, **written})
    assert s3_server.secret_key not in repr(Storage.from_env(env=s3_server.env()))
    assert s3_server.secret_key not in json.dumps(Storage.from_env(env=s3_server.env()).describe())


# -- 2. crash and fencing on S3 -------------------------------------------------------------------


def test_run_sigkilled_on_s3_equals_one_replay(s3_server: S3Server, tmp_path: Path) -> None:
    """`run` SIGKILLed at random instants (start-up, rebuild, right after a batch's progress
    record: inside the next query's commit or between the late-sink and Gold commits) while
    another process appends to the S3 Silver; restarted each time. Gold and the late tables
    equal one uninterrupted replay."""
    prefix = _prefix(s3_server, "crash")
    silver, gold = f"{prefix}/silver", f"{prefix}/gold"
    queries = _late_queries(f"{prefix}/late")
    cfg = write_config(tmp_path / "run.toml", silver, gold, queries, max_commits_per_batch=8)
    env = _env(s3_server, GOLDSTREAM_SOURCE__POLL_INTERVAL="0.1s")
    writer = subprocess.Popen([sys.executable, "-m", "testsupport.silver_writer", silver, "--seed", "17",
                               "--rows", "40", "--pace", "0.2"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rng = random.Random(2024)
    kills: Counter = Counter()
    t0 = time.monotonic()
    procs: list[Proc] = []
    try:
        wait_until(lambda: _table_version(s3_server, silver) >= 3, "the writer's first Silver commits")
        for i in range(8):
            proc = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", f"run{i}", env=env)
            procs.append(proc)
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0.5, 4.0))
                mode = "delay"
            else:
                # a busy machine (load 30 on two cores) takes over 30 s to start `run` and read S3
                nth, deadline = rng.randint(1, 3), time.monotonic() + 120
                while len(proc.progress()) < nth and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.01)
                time.sleep(rng.choice([0, 0.05, 0.1, 0.2, 0.4]))
                mode = "after-progress" if len(proc.progress()) >= nth else "after-progress-timeout"
            assert proc.poll() is None, f"goldstream exited before the kill:\n{proc.describe()}"
            assert proc.kill() == -signal.SIGKILL
            kills[mode] += 1
            kills["while the writer appends"] += writer.poll() is None
    finally:
        writer.send_signal(signal.SIGTERM)
        _, err = writer.communicate(timeout=60)
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert writer.returncode == 0, err[-2000:]
    final = DeltaTable(silver, storage_options=s3_server.deltalake_storage_options()).version()
    assert final >= 20 and kills["after-progress"] >= 2 and kills["while the writer appends"] == 8, (final, kills)

    t_kills = time.monotonic()
    last = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "final", env=env)
    procs.append(last)
    try:
        _wait_caught_up(s3_server, last, gold, list(QUERIES), final)
        last.signal(signal.SIGTERM)
        assert last.wait() == 0, last.describe()
    finally:
        if last.poll() is None:
            last.kill()
    t_final = time.monotonic()
    ref = _reference(s3_server, tmp_path, silver, queries)
    print(f"\nS3 crash test: kills {dict(kills)}, Silver versions 0..{final}; kill loop {t_kills - t0:.0f}s, "
          f"final run {t_final - t_kills:.0f}s, reference replay {time.monotonic() - t_final:.0f}s")
    _assert_same_output(s3_server, gold, ref, queries)
    _assert_no_secret(s3_server.secret_key, {f"{p.out_path.name}": p.stdout() + p.stderr() for p in procs})


def _table_version(s3: S3Server, table: str) -> int:
    """Latest version of a Delta table on S3 (-1 while it does not exist)."""
    try:
        return DeltaTable(table, storage_options=s3.deltalake_storage_options()).version()
    except Exception:  # noqa: BLE001 - not created yet
        return -1


def test_two_run_daemons_on_one_s3_gold_one_owner(s3_server: S3Server, tmp_path: Path) -> None:
    """Two `run` instances of one query on one S3 Gold table: one wins (its offsets are in
    Gold first, or S3's `If-None-Match: *` refuses the other's log entry when both commit at
    once); the other stands by (it keeps running, writes nothing) and no row is duplicated.
    The endpoint comes from the config's [storage] section here, not from AWS_ENDPOINT_URL."""
    prefix = _prefix(s3_server, "fencing")
    silver, gold = f"{prefix}/silver", f"{prefix}/gold"
    local, _ = _small_silver(tmp_path, 40, 40, seed=8)
    _upload(s3_server, local, silver)
    queries = _late_queries(f"{prefix}/late", ["country_stats"])
    doc = example_doc()  # non-secret [storage] overrides only: credentials stay in the environment
    doc["storage"] = {"endpoint": s3_server.endpoint, "region": s3_server.region, "allow_http": True}
    cfg = write_config(tmp_path / "c.toml", silver, gold, queries, doc=doc, max_commits_per_batch=2)
    env = {k: v for k, v in _env(s3_server, GOLDSTREAM_SOURCE__POLL_INTERVAL="0.05s").items()
           if k not in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_REGION", "AWS_DEFAULT_REGION")}
    procs = [Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", f"run{i}", env=env)
             for i in range(2)]
    opts = s3_server.deltalake_storage_options()
    try:
        frames = synth_commit_frames(200, 40, seed=9, start=DEFAULT_START + timedelta(seconds=10 * 40))
        winner, loser = grow_until_one_stands_by(procs, DeltaAppender(silver, opts), frames, limit=200)
        assert "another instance owns query 'country_stats'" in loser.stdout()
        final = DeltaTable(silver, storage_options=opts).version()
        _wait_caught_up(s3_server, winner, gold, ["country_stats"], final)
        for p in (winner, loser):
            assert p.poll() is None, p.describe()
            p.signal(signal.SIGTERM)
            assert p.wait() == 0, p.describe()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    _assert_same_output(s3_server, gold, _reference(s3_server, tmp_path, silver, queries), queries)
    _assert_no_secret(s3_server.secret_key, {p.out_path.name: p.stdout() + p.stderr() for p in procs})


# -- 3. the S3 server goes away during a run ----------------------------------------------------


@pytest.fixture
def own_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A server of this test's own: it is stopped and started again, which the shared one
    must not be."""
    server = S3Server(tmp_path_factory.mktemp("own-s3") / "data")
    try:
        server.start()
    except (S3ServerError, OSError) as err:
        if os.environ.get("CI", "").strip().lower() == "true":
            raise RuntimeError(f"SeaweedFS S3 server could not start: {err}") from err
        pytest.skip(f"SeaweedFS S3 server could not start: {err}")
    try:
        yield server
    finally:
        server.stop()


def test_s3_outage_during_run_is_retried_and_gold_equals_uninterrupted(own_s3: S3Server, tmp_path: Path) -> None:
    s3 = own_s3
    prefix = _prefix(s3, "outage")
    silver, gold = f"{prefix}/silver", f"{prefix}/gold"
    local, _ = _small_silver(tmp_path, 40, 300, seed=31)
    _upload(s3, local, silver)
    queries = _late_queries(f"{prefix}/late")
    cfg = write_config(tmp_path / "run.toml", silver, gold, queries, max_commits_per_batch=2)
    proc = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "run",
                env=_env(s3, GOLDSTREAM_SOURCE__POLL_INTERVAL="0.2s"))
    try:
        wait_until(lambda: len(proc.progress()) >= 2, "the first batches", proc)
        s3.stop()
        time.sleep(4)  # a few attempts of the backoff (0.5 s doubling) fail and are logged
        assert proc.poll() is None, f"goldstream exited during the outage:\n{proc.describe()}"
        s3.start()  # same data dir and ports; returns once writes work again
        # Silver goes on growing once the store is back: the daemon tails it
        frames = synth_commit_frames(5, 300, seed=32, start=DEFAULT_START + timedelta(seconds=10 * 40))
        last = append_commits(silver, frames, s3.deltalake_storage_options())
        _wait_caught_up(s3, proc, gold, list(QUERIES), last)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.describe()
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = [json.loads(line) for line in proc.stdout().splitlines()]
    retries = [r["msg"] for r in logs if r["level"] == "WARNING" and "storage unavailable" in r["msg"]]
    assert retries, "no retry was logged:\n" + proc.stdout()[-3000:]
    assert all("attempt" in m and "retrying in" in m and silver in m for m in retries), retries[:3]
    assert "Traceback" not in proc.stderr()
    _assert_same_output(s3, gold, _reference(s3, tmp_path, silver, queries), queries)
    _assert_no_secret(s3.secret_key, {"run's stdout": proc.stdout(), "run's stderr": proc.stderr()})


# -- 4. permanent errors: fast, named, nothing written ---------------------------------------------


@pytest.fixture(scope="module")
def small_s3_silver(s3_server: S3Server) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        local, _ = _small_silver(Path(tmp), 5, 20, seed=3)
        uri = _prefix(s3_server, "permanent") + "/silver"
        _upload(s3_server, local, uri)
    return uri


@pytest.mark.parametrize("case", ["wrong-secret", "missing-bucket", "missing-silver-table"])
def test_permanent_storage_errors_fail_fast_and_write_nothing(s3_server: S3Server, small_s3_silver: str,
                                                              tmp_path: Path, example_config: Path,
                                                              case: str) -> None:
    silver = small_s3_silver
    gold = _prefix(s3_server, "permanent-gold")
    env = _env(s3_server)
    command = "run"  # the daemon: it must not retry these forever
    wrong_secret = "not-the-secret-" + uuid.uuid4().hex
    if case == "wrong-secret":
        env["AWS_SECRET_ACCESS_KEY"] = wrong_secret
        expected = [silver, "SignatureDoesNotMatch", "rejected the credentials", "AWS_SECRET_ACCESS_KEY"]
    elif case == "missing-bucket":
        gold = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/gold"
        expected = [f"{gold}/country_stats", "NoSuchBucket", "bucket does not exist"]
    else:
        silver = silver.rsplit("/", 1)[0] + "/no-such-table"
        command = "replay"  # `run` waits for a missing Silver table (wait_for_table_timeout)
        expected = [f"Silver table {silver} does not exist"]
    proc = _cli([command, "--config", str(example_config), "--silver", silver, "--gold-root", gold,
                 *(["--http-port", "0"] if command == "run" else [])], env, timeout=FAST_FAIL_S)
    assert proc.returncode == 2, proc.stderr[-3000:]
    for text in expected:
        assert text in proc.stderr, f"{text!r} not in:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    _assert_no_secret(wrong_secret, {"stdout": proc.stdout, "stderr": proc.stderr})
    if case == "missing-bucket":
        with pytest.raises(FileNotFoundError):
            _fs(s3_server).ls(fs_path(gold).split("/")[0])
    else:
        assert _objects(s3_server, gold) == []


# -- the retry policy itself ----------------------------------------------------------------------


def test_backoff_is_exponential_with_jitter_capped_and_can_give_up() -> None:
    backoff = Backoff(initial_s=0.5, max_s=10.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    for n, d in enumerate(delays):
        ceiling = min(10.0, 0.5 * 2 ** n)
        assert d is not None and ceiling / 2 <= d <= ceiling, (n, d)
    assert len(set(delays)) == len(delays)  # jittered: no two waits alike
    backoff.reset()
    assert backoff.next_delay() <= 0.5
    assert Backoff(give_up_after_s=0.0).next_delay() is None  # replay/status: bounded


def test_errors_are_classified_by_what_storage_answered() -> None:
    """The shapes each client gives the same answers (seen from delta-rs, Polars, s3fs)."""
    from botocore.exceptions import ClientError, EndpointConnectionError

    def boto(code: str, status: int) -> Exception:
        err = PermissionError("Forbidden") if status == 403 else OSError(5, "x")
        err.__cause__ = ClientError({"Error": {"Code": code, "Message": "m"},
                                     "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
        return err

    assert classify(boto("SignatureDoesNotMatch", 403)) == "permanent"
    assert classify(boto("InternalError", 500)) == "transient"
    assert classify(OSError("Kernel error -> ... 403 Forbidden <Error><Code>InvalidAccessKeyId</Code>")) == "permanent"
    assert classify(OSError("Generic S3 error: ... <Code>NoSuchBucket</Code> ... 404 Not Found")) == "permanent"
    assert classify(OSError("Error performing GET http://h/b/k in 2s, after 3 retries, max_retries: 3, "
                            "retry_timeout: 20s - HTTP error\n error sending request\n Connection refused")) == "transient"
    assert classify(OSError("503 Service Unavailable <Code>SlowDown</Code>")) == "transient"
    assert classify(ConnectionRefusedError("object-store error")) == "transient"
    assert classify(EndpointConnectionError(endpoint_url="http://h")) == "transient"
    assert classify(FileNotFoundError("b/k/00000000000000000007.json")) is None  # a missing key: the caller's call
    assert classify(ValueError("corrupt parquet footer")) is None


# -- secrets at DEBUG ---------------------------------------------------------------------------


def test_debug_logs_of_replay_and_run_carry_no_credential(s3_server: S3Server, tmp_path: Path) -> None:
    """At DEBUG, botocore prints request headers (the session token, the access key id in the
    signature's scope). Every line goldstream and its libraries write goes through one
    redacting handler: key, secret and token appear nowhere in stdout, stderr, progress
    records, Gold or the late tables, for `replay` and for `run`. The test server accepts
    static keys only, so the runs with a session token are refused (exit 2, after DEBUG
    lines with the token header were logged); the runs without one write Gold."""
    case = next(c for c in CASES if c.name == "synthetic_small")
    prefix = _prefix(s3_server, "debug-secrets")
    silver, gold, late = f"{prefix}/silver", f"{prefix}/gold", f"{prefix}/late"
    _upload(s3_server, case / "silver", silver)
    cfg = write_config(tmp_path / "s3.toml", silver, gold, _late_queries(late))
    token = "FQoGZXIvYXdzE" + uuid.uuid4().hex + "/+tok=="
    env = _env(s3_server, GOLDSTREAM_LOG_LEVEL="DEBUG")
    with_token = {**env, "AWS_SESSION_TOKEN": token}
    secrets = {"access key id": s3_server.access_key, "secret key": s3_server.secret_key, "session token": token}
    texts: dict[str, str | bytes] = {}

    for name, run_env, code in (("replay", env, 0), ("replay with a token", with_token, 2)):
        replay = _cli(["replay", "--config", str(cfg), "--to-version", "10", "--json"], run_env)
        assert replay.returncode == code, replay.stderr[-3000:]
        assert "botocore" in replay.stdout + replay.stderr, "DEBUG lines of the S3 client were expected"
        texts.update({f"{name}'s stdout": replay.stdout, f"{name}'s stderr": replay.stderr})
    refused = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "refused", env=with_token)
    assert refused.wait() == 2
    run = Proc(["run", "--config", str(cfg), "--http-port", "0"], tmp_path / "logs", "run", env=env)
    try:
        wait_until(lambda: bool(run.progress()), "a progress record of run", run)
    finally:
        run.signal(signal.SIGTERM)
        run.wait()
    fs = _fs(s3_server)
    written = {f"s3://{key}": fs.cat_file(key) for key in _objects(s3_server, gold) + _objects(s3_server, late)}
    assert any(k.endswith(".parquet") for k in written)
    texts.update({"run's stdout": run.stdout(), "run's stderr": run.stderr(), "refused run's stdout":
                  refused.stdout(), "refused run's stderr": refused.stderr(), **written})
    for what, secret in secrets.items():
        for where, text in texts.items():
            data = text.encode() if isinstance(text, str) else text
            assert secret.encode() not in data, f"the {what} appears in {where}"
