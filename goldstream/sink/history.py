"""The commits of a table goldstream owns, read from its Delta log, one JSON file each.

delta-rs' `history()` shows only commitInfo, which another writer may omit; what a
commit did to the rows is in its actions. So the owner reads the commit files
themselves: which `txn`s a commit wrote (whose commit it is), whether it removed data
(`remove` with dataChange = true: DELETE, UPDATE, MERGE, overwrite; OPTIMIZE's removes
have dataChange = false and change no row), added rows, or changed the table's
metadata or protocol.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

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
        for line in raw.decode().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "commitInfo" in action:
                info = action["commitInfo"] or {}
            elif "txn" in action:
                txns[action["txn"]["appId"]] = int(action["txn"]["version"])
            elif "remove" in action:
                removed += bool(action["remove"].get("dataChange", True))
            elif "add" in action:
                added += bool(action["add"].get("dataChange", True))
            metadata |= "metaData" in action
            protocol |= "protocol" in action
        return cls(version, info, txns, removed, added, metadata, protocol, hashlib.sha256(raw).hexdigest())


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
