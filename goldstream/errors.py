"""Errors that reach the user.

Every failure goldstream expects (bad config, bad Silver, lost ownership of a Gold table)
is a `GoldstreamError` whose message says what happened, where, and what to do. The CLI
prints it without a traceback and exits with `exit_code`; anything else is a bug.
"""

from __future__ import annotations


class GoldstreamError(Exception):
    """An expected failure with a message meant for the operator."""

    exit_code: int = 1


class ConfigError(GoldstreamError):
    """The configuration is invalid; nothing was read or written."""

    exit_code = 2


class SourceError(GoldstreamError):
    """Silver cannot be read as an append-only stream (schema, removed data, gaps)."""

    exit_code = 2


class SinkError(GoldstreamError):
    """Gold cannot be written safely (schema or query definition mismatch)."""

    exit_code = 2


class OwnershipLost(GoldstreamError):
    """Another instance committed to this query's Gold table: stop rather than duplicate."""

    exit_code = 3


class TransientStorageError(GoldstreamError):
    """A storage call failed in a way that a retry may fix (connection, timeout, 5xx)."""

    exit_code = 4


class StorageAccessError(GoldstreamError):
    """Storage refused a request in a way no retry fixes (credentials rejected, access
    denied, no such bucket): the operator must act, so the process stops at once."""

    exit_code = 2


class StorageFullError(GoldstreamError):
    """A write found no space left (disk full, quota, file size limit): the operator must
    free or add space; a retry before that would fail the same way."""

    exit_code = 2
