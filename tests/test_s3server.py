"""The SeaweedFS test server really behaves like the S3 that goldstream needs."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pyarrow as pa
import pytest

try:
    from .s3_fixture import s3_server_fixture
    from .s3server import S3Server
except ImportError:
    from s3_fixture import s3_server_fixture
    from s3server import S3Server

pytestmark = pytest.mark.s3

s3 = pytest.fixture(scope="session", name="s3")(s3_server_fixture)


def _uri(s3: S3Server, name: str) -> str:
    return f"s3://{s3.bucket}/{name}-{uuid.uuid4().hex[:8]}"


def _table(start: int, n: int = 3) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(start, start + n), pa.int64()),
            "country": pa.array([f"C{i % 2}" for i in range(start, start + n)]),
        }
    )


@pytest.fixture(scope="module")
def delta_table(s3: S3Server) -> str:
    """A Delta table written by two commits (create + append)."""
    from deltalake import write_deltalake

    uri = _uri(s3, "roundtrip")
    write_deltalake(uri, _table(0), storage_options=s3.deltalake_storage_options())
    write_deltalake(uri, _table(3), mode="append", storage_options=s3.deltalake_storage_options())
    return uri


def test_server_basics(s3: S3Server) -> None:
    assert s3.endpoint == f"http://127.0.0.1:{s3.port}"
    env = s3.env()
    assert env["AWS_ENDPOINT_URL"] == s3.endpoint
    assert env["AWS_ACCESS_KEY_ID"] == s3.access_key
    assert env["AWS_SECRET_ACCESS_KEY"] == s3.secret_key
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ALLOW_HTTP"] == "true"
    assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in env
    assert s3.running and s3.startup_seconds is not None


def test_requests_are_authenticated(s3: S3Server) -> None:
    import urllib.error
    import urllib.request

    from botocore.exceptions import ClientError

    with pytest.raises(urllib.error.HTTPError) as anon:
        urllib.request.urlopen(f"{s3.endpoint}/{s3.bucket}?list-type=2", timeout=10)
    assert anon.value.code == 403

    import botocore.session

    client = botocore.session.Session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3.access_key,
        aws_secret_access_key="not-the-secret",
    )
    try:
        with pytest.raises(ClientError) as err:
            client.list_objects_v2(Bucket=s3.bucket)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        client.close()


def test_if_none_match_star_is_honoured(s3: S3Server) -> None:
    from botocore.exceptions import ClientError

    client = s3.client()
    key = f"conditional/{uuid.uuid4().hex}"
    try:
        first = client.put_object(Bucket=s3.bucket, Key=key, Body=b"first", IfNoneMatch="*")
        assert first["ResponseMetadata"]["HTTPStatusCode"] == 200
        with pytest.raises(ClientError) as err:
            client.put_object(Bucket=s3.bucket, Key=key, Body=b"second", IfNoneMatch="*")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert client.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == b"first"
    finally:
        client.close()


def test_deltalake_roundtrip(s3: S3Server, delta_table: str) -> None:
    from deltalake import DeltaTable

    dt = DeltaTable(delta_table, storage_options=s3.deltalake_storage_options())
    assert dt.version() == 1
    got = dt.to_pyarrow_table().sort_by("id")
    assert got.column("id").to_pylist() == list(range(6))
    assert got.column("country").to_pylist() == [f"C{i % 2}" for i in range(6)]


def test_polars_reads_a_data_file(s3: S3Server, delta_table: str) -> None:
    import polars as pl
    from deltalake import DeltaTable

    dt = DeltaTable(delta_table, storage_options=s3.deltalake_storage_options())
    files = dt.file_uris()
    assert len(files) == 2 and all(f.startswith(f"s3://{s3.bucket}/") for f in files)
    opts = s3.polars_storage_options()
    df = pl.read_parquet(files[0], storage_options=opts)
    assert df.height == 3 and df.columns == ["id", "country"]
    lazy = pl.scan_parquet(files, storage_options=opts).select(pl.col("id").sum()).collect()
    assert lazy.item() == sum(range(6))


def test_s3fs_reads_the_delta_log(s3: S3Server, delta_table: str) -> None:
    import json

    import s3fs

    fs = s3fs.S3FileSystem(**s3.s3fs_kwargs())
    path = delta_table.removeprefix("s3://") + "/_delta_log/00000000000000000000.json"
    with fs.open(path, "rb") as f:
        actions = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
    kinds = {k for a in actions for k in a}
    assert {"protocol", "metaData", "add", "commitInfo"} <= kinds
    assert fs.exists(delta_table.removeprefix("s3://") + "/_delta_log/00000000000000000001.json")


_ENV_ONLY_CHILD = r"""
import sys
import polars as pl
import pyarrow as pa
import s3fs
from deltalake import DeltaTable, write_deltalake

uri = sys.argv[1]
write_deltalake(uri, pa.table({"id": [100], "country": ["ENV"]}), mode="append")
dt = DeltaTable(uri)
assert dt.version() == 2, dt.version()
assert pl.scan_delta(uri).collect().height == 7
assert pl.read_parquet(dt.file_uris()[0]).height >= 1
fs = s3fs.S3FileSystem()
assert len(fs.ls(uri.removeprefix("s3://") + "/_delta_log")) == 3
print("env-only ok")
"""


def test_env_only_configuration(s3: S3Server) -> None:
    """With nothing but s3.env() in the environment, all three libraries work."""
    import os
    import subprocess
    import sys

    from deltalake import DeltaTable, write_deltalake

    uri = _uri(s3, "envonly")
    opts = s3.deltalake_storage_options()
    write_deltalake(uri, _table(0), storage_options=opts)
    write_deltalake(uri, _table(3), mode="append", storage_options=opts)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(s3.env())
    proc = subprocess.run(
        [sys.executable, "-c", _ENV_ONLY_CHILD, uri],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "env-only ok" in proc.stdout
    assert DeltaTable(uri, storage_options=opts).version() == 2


def test_concurrent_writers_exactly_one_wins(s3: S3Server) -> None:
    """Two writers committing the same version: If-None-Match makes one of them lose."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError

    opts = s3.deltalake_storage_options()
    uri = _uri(s3, "race")
    write_deltalake(uri, _table(0), storage_options=opts)
    writers = [DeltaTable(uri, storage_options=opts) for _ in range(2)]
    assert [w.version() for w in writers] == [0, 0]

    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def write(i: int) -> None:
        barrier.wait()
        try:
            write_deltalake(
                writers[i],
                _table(100 * (i + 1)),
                mode="append",
                commit_properties=CommitProperties(max_commit_retries=0),
            )
            outcomes[i] = "ok"
        except Exception as e:  # noqa: BLE001 - recorded and checked below
            outcomes[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes.count("ok") == 1, outcomes
    loser = next(o for o in outcomes if o != "ok")
    assert isinstance(loser, CommitFailedError), repr(loser)

    dt = DeltaTable(uri, storage_options=opts)
    assert dt.version() == 1
    winner = outcomes.index("ok")
    assert sorted(dt.to_pyarrow_table().column("id").to_pylist()) == sorted(
        list(range(3)) + list(range(100 * (winner + 1), 100 * (winner + 1) + 3))
    )


def test_stop_and_start_keep_the_data(s3: S3Server, delta_table: str) -> None:
    from deltalake import DeltaTable, write_deltalake

    opts = s3.deltalake_storage_options()
    endpoint = s3.endpoint
    old_pid = s3.pid
    rc = s3.stop()
    assert rc is not None and not s3.running
    with socket.socket() as sock:  # really down: nothing listens on the S3 port
        assert sock.connect_ex(("127.0.0.1", s3.port)) != 0
    time.sleep(1)
    s3.start()
    assert s3.running and s3.pid != old_pid and s3.endpoint == endpoint
    dt = DeltaTable(delta_table, storage_options=opts)
    assert dt.version() == 1
    assert sorted(dt.to_pyarrow_table().column("id").to_pylist()) == list(range(6))
    write_deltalake(delta_table, _table(6), mode="append", storage_options=opts)
    dt = DeltaTable(delta_table, storage_options=opts)
    assert dt.version() == 2
    assert sorted(dt.to_pyarrow_table().column("id").to_pylist()) == list(range(9))
