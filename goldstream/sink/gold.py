"""Append closed windows to a query's Gold Delta table, exactly once.

Each commit carries the rows and the `txn` offsets together (one atomic Delta commit),
fenced by the offsets this instance last saw (see `Committer`): offsets written by
anyone else mean another instance owns the query, and this one stops without writing.
A table is accepted only if it was created for this very query definition and holds
its columns, and a table holding this query's commits but no offsets is never started
again from scratch (that would write its windows twice).
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl
from deltalake import DeltaTable

from goldstream.config import QuerySpec
from goldstream.errors import OwnershipLost, SinkError
from goldstream.sink.committer import APP_ID, Committer, FenceMoved
from goldstream.sink.definition import changes, definition, description, fingerprint, recorded_definition
from goldstream.sink.offsets import Offsets
from goldstream.sink.schema import arrow_schema, delta_columns
from goldstream.storage import Storage


class GoldSink:
    """The Gold table of one query."""

    def __init__(self, uri: str, query: QuerySpec, schema: pl.Schema | None, storage: Storage) -> None:
        self.uri = uri.rstrip("/")
        self.query = query
        self.app_id = query.resolved_app_id
        self.schema = schema  # the Polars types of the rows committed (None: set before open())
        self.dimensions = tuple(query.sql_query.tables) if query.sql_query is not None else ()
        self.committer = Committer(
            self.uri, storage, f"Gold table {self.uri}", f"query {query.name!r}", self.app_id,
            Offsets.txn_ids(self.app_id, self.dimensions),
            foreign_appends="accepted (allow_foreign_gold = true)" if query.allow_foreign_gold else None,
            remedy="If that was a mistake, restore the table to the version before it (Delta RESTORE) and restart; "
                   "to start afresh, use a new gold_path (or query name). Appends by another writer sharing the "
                   f"table on purpose are accepted with allow_foreign_gold = true on query {query.name!r}.")
        self.committed: Offsets | None = None
        self.started = False  # open(start=...) created the table with the start's offsets
        self._fence: dict[str, int | None] = {}  # the offset txns as last seen or written

    @property
    def dt(self) -> DeltaTable | None:
        return self.committer.dt

    @property
    def fence(self) -> dict[str, int | None]:
        """The offset `txn`s as this instance last saw or wrote them: its maintenance is
        fenced by them too."""
        return dict(self._fence)

    # -- start ----------------------------------------------------------------------------

    def load(self) -> DeltaTable | None:
        """Load the table (None: it does not exist yet); `open(loaded=True)` goes on from it."""
        return self.committer.load()

    def open(self, create: bool = True, repair: bool = True, loaded: bool = False,
             start: tuple[Offsets, dict[str, str]] | None = None) -> Offsets | None:
        """Load (or create) the table, check it belongs to this query; return its offsets.
        `repair` (False: read-only, for status) lets a retention that could expire the
        offsets be raised. `loaded`: go on from the snapshot `load()` took (a process opens
        each table once), or, when there was no table then, create it without looking again
        (a concurrent creator makes the create fail, and its table is loaded). `start`: the
        offsets (and commit info) of a new query's start, written by the create itself
        (`started` tells whether it was: then no commit of its own records the start)."""
        assert self.schema is not None, "set the schema first"
        dt = self.committer.dt if loaded else self.committer.load()
        expiring = None
        if dt is None:
            if not create:
                return None
            txns = None if start is None else start[0].to_txns(self.app_id, int(time.time() * 1000))
            dt = self.committer.create(arrow_schema(self.schema), name=self.query.name,
                                       description=description(self.query), txns=txns,
                                       metadata=None if start is None else start[1])
            self.started = start is not None and self.committer.created
        else:
            self._check_table(dt)
            expiring = self.committer.keep_offsets(repair)
            dt = self.committer.dt
            assert dt is not None
        self.committed = Offsets.from_table(dt, self.app_id, self.dimensions)
        self._fence = self.committer.txns(Offsets.txn_ids(self.app_id, self.dimensions))
        if self.committed is None and dt.version() > 0:
            self._refuse_lost_offsets(dt, expiring)
            if not self.query.allow_foreign_gold:
                self._refuse_foreign(dt)
        if self.committed is not None and self.committed.fingerprint not in (0, fingerprint(self.query)):
            raise SinkError(
                f"Gold table {self.uri} was written by a different definition of query "
                f"{self.query.name!r} (fingerprint {self.committed.fingerprint} vs "
                f"{fingerprint(self.query)}). Use a new Gold path or query name to start fresh."
            )
        self.committer.start_audit(resume=self.committed is not None)
        return self.committed

    def _refuse_lost_offsets(self, dt: DeltaTable, expiring: str | None) -> None:
        """This query's own commits are in the table but its offsets are not: starting from
        scratch would write its windows twice, whatever allow_foreign_gold says."""
        own = [h for h in dt.history() if _writer(h) == self.app_id]
        if not own:
            return
        why = (f"the table set delta.setTransactionRetentionDuration = {expiring!r}, which expired them "
               "(now raised so that offsets never expire again)" if expiring else
               "they expired or the log was rewritten")
        raise SinkError(
            f"Gold table {self.uri} (version {dt.version()}) holds {len(own)} commit(s) of query {self.query.name!r} "
            f"(application id {self.app_id!r}, the latest at version {own[0].get('version')}) but no offsets for it: "
            f"{why}. Starting it again from the beginning of Silver would write its windows twice, so goldstream "
            "will not, even with allow_foreign_gold. To go on, restore the table to a version that still has the "
            "offsets (Delta RESTORE) and restart; to start afresh, use a new gold_path (or delete this table)."
        )

    def _refuse_foreign(self, dt: DeltaTable) -> None:
        """Commits exist but none under our app id: another stream wrote this table, and
        starting ours from scratch would duplicate or interleave its windows."""
        writers = sorted({w for h in dt.history(20) if (w := _writer(h)) is not None})
        who = f"application id {', '.join(writers)}" if writers else "another writer"
        raise SinkError(
            f"Gold table {self.uri} (version {dt.version()}) was written by {who}, not by query "
            f"{self.query.name!r} (application id {self.app_id!r}), which has no offsets in it. Starting "
            "this query there would duplicate or interleave that stream's windows. To continue that "
            "stream, set app_id to its application id; to share the table on purpose, set "
            f"allow_foreign_gold = true on query {self.query.name!r}; otherwise use a new gold_path."
        )

    def _check_table(self, dt: DeltaTable) -> None:
        recorded = recorded_definition(dt)
        if recorded is None:
            raise SinkError(
                f"Gold table {self.uri} was not created by goldstream for query {self.query.name!r} "
                "(its description holds no goldstream query definition). Point the query at a new "
                "Gold path, or remove that table if it is yours to discard."
            )
        diffs = changes(recorded, definition(self.query))
        if diffs:
            raise SinkError(
                f"query {self.query.name!r} changed since Gold table {self.uri} was written:\n  - "
                + "\n  - ".join(diffs)
                + "\nMixing both definitions in one table would be wrong. To start fresh, give the query "
                "a new name or gold_path (or delete the old Gold table); to resume, restore the old definition."
            )
        want, have = delta_columns(self.schema), delta_columns(dt.schema())
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
        data = rows if rows.schema == self.schema else rows.cast(dict(self.schema))  # type: ignore[arg-type]
        txns = offsets.to_txns(self.app_id, int(time.time() * 1000))
        try:
            self.committer.commit(data, txns, info, self._fence)
        except FenceMoved as moved:
            raise OwnershipLost(
                f"another instance owns query {self.query.name!r}: Gold table {self.uri} records "
                f"{_position(moved.found[self.app_id])} (version {moved.by.version}, not written by this instance), "
                "but this instance last recorded "
                f"{_position(self._fence[self.app_id])}. Stopping without writing (no duplicate rows). "
                "Run one instance per query; restarting this one resumes from what Gold records."
            ) from None
        self.committed = offsets
        self._fence = {t.app_id: t.version for t in txns}


def _writer(commit_info: dict[str, Any]) -> str | None:
    """The application id a goldstream commit was written under (older commits name only
    their query, whose default application id they used)."""
    if commit_info.get(APP_ID):
        return str(commit_info[APP_ID])
    query = commit_info.get("goldstream.query")
    return None if query is None else f"goldstream-{query}"


def _position(version: int | None) -> str:
    return "no offsets yet" if version is None else f"Silver processed through version {version}"


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
