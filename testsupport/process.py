"""goldstream as a child process: the environment it gets, its command line, and the
progress records of its JSON log (one per batch per query)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from testsupport import ROOT


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a goldstream child: this checkout first on the path (so it runs
    without being installed), no GOLDSTREAM_* of ours leaking in, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDSTREAM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def goldstream_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "goldstream", *args]


def goldstream(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; `env`: variables added to `cli_env()`."""
    proc = subprocess.run(goldstream_argv(*args), capture_output=True, text=True, env=cli_env(**(env or {})),
                          timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"goldstream {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def progress_record(line: str) -> dict[str, Any] | None:
    """The progress record a log line holds, or None (another record, or a line being written)."""
    if '"progress"' not in line:
        return None
    try:
        record = json.loads(line).get("progress")
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("sources") else None


def end_offset(progress: dict[str, Any]) -> int:
    """The Silver version a batch ended at."""
    return int(progress["sources"][0]["endOffset"])
