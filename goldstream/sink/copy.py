"""Copy a query's Gold table into a new one whose columns have Silver's widened types.

After Delta type widening of a Silver column whose type Gold has (a key, a min/max input),
Gold's column would have to change type, which delta-rs cannot do in place (it can
neither alter a column's type nor write a table with the typeWidening feature), and an
overwrite in place would be a non-append commit that stops every stream reading Gold.
So the remedy is a new table: its first data commit holds every row of the old one, cast
to the wider types, together with the old table's offsets, atomically. A query pointed
at it (gold_path) resumes exactly where the old table ends: nothing lost, nothing twice.
The old table is left untouched, to compare with or to go back to.
"""

from __future__ import annotations

import logging

import polars as pl
from deltalake import DeltaTable

from goldstream.config import QuerySpec, Settings
from goldstream.errors import ConfigError, SinkError
from goldstream.identity import check_apart
from goldstream.sink.gold import GoldSink
from goldstream.sink.location import refuse_foreign_folder
from goldstream.sink.schema import gold_schema, table_schema
from goldstream.source.reader import SilverSource
from goldstream.source.schema import widens
from goldstream.storage import Storage

log = logging.getLogger(__name__)


def copy_gold(settings: Settings, query_name: str, to_uri: str, storage: Storage) -> int:
    """Copy `query_name`'s Gold into `to_uri` with the types Silver has now; the rows copied."""
    query = _query(settings, query_name)
    from_uri = settings.gold_path(query).rstrip("/")
    _check_target(settings, to_uri, storage)
    source = SilverSource(settings.source, [query], storage)
    source.open()
    assert source.current_plan is not None
    want = gold_schema(query, source.current_plan.polars_schema())
    old = GoldSink(from_uri, query, _schema_of(from_uri, storage), storage)
    offsets = old.open(create=False)
    if offsets is None or old.dt is None:
        raise SinkError(f"Gold table {from_uri} of query {query.name!r} holds no offsets: nothing to copy")
    _check_only_widens(old.schema, want, from_uri)
    new = GoldSink(to_uri, query, want, storage)
    have = new.open(create=True)
    if have == offsets:
        log.info("Gold table %s already holds the copy of %s", to_uri, from_uri)
        return 0
    assert new.dt is not None
    if have is not None or new.dt.version() > 0:
        raise SinkError(f"Gold table {to_uri} already holds commits: give the path of a new table")
    rows = pl.from_arrow(old.dt.to_pyarrow_table())
    assert isinstance(rows, pl.DataFrame)
    new.commit(rows, offsets, {"goldstream.query": query.name, "goldstream.copiedFrom": from_uri,
                               "goldstream.windows": str(rows.height)})
    log.info("copied %d rows and the offsets (Silver through version %d) of %s into %s", rows.height,
             offsets.version, from_uri, to_uri)
    return rows.height


def _check_target(settings: Settings, to_uri: str, storage: Storage) -> None:
    """ConfigError unless `to_uri` is a place of its own: apart from (not the same as, inside
    or around) Silver and every Gold and late table of the configuration, the query's
    current Gold included, and not a folder holding other files."""
    try:
        check_apart([*settings.owned_tables(), ("the copy's table (--to)", to_uri)])
    except ValueError as err:
        raise ConfigError(f"copy-gold --to {to_uri}: {err}") from None
    refuse_foreign_folder(to_uri, storage, "copy-gold --to")


def _query(settings: Settings, name: str) -> QuerySpec:
    for q in settings.queries:
        if q.name == name:
            return q
    raise ConfigError(f"no query named {name!r} in the configuration (it has: "
                      f"{', '.join(q.name for q in settings.queries)})")


def _schema_of(uri: str, storage: Storage) -> pl.Schema:
    from deltalake.exceptions import TableNotFoundError

    try:
        return table_schema(DeltaTable(uri, storage_options=storage.delta_options(uri)).schema())
    except TableNotFoundError:
        raise SinkError(f"there is no Gold table at {uri} to copy") from None


def _check_only_widens(have: pl.Schema, want: pl.Schema, uri: str) -> None:
    """The copy may only widen columns: any other difference is another problem."""
    old, new = dict(have), dict(want)
    if list(old) != list(new):
        raise SinkError(f"Gold table {uri} has other columns than the query produces: copy-gold only widens types")
    narrower = [n for n in old if old[n] != new[n] and not widens(old[n], new[n])]
    if narrower:
        raise SinkError(f"Gold table {uri}: column {narrower[0]} is {old[narrower[0]]} and the query produces "
                        f"{new[narrower[0]]}, which is not a type widening: copy-gold only widens types")
    if old == new:
        raise SinkError(f"Gold table {uri} already has the types Silver has now: nothing to widen")
