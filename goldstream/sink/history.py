"""The commits of a table goldstream owns, read from its Delta log, one JSON file each.

delta-rs' `history()` shows only commitInfo, which another writer may omit; what a
commit did to the rows is in its actions. So the owner reads the commit files
themselves: which `txn`s a commit wrote (whose commit it is), whether it removed data
(`remove` with dataChange = true: DELETE, UPDATE, MERGE, overwrite; OPTIMIZE's removes
have dataChange = false and change no row), added rows, or changed the table's
metadata or protocol. Actions marked dataChange = false are a writer's claim that no row
changed: the files and row counts they add and remove are kept, so that the owner can
check the claim (a compaction removes and adds the same number of rows).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from goldstream.retry import classify
from goldstream.storage import Storage, fs_path, join


@dataclass(frozen=True)
class LogCommit:
    version: int
    info: dict[str, Any]  # commitInfo ({} when the writer wrote none)
    txns: dict[str, int] = field(default_factory=dict)  # appId -> version
    removed: int = 0  # files removed with dataChange = true
    added: int = 0  # files added with dataChange = true
    metadata: bool = False
    protocol: bool = False
    digest: str = ""  # of the file's bytes: tells a replaced commit from the one seen before
    # dataChange = false actions: (path, numRecords from its stats or None)
    quiet_adds: tuple[tuple[str, int | None], ...] = ()
    quiet_removes: tuple[tuple[str, int | None], ...] = ()

    @property
    def operation(self) -> str:
        op = self.info.get("operation")
        if not op:
            return "a commit without commitInfo"
        mode = (self.info.get("operationParameters") or {}).get("mode")
        return f"{op} mode={mode}" if op == "WRITE" and mode else str(op)

    @classmethod
    def parse(cls, version: int, raw: bytes) -> LogCommit:
        info: dict[str, Any] = {}
        txns: dict[str, int] = {}
        removed = added = 0
        metadata = protocol = False
        quiet: dict[str, list[tuple[str, int | None]]] = {"add": [], "remove": []}
        for line in raw.decode().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "commitInfo" in action:
                info = action["commitInfo"] or {}
            elif "txn" in action:
                txns[action["txn"]["appId"]] = int(action["txn"]["version"])
            for kind in ("add", "remove"):
                if kind in action:
                    if action[kind].get("dataChange", True):
                        removed += kind == "remove"
                        added += kind == "add"
                    else:
                        quiet[kind].append((str(action[kind]["path"]), _num_records(action[kind])))
            metadata |= "metaData" in action
            protocol |= "protocol" in action
        return cls(version, info, txns, removed, added, metadata, protocol, hashlib.sha256(raw).hexdigest(),
                   tuple(quiet["add"]), tuple(quiet["remove"]))


def _num_records(action: dict[str, Any]) -> int | None:
    """The rows an add/remove action's file holds for readers: numRecords of its stats (a
    JSON string) less the rows its deletion vector hides; None when there are no stats."""
    try:
        n = json.loads(action.get("stats") or "{}").get("numRecords")
    except (ValueError, AttributeError):
        return None
    if not isinstance(n, int):
        return None
    hidden = (action.get("deletionVector") or {}).get("cardinality") or 0
    return n - int(hidden)


class DeltaLog:
    """Reads single commits of one table (the store delta-rs writes to, through fsspec)."""

    def __init__(self, uri: str, storage: Storage) -> None:
        self.uri = uri
        self._storage = storage
        self._fs: Any = None

    def commit(self, version: int) -> LogCommit | None:
        """The commit at `version`, or None if its file is gone (or never was)."""
        if self._fs is None:
            self._fs = self._storage.filesystem(self.uri)
        try:
            raw = self._fs.cat_file(fs_path(join(self.uri, f"_delta_log/{version:020d}.json")))
        except FileNotFoundError:
            return None
        return LogCommit.parse(version, raw)

    def commits(self, after: int, through: int) -> list[LogCommit]:
        """The commits in (after, through] whose files exist, oldest first."""
        return [c for v in range(after + 1, through + 1) if (c := self.commit(v)) is not None]

    def every_commit(self, after: int, through: int) -> list[LogCommit | None]:
        """The commits in (after, through], oldest first, None where a commit file is missing."""
        return [self.commit(v) for v in range(after + 1, through + 1)]

    def file_rows(self, path: str) -> int | None:
        """The row count in the footer of one of the table's data files (None: gone or unreadable)."""
        import pyarrow.parquet as pq
        from urllib.parse import unquote

        if self._fs is None:
            self._fs = self._storage.filesystem(self.uri)
        full = path if "://" in path else fs_path(join(self.uri, unquote(path)))
        try:
            with self._fs.open(full, "rb") as f:
                return int(pq.ParquetFile(f).metadata.num_rows)
        except Exception as err:  # noqa: BLE001 - gone, or not Parquet: the count is unknown
            if classify(err) is not None:
                raise  # storage unreachable: retried, never taken for a missing file
            return None
