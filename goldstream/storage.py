"""One place that turns a table URI + the AWS_* environment into options for each client.

delta-rs, Polars (object_store) and s3fs each spell storage options differently; the
same endpoint, region and credentials must reach the Delta log reads, the Parquet reads
and the Gold commits. Credentials are only ever taken from the environment (with none
there, each client falls back to its own AWS credential chain: profile, web identity,
instance metadata) and never logged: `describe()` and `repr()` mask them.

Each client also retries failed requests by itself, invisibly. Those internal retries
are kept short (a few attempts within seconds) and their timeouts bounded, so that a
blip is absorbed where it happens while a longer outage reaches goldstream's own retry
loop (`goldstream.retry`), which logs every attempt; a permanent error (403, no such
bucket) is never retried by any of them and surfaces at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from goldstream.config import StorageSpec

if TYPE_CHECKING:
    import fsspec

_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID",
             "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST")
SECRET_KEYS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
DEFAULT_REGION = "us-east-1"

# Client-internal retries and timeouts (see the module doc). object_store (delta-rs, Polars)
# retries 5xx and connection errors with its own backoff; botocore/s3fs likewise.
INTERNAL_RETRIES = 3
RETRY_TIMEOUT_S = 20
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10  # s3fs/botocore: the log files it reads are small


def is_remote(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def split_s3(uri: str) -> tuple[str, str]:
    """('bucket', 'key/prefix') of an s3:// or s3a:// URI."""
    bucket, _, key = fs_path(uri).partition("/")
    return bucket, key.strip("/")


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Storage:
    """Resolved storage settings for `s3://` URIs (local paths need none)."""

    values: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, spec: StorageSpec | None = None, env: dict[str, str] | None = None) -> Storage:
        """The AWS_* environment, with [storage]'s non-secret overrides applied on top."""
        env = dict(os.environ if env is None else env)
        values = {k: env[k] for k in _ENV_KEYS if env.get(k)}
        if not values.get("AWS_REGION") and env.get("AWS_DEFAULT_REGION"):
            values["AWS_REGION"] = env["AWS_DEFAULT_REGION"]
        if spec is not None:
            if spec.endpoint:
                values["AWS_ENDPOINT_URL"] = spec.endpoint
            if spec.region:
                values["AWS_REGION"] = spec.region
            if spec.allow_http is not None:
                values["AWS_ALLOW_HTTP"] = "true" if spec.allow_http else "false"
        # object_store (delta-rs, Polars) refuses plain http unless told; botocore does not care
        if values.get("AWS_ENDPOINT_URL", "").startswith("http://") and "AWS_ALLOW_HTTP" not in values:
            values["AWS_ALLOW_HTTP"] = "true"
        return cls(values)

    @property
    def endpoint(self) -> str:
        return self.values.get("AWS_ENDPOINT_URL") or "AWS S3"

    def delta_options(self, uri: str) -> dict[str, str] | None:
        """Options for deltalake (delta-rs): the AWS_* names as they are, plus bounded retries."""
        if not is_remote(uri):
            return None
        opts = dict(self.values)
        opts.setdefault("AWS_REGION", DEFAULT_REGION)
        opts.update({
            "max_retries": str(INTERNAL_RETRIES),
            "retry_timeout": f"{RETRY_TIMEOUT_S}s",
            "connect_timeout": f"{CONNECT_TIMEOUT_S}s",
            "backoff_config.init_backoff": "100ms",
            "backoff_config.max_backoff": "2s",
        })
        return opts

    def polars_options(self, uri: str) -> dict[str, Any] | None:
        """Options for Polars' object_store reader: lower-case aws_* names, plus bounded retries."""
        if not is_remote(uri):
            return None
        opts: dict[str, Any] = {k.lower(): v for k, v in self.values.items()}
        opts.setdefault("aws_region", DEFAULT_REGION)
        opts.update({
            "max_retries": INTERNAL_RETRIES,
            "retry_timeout_ms": RETRY_TIMEOUT_S * 1000,
            "connect_timeout": f"{CONNECT_TIMEOUT_S}s",
        })
        return opts

    def filesystem(self, uri: str) -> fsspec.AbstractFileSystem:
        """An fsspec filesystem for small reads/listings (the Delta log)."""
        import fsspec  # ~10 ms: not imported by commands that read no log

        if not is_remote(uri):
            return fsspec.filesystem("file")
        config: dict[str, Any] = {
            "retries": {"total_max_attempts": 1, "mode": "standard"},  # s3fs retries itself (below)
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
        }
        if self.values.get("AWS_ENDPOINT_URL") and not _truthy(self.values.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST")):
            # object_store addresses a custom endpoint path-style; botocore would try
            # bucket.host (virtual-hosted) for a named host such as a MinIO service
            config["s3"] = {"addressing_style": "path"}
        kwargs: dict[str, Any] = {"client_kwargs": {}, "config_kwargs": config}
        if self.values.get("AWS_ACCESS_KEY_ID"):
            kwargs["key"] = self.values["AWS_ACCESS_KEY_ID"]
            kwargs["secret"] = self.values.get("AWS_SECRET_ACCESS_KEY")
            if self.values.get("AWS_SESSION_TOKEN"):
                kwargs["token"] = self.values["AWS_SESSION_TOKEN"]
        if self.values.get("AWS_ENDPOINT_URL"):
            kwargs["client_kwargs"]["endpoint_url"] = self.values["AWS_ENDPOINT_URL"]
        kwargs["client_kwargs"]["region_name"] = self.values.get("AWS_REGION", DEFAULT_REGION)
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **kwargs)
        fs.retries = INTERNAL_RETRIES  # s3fs's own retry loop (a class attribute, 5 by default)
        return fs

    def check_access(self, uris: Iterable[str]) -> None:
        """Before anything is read or written: list one key under each S3 URI, so that
        rejected credentials, denied access or a missing bucket stop the process at once
        with a message naming the URI (`StorageAccessError`), instead of surfacing later
        as a missing table (which `run` would wait for) or a half-explained client error.
        Transient failures propagate unchanged: the caller retries them."""
        from goldstream.retry import classify, storage_failure

        fs = None
        for uri in dict.fromkeys(u.rstrip("/") for u in uris if is_remote(u)):
            fs = fs or self.filesystem(uri)
            bucket, key = split_s3(uri)
            try:
                fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=f"{key}/" if key else "", MaxKeys=1)
            except Exception as err:  # noqa: BLE001 - classified below
                if classify(err) == "permanent":
                    failure = storage_failure(err, f"{uri} (bucket {bucket!r} at {self.endpoint})")
                    assert failure is not None
                    raise failure from None
                raise

    def describe(self) -> dict[str, str]:
        """Settings safe to print: secrets masked."""
        return {k: ("***" if k in SECRET_KEYS else v) for k, v in self.values.items()}

    def __repr__(self) -> str:
        return f"Storage({self.describe()})"


def fs_path(uri: str) -> str:
    """The path form fsspec wants: bucket/key for S3, an absolute path locally."""
    if uri.startswith("s3a://"):
        return uri[len("s3a://"):]
    if uri.startswith("s3://"):
        return uri[len("s3://"):]
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return os.path.abspath(uri)


def join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel.lstrip('/')}"
