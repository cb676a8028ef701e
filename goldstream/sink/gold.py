"""Append closed windows to a query's Gold Delta table, exactly once.

Each commit carries the rows and the `txn` offsets together (one atomic Delta commit).
Before committing we re-read the table and check that its offsets are still the ones
we last wrote; the commit itself is made against that snapshot with no retries, so a
concurrent commit from another instance makes ours fail instead of being silently
rebased. Either way the other instance owns the query and we stop (DESIGN §3).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from goldstream.config import QuerySpec
from goldstream.durations import format_duration
from goldstream.errors import OwnershipLost, SinkError
from goldstream.retry import classify
from goldstream.sink.offsets import Offsets
from goldstream.storage import Storage

log = logging.getLogger(__name__)
_DESCRIPTION_PREFIX = "goldstream query "
TAG = "goldstream.commitTag"
RELOAD_EVERY = 100  # Delta's default checkpoint interval: a fresh load starts from a checkpoint


def _definition_of(dt: DeltaTable) -> dict[str, Any] | None:
    desc = dt.metadata().description or ""
    if not desc.startswith(_DESCRIPTION_PREFIX):
        return None
    try:
        return json.loads(desc[len(_DESCRIPTION_PREFIX):])
    except ValueError:
        return None


_LABELS = {"window.size_us": "window size", "window.slide_us": "window slide", "window.kind": "window kind",
           "watermark_delay_us": "watermark delay"}


def _show(path: str, v: Any) -> str:
    """A definition value as the operator wrote it: durations as "1m", the rest as JSON."""
    if path.endswith("_us") and isinstance(v, int):
        return format_duration(timedelta(microseconds=v))
    return json.dumps(v)


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """What differs between two query definitions, in the config's own terms."""
    out: list[str] = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{path}.")
        elif path == "aggregates" and isinstance(a, list) and isinstance(b, list) and a != b:
            out += _aggregates_diff(a, b)
        elif a != b:
            out.append(f"{_LABELS.get(path, path)}: Gold has {_show(path, a)}, config has {_show(path, b)}")
    return out


def _aggregates_diff(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Aggregates by name: renamed (same definition, new name), removed, added, changed, reordered."""
    def body(a: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in a.items() if k != "name"}

    o, n = {a["name"]: a for a in old}, {a["name"]: a for a in new}
    removed, added = [x for x in o if x not in n], [x for x in n if x not in o]
    out: list[str] = []
    for r in list(removed):
        twin = next((x for x in added if body(n[x]) == body(o[r])), None)
        if twin is not None:
            out.append(f"aggregate {r!r} renamed to {twin!r}")
            removed.remove(r)
            added.remove(twin)
    out += [f"aggregate {x!r} removed" for x in removed]
    out += [f"aggregate {x!r} added ({', '.join(f'{k} {json.dumps(v)}' for k, v in body(n[x]).items())})"
            for x in added]
    for x in o:
        if x in n and o[x] != n[x]:
            out += [f"aggregate {x!r}: {k}: Gold has {json.dumps(o[x].get(k))}, config has {json.dumps(n[x].get(k))}"
                    for k in sorted(set(o[x]) | set(n[x])) if o[x].get(k) != n[x].get(k)]
    if not out:
        out.append(f"aggregate order: Gold has {[a['name'] for a in old]}, config has {[a['name'] for a in new]}")
    return out


class GoldSink:
    """The Gold table of one query."""

    def __init__(self, uri: str, query: QuerySpec, schema: pa.Schema, storage: Storage) -> None:
        self.uri = uri.rstrip("/")
        self.query = query
        self.app_id = query.resolved_app_id
        self.schema = schema
        self.options = storage.delta_options(self.uri)
        self.dt: DeltaTable | None = None
        self.committed: Offsets | None = None
        self.commits = 0
        self._loaded_version = 0

    # -- start ----------------------------------------------------------------------------

    def open(self, create: bool = True) -> Offsets | None:
        """Load (or create) the table, check it belongs to this query; return its offsets."""
        try:
            self.dt = DeltaTable(self.uri, storage_options=self.options)
        except TableNotFoundError:
            if not create:
                return None
            self.dt = self._create()
        self._loaded_version = self.dt.version()
        self._check_table(self.dt)
        self.committed = Offsets.from_table(self.dt, self.app_id)
        if self.committed is None and self.dt.version() > 0 and not self.query.allow_foreign_gold:
            self._refuse_foreign(self.dt)
        if self.committed is not None and self.committed.fingerprint not in (0, self.query.fingerprint()):
            raise SinkError(
                f"Gold table {self.uri} was written by a different definition of query "
                f"{self.query.name!r} (fingerprint {self.committed.fingerprint} vs "
                f"{self.query.fingerprint()}). Use a new Gold path or query name to start fresh."
            )
        return self.committed

    def _create(self) -> DeltaTable:
        desc = _DESCRIPTION_PREFIX + json.dumps(self.query.definition(), sort_keys=True)
        try:
            # No commit retries: with them, delta-rs rebases a losing concurrent create into
            # version 1 (a second CREATE TABLE, possibly of another definition) instead of failing.
            return DeltaTable.create(self.uri, self.schema, mode="error", name=self.query.name,
                                     description=desc, storage_options=self.options,
                                     commit_properties=CommitProperties(max_commit_retries=0))
        except Exception as err:  # noqa: BLE001 - a concurrent creator won: use its table
            if classify(err) is not None:
                raise  # a storage failure, not a lost race: retried or reported by the runner
            try:
                return DeltaTable(self.uri, storage_options=self.options)
            except TableNotFoundError:
                raise SinkError(f"cannot create Gold table {self.uri}: {err}") from None

    def _refuse_foreign(self, dt: DeltaTable) -> None:
        """Commits exist but none under our app id: another stream wrote this table, and
        starting ours from scratch would duplicate or interleave its windows."""
        writers = sorted({str(h.get("goldstream.appId") or f"goldstream-{h['goldstream.query']}")
                          for h in dt.history(20) if h.get("goldstream.appId") or h.get("goldstream.query")})
        who = f"application id {', '.join(writers)}" if writers else "another writer"
        raise SinkError(
            f"Gold table {self.uri} (version {dt.version()}) was written by {who}, not by query "
            f"{self.query.name!r} (application id {self.app_id!r}), which has no offsets in it. Starting "
            "this query there would duplicate or interleave that stream's windows. To continue that "
            "stream, set app_id to its application id; to share the table on purpose, set "
            f"allow_foreign_gold = true on query {self.query.name!r}; otherwise use a new gold_path."
        )

    def _check_table(self, dt: DeltaTable) -> None:
        definition = _definition_of(dt)
        if definition is None:
            raise SinkError(
                f"Gold table {self.uri} was not created by goldstream for query {self.query.name!r} "
                "(its description holds no goldstream query definition). Point the query at a new "
                "Gold path, or remove that table if it is yours to discard."
            )
        diffs = _diff(definition, self.query.definition())
        if diffs:
            raise SinkError(
                f"query {self.query.name!r} changed since Gold table {self.uri} was written:\n  - "
                + "\n  - ".join(diffs)
                + "\nMixing both definitions in one table would be wrong. To start fresh, give the query "
                "a new name or gold_path (or delete the old Gold table); to resume, restore the old definition."
            )
        actual = pa.schema(dt.schema().to_arrow()) if hasattr(dt.schema(), "to_arrow") else None
        if actual is not None:
            want = [(f.name, _norm(f.type)) for f in self.schema]
            have = [(f.name, _norm(f.type)) for f in actual]
            if want != have:
                raise SinkError(
                    f"Gold table {self.uri} does not have the columns query {self.query.name!r} produces: "
                    f"{_schema_diff(have, want)}. (Gold has {_fmt(have)}; the query produces {_fmt(want)}, "
                    "types following Silver's.) Use a new gold_path, or restore the matching definition / "
                    "Silver types."
                )

    # -- commit ---------------------------------------------------------------------------

    def commit(self, rows: pl.DataFrame, offsets: Offsets, info: dict[str, str]) -> None:
        """Append `rows` with `offsets` in one commit, or raise OwnershipLost."""
        assert self.dt is not None, "open() first"
        data = rows.to_arrow(compat_level=pl.CompatLevel.oldest())
        if data.schema != self.schema:  # the engine emits the Gold types; casting would import pyarrow.compute (~0.2 s)
            data = data.cast(self.schema)
        failed = False
        tag = uuid.uuid4().hex  # names this commit in its commitInfo
        for attempt in range(20):
            self._refresh()
            current = Offsets.from_table(self.dt, self.app_id)
            if failed and current == offsets and committed_with_tag(self.dt, tag):
                # the "failed" attempt did land (e.g. a lost S3 response, retried into 412):
                # these are our rows and offsets, committed once
                log.info("Gold commit to %s reported a failure but is in the log; continuing", self.uri)
                break
            if current != self.committed:
                raise OwnershipLost(
                    f"another instance owns query {self.query.name!r}: Gold table {self.uri} records "
                    f"{_position(current)}, but this instance last recorded {_position(self.committed)}. "
                    "Stopping without writing (no duplicate rows). Run one instance per query; restarting "
                    "this one resumes from what Gold records."
                )
            props = CommitProperties(
                custom_metadata={**info, "goldstream.appId": self.app_id, TAG: tag},
                max_commit_retries=0,
                app_transactions=offsets.to_txns(self.app_id, int(time.time() * 1000)),
            )
            try:
                write_deltalake(self.dt, data, mode="append", commit_properties=props)
            except CommitFailedError as err:
                log.info("Gold commit to %s conflicted (%s); re-checking ownership", self.uri, err)
                failed = True
                time.sleep(min(0.05 * (attempt + 1), 0.5))
                continue
            break
        else:
            raise OwnershipLost(f"Gold table {self.uri} keeps changing under query {self.query.name!r}; stopping")
        self.committed = offsets
        self.commits += 1

    def _refresh(self) -> None:
        """Bring the snapshot to the latest version. An incrementally updated snapshot keeps
        every commit since it was loaded (a commit got ~6x slower after 1,000 of them), so
        every RELOAD_EVERY versions it is loaded afresh, from the latest checkpoint."""
        assert self.dt is not None
        if self.dt.version() - self._loaded_version >= RELOAD_EVERY:
            self.dt = DeltaTable(self.uri, storage_options=self.options)
            self._loaded_version = self.dt.version()
        else:
            self.dt.update_incremental()


def committed_with_tag(dt: DeltaTable, tag: str) -> bool:
    """Whether one of the latest commits is the one we tagged (another instance committing
    the very same offsets is not us: it owns the query)."""
    return any(h.get(TAG) == tag for h in dt.history(10))


def _position(offsets: Offsets | None) -> str:
    return "no offsets yet" if offsets is None else f"Silver processed through version {offsets.version}"


def _norm(t: Any) -> str:
    s = str(t)
    return {"large_string": "string", "string_view": "string"}.get(s, s)


def _schema_diff(have: list[tuple[str, str]], want: list[tuple[str, str]]) -> str:
    """Only what differs, column by column: the part of the message an operator acts on."""
    h, w = dict(have), dict(want)
    out = [f"column {n}: Gold has {h[n]}, query produces {t}" for n, t in want if n in h and h[n] != t]
    out += [f"column {n} ({t}) is missing in Gold" for n, t in want if n not in h]
    out += [f"column {n} ({t}) is in Gold but not produced by the query" for n, t in have if n not in w]
    if not out:
        out.append("same columns in a different order")
    return "; ".join(out)


def _fmt(cols: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{n} {t}" for n, t in cols) + "]"
