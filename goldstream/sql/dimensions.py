"""Static Delta tables joined to the stream (`[tables]`), as Spark's stream-static join
reads them: each batch joins the table's latest version.

A table is read once per Delta version and kept (a batch that finds the same version
reuses the frame). A table that disappears, changes its schema (a join's columns would
change meaning mid-stream) or grows past `max_rows` stops the query with a clear message.
The versions used by the last batch are `versions()` (for the explain and for Gold's offsets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
from deltalake import DeltaTable

from goldstream.errors import SourceError
from goldstream.source.schema import polars_type

DEFAULT_MAX_ROWS = 10_000_000


@dataclass
class Dimensions:
    tables: dict[str, str]  # name -> URI
    storage: Any = None
    max_rows: int = DEFAULT_MAX_ROWS
    _cache: dict[str, tuple[int, pl.DataFrame]] = field(default_factory=dict)
    _schemas: dict[str, dict[str, pl.DataType]] = field(default_factory=dict)
    _pinned: dict[str, int] = field(default_factory=dict)

    def _open(self, name: str, version: int | None = None) -> DeltaTable:
        uri = self.tables[name]
        options = self.storage.delta_options(uri) if self.storage is not None else None
        try:
            return DeltaTable(uri, version=version, storage_options=options)
        except Exception as err:  # noqa: BLE001 - deltalake raises several kinds for "not there"
            at = "" if version is None else f" at version {version}"
            raise SourceError(f"dimension table {name!r} ({uri}){at} cannot be read: {err}. The query joins it; "
                              "restore the table or change [tables]. Nothing of this batch was written.") from None

    def schema(self, name: str) -> dict[str, pl.DataType]:
        """The table's columns as read (its schema when first seen by this process)."""
        if name not in self._schemas:
            self._schemas[name] = _schema(self._open(name))
        return self._schemas[name]

    def types(self, tables: tuple[str, ...]) -> dict[str, pl.DataType]:
        """The engine-input view of `tables`' columns (`__dim.<table>.<column>`)."""
        return {f"__dim.{t}.{c}": dtype for t in tables for c, dtype in self.schema(t).items()}

    def pin(self, versions: dict[str, int]) -> None:
        """Read these versions (a rebuild after a restart) until `unpin`."""
        self._pinned = dict(versions)

    def unpin(self) -> None:
        self._pinned = {}

    def frame(self, name: str) -> pl.DataFrame:
        """The table's rows at its latest version (or the pinned one), read once per version."""
        version = self._pinned.get(name)
        dt = self._open(name, version)
        current = dt.version()
        cached = self._cache.get(name)
        if cached is not None and cached[0] == current:
            return cached[1]
        schema = _schema(dt)
        if schema != self.schema(name):
            raise SourceError(
                f"dimension table {name!r} changed its schema at version {current}: it was "
                f"{_show(self.schema(name))}, it is {_show(schema)}. A join's columns cannot change meaning "
                "mid-stream; start the query as a new query (new name or gold_path) to use the new schema.")
        adds = pl.DataFrame(pl.from_arrow(dt.get_add_actions(flatten=True)))
        rows = int(adds["num_records"].fill_null(0).sum()) if "num_records" in adds.columns else 0  # type: ignore[index]
        if rows > self.max_rows:
            raise SourceError(f"dimension table {name!r} has {rows} rows at version {current}, more than the "
                              f"{self.max_rows} a stream-static join holds in memory ([source] max_dimension_rows); "
                              "raise it or join a smaller table. Nothing of this batch was written.")
        frame = pl.DataFrame(pl.from_arrow(dt.to_pyarrow_table()))
        if frame.height > self.max_rows:
            raise SourceError(f"dimension table {name!r} has {frame.height} rows at version {current}, more than "
                              f"the {self.max_rows} a stream-static join holds in memory ([source] "
                              "max_dimension_rows); raise it or join a smaller table. Nothing of this batch was "
                              "written.")
        self._cache[name] = (current, frame)
        return frame

    def versions(self) -> dict[str, int]:
        """The version of each table the latest batch joined."""
        return {name: v for name, (v, _) in self._cache.items()}


def _schema(dt: DeltaTable) -> dict[str, pl.DataType]:
    out = {}
    for f in dt.schema().fields:
        t = f.type
        name = getattr(t, "type", None) or str(t)
        try:
            out[f.name] = polars_type(name)
        except ValueError:
            continue
    return out


def _show(schema: dict[str, pl.DataType]) -> str:
    return ", ".join(f"{c} {t}" for c, t in schema.items())
