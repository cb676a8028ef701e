"""Which files a Delta log holds after a given version, without listing the whole log.

A month of one commit a minute is 43,200 commit files: listing them all costs a local
`ls` about 0.3 s and S3 44 LIST requests, and that on every restart, every replay and
every lag refresh, growing with the table's age. What the stream needs to know is what
lies *after* a version it already knows exists (the version it opened the table at, the
one it reads next), so:

- on S3, one LIST from a start key (`StartAfter`: keys sort by version, the names being
  zero-padded): it returns only the newer files, whatever the log's age;
- on a local path, where a directory cannot be listed from a key, the newer commit files
  are found by `stat`, galloping from the known version (1, 2, 4, ... ahead, then a
  binary search back): O(log n) probes, and a commit is only ever looked for by name.
  Commits are contiguous (a hole is a damaged log: `SilverSource` reports one as soon
  as a probe finds a commit after it).

A full listing is still what answers the questions that are about the whole log (its
first version, for 'earliest'; where a hole is, to say so).
"""

from __future__ import annotations

import re
from typing import Any

from goldstream.storage import join

COMMIT_FILE = re.compile(r"(\d{20})\.json$")
# a checkpoint: classic, multi-part (part i of n) or v2 (uuid-named, parquet or json)
CHECKPOINT_FILE = re.compile(r"(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?(?:\.[0-9a-fA-F-]{36})?\.(?:parquet|json)$")
GALLOP_LIMIT = 1 << 40  # far beyond any table: the probes stop at the first missing commit anyway


class LogFiles:
    """The `_delta_log` directory `log_dir` (fsspec path form) of one table on `fs`."""

    def __init__(self, fs: Any, log_dir: str) -> None:
        self.fs = fs
        self.log_dir = log_dir
        self.s3 = "s3" in (fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,))

    def commit_path(self, version: int) -> str:
        return join(self.log_dir, f"{version:020d}.json")

    def all(self) -> tuple[list[int], list[int]]:
        """Every commit version and complete checkpoint version in the log (a multi-part
        checkpoint with a part missing, e.g. still being written, is not one)."""
        self.fs.invalidate_cache(self.log_dir)  # s3fs caches listings; the log keeps growing
        return _versions(self.fs.ls(self.log_dir, detail=False))

    def after(self, version: int) -> tuple[list[int], list[int]]:
        """The commit versions > `version` and the complete checkpoint versions >= it: one
        LIST from a start key on S3; elsewhere the full listing, filtered."""
        if not self.s3:
            commits, checkpoints = self.all()
            return [v for v in commits if v > version], [c for c in checkpoints if c >= version]
        bucket, _, prefix = self.log_dir.partition("/")
        prefix = f"{prefix}/"
        start_after = f"{prefix}{max(version, 0) - 1:020d}.zzz" if version > 0 else ""  # every name of `version` on
        names: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            page = self.fs.call_s3("list_objects_v2", **kwargs)
            names += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        commits, checkpoints = _versions(names)
        return [v for v in commits if v > version], [c for c in checkpoints if c >= version]

    def exists(self, version: int) -> bool:
        path = self.commit_path(version)
        self.fs.invalidate_cache(path)
        return bool(self.fs.exists(path))

    def newest_commit(self, known: int) -> int:
        """The newest commit version, given a version `known` to have been committed: one
        LIST after it on S3; elsewhere `stat`s galloping ahead of it."""
        if self.s3:
            commits, _ = self.after(known)
            return max(commits, default=known)
        lo, step = known, 1
        while step < GALLOP_LIMIT and self.exists(lo + step):
            lo += step
            step *= 2
        hi = lo + step  # missing (or beyond the limit)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.exists(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def any_after(self, version: int) -> bool:
        """Whether a commit after `version` exists, by name: the next one, or one a power of
        two ahead (a hole longer than one commit is found once the log reaches past it)."""
        if self.s3:
            commits, _ = self.after(version)
            return bool(commits)
        step = 1
        while step <= 1 << 20:
            if self.exists(version + step):
                return True
            step *= 2
        return False


def _versions(names: list[str]) -> tuple[list[int], list[int]]:
    commits: list[int] = []
    parts: dict[tuple[int, int], set[int]] = {}
    for p in names:
        if m := COMMIT_FILE.search(p):
            commits.append(int(m.group(1)))
        elif m := CHECKPOINT_FILE.search(p):
            part, of = (int(m.group(2)), int(m.group(3))) if m.group(2) else (1, 1)
            parts.setdefault((int(m.group(1)), of), set()).add(part)
    checkpoints = {v for (v, of), got in parts.items() if len(got) == of}
    return sorted(commits), sorted(checkpoints)
