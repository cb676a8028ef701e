"""One place that turns a table URI + the AWS_* environment into options for each client.

delta-rs, Polars (object_store) and s3fs each spell storage options differently; the
same endpoint, region and credentials must reach the Delta log reads, the Parquet reads
and the Gold commits. Credentials are only ever taken from the environment and never
logged: `describe()` is what may be printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import fsspec

from goldstream.config import StorageSpec

_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID",
             "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SECRET_KEYS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def is_remote(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Storage:
    """Resolved storage settings for `s3://` URIs (local paths need none)."""

    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, spec: StorageSpec | None = None, env: dict[str, str] | None = None) -> Storage:
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
        if values.get("AWS_ENDPOINT_URL", "").startswith("http://") and "AWS_ALLOW_HTTP" not in values:
            values["AWS_ALLOW_HTTP"] = "true"
        return cls(values)

    def delta_options(self, uri: str) -> dict[str, str] | None:
        """Options for deltalake (delta-rs): the AWS_* names as they are."""
        if not is_remote(uri):
            return None
        opts = dict(self.values)
        opts.setdefault("AWS_REGION", "us-east-1")
        return opts

    def polars_options(self, uri: str) -> dict[str, str] | None:
        """Options for Polars' object_store reader: lower-case aws_* names."""
        if not is_remote(uri):
            return None
        opts = {k.lower(): v for k, v in self.values.items()}
        opts.setdefault("aws_region", "us-east-1")
        return opts

    def filesystem(self, uri: str) -> fsspec.AbstractFileSystem:
        """An fsspec filesystem for small reads/listings (the Delta log)."""
        if not is_remote(uri):
            return fsspec.filesystem("file")
        kwargs: dict[str, Any] = {"client_kwargs": {}, "config_kwargs": {"retries": {"max_attempts": 1}}}
        if self.values.get("AWS_ACCESS_KEY_ID"):
            kwargs["key"] = self.values["AWS_ACCESS_KEY_ID"]
            kwargs["secret"] = self.values.get("AWS_SECRET_ACCESS_KEY")
            if self.values.get("AWS_SESSION_TOKEN"):
                kwargs["token"] = self.values["AWS_SESSION_TOKEN"]
        if self.values.get("AWS_ENDPOINT_URL"):
            kwargs["client_kwargs"]["endpoint_url"] = self.values["AWS_ENDPOINT_URL"]
        kwargs["client_kwargs"]["region_name"] = self.values.get("AWS_REGION", "us-east-1")
        return fsspec.filesystem("s3", skip_instance_cache=True, **kwargs)

    def describe(self) -> dict[str, str]:
        """Settings safe to print: secrets masked."""
        return {k: ("***" if k in SECRET_KEYS else v) for k, v in self.values.items()}


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
