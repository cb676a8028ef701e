"""Parse one Delta commit file (`_delta_log/<version>.json`) into what a stream needs.

Spark's Delta source reads the log version by version; so do we. A commit is one of:
an append (`add` with dataChange=true), a no-op for readers (dataChange=false:
OPTIMIZE, compaction), or a change (data removed or rewritten: DELETE, UPDATE, MERGE,
overwrite, a deletion vector added to an existing file), which an append-only stream
cannot represent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote


@dataclass(frozen=True)
class AddedFile:
    path: str  # relative to the table root, URI-decoded; or an absolute URI
    partition_values: dict[str, str | None]
    size: int
    num_records: int | None

    @property
    def is_absolute(self) -> bool:
        return "://" in self.path


@dataclass
class Commit:
    version: int
    timestamp_ms: int | None = None
    operation: str | None = None
    files: list[AddedFile] = field(default_factory=list)
    change_reason: str | None = None  # set when the commit removes or rewrites data
    metadata: dict[str, Any] | None = None
    protocol: dict[str, Any] | None = None
    removed: list[str] = field(default_factory=list)  # paths removed with dataChange=true
    mode: str | None = None  # operationParameters.mode (e.g. Overwrite), for messages

    @property
    def is_change(self) -> bool:
        return self.change_reason is not None

    @property
    def num_records(self) -> int:
        return sum(f.num_records or 0 for f in self.files)


def _num_records(add: dict[str, Any]) -> int | None:
    stats = add.get("stats")
    if not stats:
        return None
    try:
        return int(json.loads(stats).get("numRecords"))
    except (ValueError, TypeError, AttributeError):
        return None


def parse_commit(version: int, text: str | bytes) -> Commit:
    """Classify the actions of one commit. Raises ValueError on malformed JSON."""
    commit = Commit(version)
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"line {line_no} is not valid JSON: {err}") from None
        if "add" in action:
            add = action["add"]
            if not add.get("dataChange", True):
                continue  # OPTIMIZE, compaction, DV purge: the same rows, re-laid out
            if add.get("deletionVector"):
                # rows of an existing file deleted or rewritten (Delta's DELETE/UPDATE/MERGE with
                # deletion vectors re-add the file with its vector)
                commit.change_reason = f"file {unquote(add['path'])} gets a deletion vector (rows deleted or updated)"
            else:
                commit.files.append(AddedFile(
                    path=unquote(add["path"]),
                    partition_values=dict(add.get("partitionValues") or {}),
                    size=int(add.get("size") or 0),
                    num_records=_num_records(add),
                ))
        elif "remove" in action:
            if action["remove"].get("dataChange", True):
                commit.removed.append(unquote(action["remove"]["path"]))
        elif "commitInfo" in action:
            info = action["commitInfo"]
            commit.timestamp_ms = info.get("inCommitTimestamp") or info.get("timestamp")
            commit.operation = info.get("operation")
            commit.mode = (info.get("operationParameters") or {}).get("mode")
        elif "metaData" in action:
            commit.metadata = action["metaData"]
        elif "protocol" in action:
            commit.protocol = action["protocol"]
    if commit.removed and commit.change_reason is None:
        n = len(commit.removed)
        commit.change_reason = (f"it removes {n} data file{'s' if n > 1 else ''} with dataChange=true, "
                                f"e.g. {commit.removed[0]}")
    if commit.change_reason and commit.operation:
        op = commit.operation + (f" mode={commit.mode}" if commit.mode and commit.mode != "Append" else "")
        commit.change_reason = f"{op}: {commit.change_reason}"
    return commit
