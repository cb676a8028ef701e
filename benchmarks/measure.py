"""Run a command as a child process and measure it: wall time, CPU time and peak RSS of
that one child (os.wait4's rusage, not the cumulative RUSAGE_CHILDREN), optionally with
a callback per stdout line that can read the child's current RSS from /proc."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from testsupport import ROOT
from testsupport.process import cli_env


@dataclass
class Measured:
    argv: list[str]
    wall_s: float
    cpu_s: float  # user + system, all threads
    peak_rss_mb: float
    returncode: int
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: str = ""


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS so far) of a live process, from /proc/<pid>/status."""
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def run(argv: list[str], env: dict[str, str] | None = None, on_line: Callable[[str, int], None] | None = None,
        keep_lines: int = 5, timeout_s: float = 3600) -> Measured:
    """Run `argv` to completion; `on_line(line, pid)` sees each stdout line as it comes."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env if env is not None else cli_env(), cwd=ROOT)
    tail: list[str] = []
    err_chunks: list[str] = []
    drain = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if on_line is not None:
                on_line(line, proc.pid)
            tail.append(line.rstrip("\n"))
            del tail[:-keep_lines]
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    drain.join(timeout=5)
    return Measured(argv, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode,
                    tail, "".join(err_chunks)[-3000:])


def check(m: Measured, what: str) -> Measured:
    if m.returncode != 0:
        raise RuntimeError(f"{what} exited {m.returncode}: {' '.join(m.argv)}\n{m.stderr_tail}")
    return m
