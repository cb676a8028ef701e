"""Session-wide SeaweedFS S3 server for the test suite.

``conftest.py`` wires it with ``pytest.fixture(scope="session")(s3_server_fixture)``.
If the server cannot start, the tests that use it are skipped with the reason,
except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

try:  # tests/ as a package or as a plain rootdir on sys.path
    from .s3server import S3Server, S3ServerError
except ImportError:
    from s3server import S3Server, S3ServerError


def s3_server_fixture() -> Iterator[S3Server]:
    """Yield one started :class:`S3Server` in a throwaway dir; stop it afterwards."""
    with tempfile.TemporaryDirectory(prefix="goldstream-s3-") as tmp:
        server = S3Server(os.path.join(tmp, "data"))
        try:
            server.start()
        except (S3ServerError, OSError, ImportError) as e:
            reason = f"SeaweedFS S3 server could not start: {e}"
            if os.environ.get("CI", "").strip().lower() == "true":
                raise RuntimeError(reason) from e
            pytest.skip(reason)
        try:
            yield server
        finally:
            server.stop()
