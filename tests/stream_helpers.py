"""Helpers for the process-level tests (crashes, fencing, the daemon): configs written
as TOML, Silver tables written fast, `goldstream run` subprocesses with their JSON logs.

Everything here drives the real CLI in real subprocesses against real Delta tables on
disk; nothing is mocked. Waits have generous deadlines only to fail instead of hanging:
no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any, Callable

import polars as pl
from deltalake import DeltaTable, write_deltalake

from helpers import toml_value

ROOT = Path(__file__).resolve().parent.parent
WAIT = 120.0  # deadline of any wait: only there to fail instead of hanging


# -- configuration ---------------------------------------------------------------------


def seed_queries() -> dict[str, dict[str, Any]]:
    """The two seed queries of config.example.toml, as plain dicts (name -> query)."""
    with (ROOT / "config.example.toml").open("rb") as fh:
        return {q["name"]: q for q in tomllib.load(fh)["queries"]}


def write_config(path: Path, silver: Path | str, gold_root: Path | str, queries: list[dict[str, Any]],
                 **source: Any) -> Path:
    """A complete goldstream TOML config: [source] (path + overrides), [sink], [[queries]]."""
    lines = ['log_level = "INFO"', "", "[source]", f"path = {toml_value(str(silver))}"]
    lines += [f"{k} = {toml_value(v)}" for k, v in source.items()]
    lines += ["", "[sink]", f"gold_root = {toml_value(str(gold_root))}", "", "[server]", "http_port = 0"]
    for q in queries:
        lines += ["", "[[queries]]"] + [f"{k} = {toml_value(v)}" for k, v in q.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- Silver ----------------------------------------------------------------------------


class FastSilver:
    """A local Silver Delta table written one append commit at a time, fast.

    The table is created by delta-rs (protocol, schema); later commits are written the
    way any Delta writer does it: a Parquet file, then `_delta_log/<v>.json` holding its
    `add` action, published atomically with a hard link (put-if-absent). delta-rs needs
    tens of ms per commit here (its snapshot replays the log since the last checkpoint),
    which would make a 1,000-commit table cost most of the test budget.
    """

    def __init__(self, path: Path, schema_from: pl.DataFrame) -> None:
        self.path = path
        write_deltalake(str(path), schema_from.clear().to_arrow(), mode="append")
        self.version = 0

    def append(self, frame: pl.DataFrame | None) -> int:
        """One commit holding `frame` (None or 0 rows: an empty commit); its version."""
        v = self.version + 1
        now_ms = int(time.time() * 1000)
        actions: list[dict[str, Any]] = []
        if frame is not None and frame.height:
            name = f"part-{v:05d}-{uuid.uuid4()}-c000.snappy.parquet"
            frame.write_parquet(self.path / name, compression="snappy")
            actions.append({"add": {
                "path": name, "partitionValues": {}, "size": (self.path / name).stat().st_size,
                "modificationTime": now_ms, "dataChange": True,
                "stats": json.dumps({"numRecords": frame.height}),
            }})
        actions.append({"commitInfo": {"timestamp": now_ms, "operation": "WRITE",
                                       "operationParameters": {"mode": "Append"}}})
        log = self.path / "_delta_log"
        tmp = log / f"_commit_{uuid.uuid4()}.json.tmp"
        tmp.write_text("\n".join(json.dumps(a) for a in actions) + "\n")
        os.link(tmp, log / f"{v:020d}.json")  # fails if the version exists: put-if-absent
        tmp.unlink()
        self.version = v
        return v

    def checkpoint(self) -> None:
        DeltaTable(str(self.path)).create_checkpoint()


def delta_append_all(path: Path, frames: list[pl.DataFrame]) -> None:
    """One delta-rs commit per frame (a 0-row frame is an empty commit)."""
    write_deltalake(str(path), frames[0].to_arrow(), mode="append")
    dt = DeltaTable(str(path))
    for i, f in enumerate(frames[1:], 1):
        write_deltalake(dt, f.to_arrow(), mode="append")
        if i % 50 == 0:  # a fresh snapshot (from the latest checkpoint) keeps commits fast
            dt = DeltaTable(str(path))


# -- Delta inspection --------------------------------------------------------------------


def log_versions(table: Path) -> int:
    """Number of commit files in a local table's log (0 when it does not exist yet)."""
    try:
        return sum(1 for n in os.listdir(table / "_delta_log") if n.endswith(".json") and n[:20].isdigit())
    except FileNotFoundError:
        return 0


def data_files(table: Path) -> set[str]:
    """Data files in a table's directory, including a writer's staging files (object_store
    writes `<name>#<n>` and renames it when complete)."""
    try:
        return {n for n in os.listdir(table) if n.startswith("part-")}
    except FileNotFoundError:
        return set()


def orphan_files(table: Path) -> set[str]:
    """Data files in the table directory that no commit references: a commit that was
    interrupted after writing its Parquet file and before its log entry."""
    if log_versions(table) == 0:
        return data_files(table)
    dt = DeltaTable(str(table))
    referenced = {os.path.basename(p) for p in dt.file_uris()}
    return data_files(table) - referenced


def txn_version(table: Path, app_id: str) -> int | None:
    try:
        v = DeltaTable(str(table)).transaction_version(app_id)
    except Exception:  # noqa: BLE001 - no table yet
        return None
    return None if v is None else int(v)


# -- processes ----------------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDSTREAM_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class Proc:
    """A goldstream subprocess whose stdout (JSON log lines) and stderr go to files."""

    def __init__(self, args: list[str], log_dir: Path, name: str, env: dict[str, str] | None = None) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        self._out = self.out_path.open("w")
        self._err = self.err_path.open("w")
        self.popen = subprocess.Popen([sys.executable, "-m", "goldstream", *args], cwd=ROOT,
                                      stdout=self._out, stderr=self._err, env=env or cli_env())

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def wait(self, timeout: float = WAIT) -> int:
        try:
            rc = self.popen.wait(timeout)
        finally:
            self._out.close()
            self._err.close()
        return rc

    def kill(self) -> int:
        self.signal(signal.SIGKILL)
        return self.wait()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stdout(self) -> str:
        return self.out_path.read_text()

    def progress(self) -> list[dict[str, Any]]:
        """The progress records logged so far (one per batch per query)."""
        out = []
        for line in self.stdout().splitlines():
            if '"progress"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:  # a line being written
                continue
            if "progress" in rec:
                out.append(rec["progress"])
        return out

    def processed_through(self) -> dict[str, int]:
        """Per query, the highest Silver version a batch of this process ended at."""
        out: dict[str, int] = {}
        for p in self.progress():
            out[p["name"]] = max(out.get(p["name"], -1), int(p["sources"][0]["endOffset"]))
        return out

    def describe(self) -> str:
        return f"pid {self.pid} rc {self.popen.poll()}\nstderr:\n{self.stderr()[-3000:]}\nstdout tail:\n" \
               f"{self.stdout()[-2000:]}"


def wait_until(cond: Callable[[], bool], what: str, proc: Proc | None = None, timeout: float = WAIT,
               interval: float = 0.05) -> None:
    """Wait for `cond`; fail with `what` (and the process's output) after `timeout`."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            if cond():
                return
            raise AssertionError(f"process exited while waiting for {what}:\n{proc.describe()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f":\n{proc.describe()}" if proc else ""))
        time.sleep(interval)


def wait_caught_up(proc: Proc, gold_root: Path, queries: list[str], version: int) -> None:
    """Until every query of a `run` processed Silver through `version` (from its progress
    records, or from Gold's txn when everything was processed before this process)."""

    def done() -> bool:
        seen = proc.processed_through()
        return all(seen.get(q, -1) >= version or (txn_version(gold_root / q, f"goldstream-{q}") or -1) >= version
                   for q in queries)

    wait_until(done, f"run to process Silver through version {version}", proc)
