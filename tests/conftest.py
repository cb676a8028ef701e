"""Shared fixtures: the seed config, conformance cases, the real S3 server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # testsupport/ and tests' own modules, however pytest starts

from s3_fixture import s3_server_fixture  # noqa: E402
from testsupport.config import EXAMPLE_CONFIG  # noqa: E402

s3_server = pytest.fixture(scope="session")(s3_server_fixture)

# The longest tests (minutes on two busy cores: crash loops, S3 outages, local Spark), by
# module or test name, from `pytest --durations=25` (docs/contributing.md lists them). They
# are sent to the xdist workers first, so the suite does not end waiting for one of them.
LONGEST_FIRST = ("test_s3.py::", "test_export_spark.py::", "test_exactly_once.py::test_run_sigkilled",
                 "test_exactly_once.py::test_replay_sigkilled", "test_deploy.py::test_dockerfile",
                 "test_benchmarks.py::", "test_synth.py::test_a_five_million", "test_maintenance.py::",
                 "test_reference.py::", "test_restart.py::test_interrupted_replay")


# Modules whose tests take minutes alone: spread test by test, though they share a cheap
# module-scoped fixture.
SPREAD = ("tests/test_s3.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest tests first (a stable sort keeps every module's own order), and the tests of a
    module with a module-scoped fixture (a replayed Gold, one local Spark) on one xdist
    worker (`xdist_group`, with `--dist loadgroup` in pyproject.toml): the fixture is built
    once, not once per worker, nor again each time its module's tests resume."""
    def rank(item: pytest.Item) -> int:
        for i, prefix in enumerate(LONGEST_FIRST):
            if item.nodeid.removeprefix("tests/").startswith(prefix):
                return i
        return len(LONGEST_FIRST)

    items.sort(key=rank)
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        info = getattr(item, "_fixtureinfo", None)
        shared = info is not None and any(
            defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values())
        if shared and module not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(module))


@pytest.fixture(scope="session")
def example_config() -> Path:
    return EXAMPLE_CONFIG


@pytest.fixture(autouse=True)
def _no_goldstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their own GOLDSTREAM_* overrides."""
    for k in list(os.environ):
        if k.startswith("GOLDSTREAM_"):
            monkeypatch.delenv(k)
