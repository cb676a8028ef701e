"""Helpers for the process-level tests (crashes, fencing, the daemon): `goldstream run`
subprocesses with their JSON logs, and what a crash may leave in a local Delta table.

Everything here drives the real CLI in real subprocesses against real Delta tables on
disk; nothing is mocked. Waits have generous deadlines only to fail instead of hanging:
no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import polars as pl

from deltalake import DeltaTable

from testsupport import ROOT
from testsupport.gold import txn_version
from testsupport.process import cli_env, end_offset, goldstream_argv, progress_record

WAIT = 120.0  # deadline of any wait: only there to fail instead of hanging


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


# -- processes ----------------------------------------------------------------------------


class Proc:
    """A goldstream subprocess whose stdout (JSON log lines) and stderr go to files."""

    def __init__(self, args: list[str], log_dir: Path, name: str, env: dict[str, str] | None = None) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        self._out = self.out_path.open("w")
        self._err = self.err_path.open("w")
        self.popen = subprocess.Popen(goldstream_argv(*args), cwd=ROOT,
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
        return [p for p in map(progress_record, self.stdout().splitlines()) if p is not None]

    def processed_through(self) -> dict[str, int]:
        """Per query, the highest Silver version a batch of this process ended at."""
        out: dict[str, int] = {}
        for p in self.progress():
            out[p["name"]] = max(out.get(p["name"], -1), end_offset(p))
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


class GrowingSilver(Protocol):
    version: int

    def append(self, frame: pl.DataFrame) -> int: ...


def grow_until_one_stands_by(procs: list[Proc], silver: GrowingSilver, frames: Iterator[pl.DataFrame],
                             limit: int) -> tuple[Proc, Proc]:
    """Two `run` instances of one query: once both opened Gold, keep Silver growing (both
    have to commit new windows) until fencing makes one of them stand by; neither may exit.
    Returns (the owner, the standby)."""
    wait_until(lambda: all("Silver version" in p.stdout() or p.poll() is not None for p in procs),
               "both instances to open Gold")
    while not any("Standing by" in p.stdout() for p in procs):
        assert all(p.poll() is None for p in procs), [p.describe() for p in procs]
        assert silver.version < limit, "both instances kept running: no fencing"
        silver.append(next(frames))
        time.sleep(0.05)
    standby = next(p for p in procs if "Standing by" in p.stdout())
    return next(p for p in procs if p is not standby), standby


def wait_caught_up(proc: Proc, gold_root: Path | str, queries: list[str], version: int,
                   storage_options: dict[str, str] | None = None, interval: float = 0.05) -> None:
    """Until every query of a `run` processed Silver through `version` (from its progress
    records, or from Gold's txn when everything was processed before this process)."""

    def done() -> bool:
        seen = proc.processed_through()
        return all(seen.get(q, -1) >= version or (txn_version(gold_root, q, storage_options=storage_options) or -1)
                   >= version for q in queries)

    wait_until(done, f"run to process Silver through version {version}", proc, interval=interval)
