"""A command imports only what it needs (issue 21, "a fixed cost near the floor's").

Importing pyarrow and numpy, prometheus_client, rich, s3fs or the HTTP server costs a
short command (`--help`, `validate-config`, a replay with nothing or little to do) more
than its work. Each command runs here as a real child process whose `sys.modules` is
printed at exit; the modules it must not have loaded are named. No timing is asserted:
what is imported decides the cost, and that is what can regress silently.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from goldstream.demo.synth import generate_silver
from testsupport import ROOT
from testsupport.process import cli_env

# Prints the loaded modules (top-level packages and goldstream's own) when the CLI exits,
# however it exits (typer raises SystemExit).
_PROBE = """
import atexit, json, runpy, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["goldstream", *sys.argv[1:]]
runpy.run_module("goldstream", run_name="__main__")
"""

# Never needed by a local command that serves nothing, plots nothing, exports nothing.
NEVER = {"pyarrow", "numpy", "pandas", "prometheus_client", "s3fs", "aiobotocore", "botocore", "matplotlib",
         "http.server", "goldstream.server", "goldstream.web", "goldstream.demo", "goldstream.export",
         "goldstream.plot", "goldstream.tables"}
# Not needed to check a configuration file (which needs pydantic, and Polars for the aggregate
# functions' types).
NOT_FOR_CONFIG = NEVER | {"deltalake", "fsspec", "goldstream.runner", "goldstream.sink", "goldstream.source",
                          "goldstream.engine"}
# Nor to print help.
NOT_FOR_HELP = NOT_FOR_CONFIG | {"polars", "pydantic_settings", "goldstream.config", "goldstream.functions"}


def _loaded(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=cli_env(),
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line[len("MODULES "):]))


def _present(modules: set[str], banned: set[str]) -> set[str]:
    """The banned modules that were loaded (a package counts when any of its modules is)."""
    return {b for b in banned if any(m == b or m.startswith(b + ".") for m in modules)}


def test_help_imports_no_pipeline_library() -> None:
    assert _present(_loaded("--help"), NOT_FOR_HELP) == set()


def test_validate_config_imports_no_storage_or_engine(example_config: Path) -> None:
    modules = _loaded("validate-config", str(example_config))
    assert "goldstream.config" in modules  # it did validate
    assert _present(modules, NOT_FOR_CONFIG) == set()


@pytest.mark.parametrize("gold_exists", [False, True], ids=["fresh-gold", "nothing-new"])
def test_local_replay_imports_no_arrow_metrics_server_or_s3(example_config: Path, tmp_path: Path,
                                                            gold_exists: bool) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    generate_silver(str(silver), 2, 500, seed=3)
    argv = ("replay", "--config", str(example_config), "--silver", str(silver), "--gold-root", str(gold))
    if gold_exists:
        _loaded(*argv)
    modules = _loaded(*argv)
    assert {"polars", "deltalake", "goldstream.sink.gold"} <= modules  # it did run the pipeline
    assert _present(modules, NEVER) == set()
    assert (gold / "country_stats" / "_delta_log").is_dir()
