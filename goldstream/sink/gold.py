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
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from goldstream.config import QuerySpec
from goldstream.errors import OwnershipLost, SinkError
from goldstream.sink.offsets import Offsets
from goldstream.storage import Storage

log = logging.getLogger(__name__)
_DESCRIPTION_PREFIX = "goldstream query "


def _definition_of(dt: DeltaTable) -> dict[str, Any] | None:
    desc = dt.metadata().description or ""
    if not desc.startswith(_DESCRIPTION_PREFIX):
        return None
    try:
        return json.loads(desc[len(_DESCRIPTION_PREFIX):])
    except ValueError:
        return None


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: Gold has {json.dumps(a)}, config has {json.dumps(b)}")
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

    # -- start ----------------------------------------------------------------------------

    def open(self) -> Offsets | None:
        """Load (or create) the table, check it belongs to this query; return its offsets."""
        try:
            self.dt = DeltaTable(self.uri, storage_options=self.options)
        except TableNotFoundError:
            self.dt = self._create()
        self._check_table(self.dt)
        self.committed = Offsets.from_table(self.dt, self.app_id)
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
            return DeltaTable.create(self.uri, self.schema, mode="error", name=self.query.name,
                                     description=desc, storage_options=self.options)
        except Exception as err:  # noqa: BLE001 - a concurrent creator won: use its table
            try:
                return DeltaTable(self.uri, storage_options=self.options)
            except TableNotFoundError:
                raise SinkError(f"cannot create Gold table {self.uri}: {err}") from None

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
                    f"Gold table {self.uri} has columns {_fmt(have)} but query {self.query.name!r} "
                    f"produces {_fmt(want)}. Use a new Gold path or restore the matching definition."
                )

    # -- commit ---------------------------------------------------------------------------

    def commit(self, rows: pl.DataFrame, offsets: Offsets, info: dict[str, str]) -> None:
        """Append `rows` with `offsets` in one commit, or raise OwnershipLost."""
        assert self.dt is not None, "open() first"
        data = rows.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(self.schema)
        for attempt in range(20):
            self.dt.update_incremental()
            current = Offsets.from_table(self.dt, self.app_id)
            if current != self.committed:
                raise OwnershipLost(
                    f"another instance owns query {self.query.name!r}: Gold table {self.uri} has "
                    f"offsets {current} but this instance last wrote {self.committed}. Stopping "
                    "without writing (no duplicate rows). Run one instance per query."
                )
            props = CommitProperties(
                custom_metadata=info,
                max_commit_retries=0,
                app_transactions=offsets.to_txns(self.app_id, int(time.time() * 1000)),
            )
            try:
                write_deltalake(self.dt, data, mode="append", commit_properties=props)
            except CommitFailedError as err:
                log.info("Gold commit to %s conflicted (%s); re-checking ownership", self.uri, err)
                time.sleep(min(0.05 * (attempt + 1), 0.5))
                continue
            self.committed = offsets
            self.commits += 1
            return
        raise OwnershipLost(f"Gold table {self.uri} keeps changing under query {self.query.name!r}; stopping")


def _norm(t: Any) -> str:
    s = str(t)
    return {"large_string": "string", "string_view": "string"}.get(s, s)


def _fmt(cols: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{n} {t}" for n, t in cols) + "]"
