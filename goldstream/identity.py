"""Where a table really is: the identity two spellings of one location share.

A configuration names tables by URI, and many spellings reach one table: `/a/./b`,
`/a//b/`, `x/../b`, a relative path, `file://`, a symlink, `s3a://` for `s3://`. Two
roles on one table (a Gold table written twice, a late sink appending into Silver) or
one table inside another (a VACUUM of the outer one deletes the inner one's files) lose
or duplicate data, so roles are compared by identity, never by their spelling.

A local path has two readings once symlinks are involved: the kernel's, which follows a
link before `..` (what delta-rs uses after canonicalising), and the lexical one, which
drops `x/..` first (what fsspec uses). Both are kept, and a clash in either is a clash.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_SAME_STORE = {"s3a": "s3", "s3n": "s3"}  # Hadoop's names for the S3 store


@dataclass(frozen=True)
class TableIdentity:
    """A store ('' for the local filesystem, else scheme://bucket) and the path in it."""

    store: str
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.store}/{'/'.join(self.parts)}"

    def contains(self, other: TableIdentity) -> bool:
        """True when `other` is this location or lies below it."""
        return self.store == other.store and other.parts[:len(self.parts)] == self.parts


def identities(uri: str) -> tuple[TableIdentity, ...]:
    """Every identity `uri` may resolve to (one, or two for a local path through a symlink)."""
    m = _SCHEME.fullmatch(uri)
    if m and m.group(1).lower() != "file":
        scheme = m.group(1).lower()
        bucket, _, key = m.group(2).partition("/")
        return (TableIdentity(f"{_SAME_STORE.get(scheme, scheme)}://{bucket}", _parts(posixpath.normpath("/" + key))),)
    path = m.group(2) if m else uri
    physical = _parts(os.path.realpath(path))
    lexical = _parts(os.path.realpath(os.path.abspath(path)))
    return tuple(TableIdentity("", p) for p in dict.fromkeys((physical, lexical)))


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p and p != ".")


def check_apart(tables: Sequence[tuple[str, str]]) -> None:
    """ValueError naming the first two (role, uri) pairs that are one table or nested."""
    resolved = [(role, uri, identities(uri)) for role, uri in tables]
    for i, (role, uri, ids) in enumerate(resolved):
        for other_role, other_uri, other_ids in resolved[:i]:
            for a in ids:
                for b in other_ids:
                    if a == b:
                        clash = f"{other_role} ({other_uri}) and {role} ({uri}) are the same table {a}"
                    elif b.contains(a):
                        clash = f"{role} ({uri}) lies inside {other_role} ({other_uri})"
                    elif a.contains(b):
                        clash = f"{other_role} ({other_uri}) lies inside {role} ({uri})"
                    else:
                        continue
                    raise ValueError(
                        f"{clash}: every table needs a location of its own, neither the same as nor inside "
                        "another, or a write or VACUUM of one touches the other's files. Set source.path, "
                        "sink.gold_root, gold_path or late_sink apart"
                    )
