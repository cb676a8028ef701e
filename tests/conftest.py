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


@pytest.fixture(scope="session")
def example_config() -> Path:
    return EXAMPLE_CONFIG


@pytest.fixture(autouse=True)
def _no_goldstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their own GOLDSTREAM_* overrides."""
    for k in list(os.environ):
        if k.startswith("GOLDSTREAM_"):
            monkeypatch.delenv(k)
