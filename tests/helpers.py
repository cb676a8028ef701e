"""Small helpers shared by tests: run goldstream, read Gold, write Silver commits."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable, write_deltalake

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE_DIRS = [ROOT / "tests" / "conformance", ROOT.parent / "shared" / "conformance"]
QUERIES = ("country_stats", "country_anomalies")


def conformance_cases() -> list[Path]:
    """Cases copied into tests/ plus any case found in ../shared/conformance (by name)."""
    cases: dict[str, Path] = {}
    for d in CONFORMANCE_DIRS:
        if d.is_dir():
            for c in sorted(d.iterdir()):
                if (c / "silver" / "_delta_log").is_dir() and (c / "expected").is_dir():
                    cases[c.name] = c
    return [cases[k] for k in sorted(cases)]


def goldstream(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "goldstream", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"goldstream {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def read_gold(path: str | Path, storage_options: dict[str, str] | None = None) -> pl.DataFrame:
    return pl.from_arrow(DeltaTable(str(path), storage_options=storage_options).to_pyarrow_table())  # type: ignore[return-value]


def append_commits(table: str | Path, frames: list[pl.DataFrame | None], schema_from: pl.DataFrame,
                   storage_options: dict[str, str] | None = None) -> None:
    """One Delta commit per frame (None: an empty commit)."""
    for f in frames:
        data = schema_from.clear() if f is None else f
        write_deltalake(str(table), data.to_arrow(), mode="append", storage_options=storage_options)


def write_config(path: Path, text: str, **fmt: Any) -> Path:
    path.write_text(text.format(**fmt))
    return path


def toml_value(v: Any) -> str:
    """A Python value as a TOML value (tests write configs as text)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")
