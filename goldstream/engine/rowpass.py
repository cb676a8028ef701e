"""The one pass over a batch's rows, shared by the queries that group rows alike.

A pane-windowed query's partials come out at the grain of its state, (keys, pane), so they
merge with only the panes they touch and the batch is grouped once. What makes that
possible is a first pass over the batch's event-time column alone (with the commit of
each row, and the filter and skew columns when a query has them), grouped by (commit,
pane): it gives each commit's largest event time, hence each commit's watermark before it
(engine/clock.py), before any aggregate is computed. A row's first open window (`__kmin`)
depends on its pane and on that watermark, so the first pass knows it for every (commit,
pane) of the batch. It only grows with the commit, and in most panes it is the same for
every commit that brought rows to the pane: those rows are grouped across commits. Where
the watermark passed a pane during the batch, the rows of the commits from then on keep
their commit in the group key (rows arriving that late are few); their groups are sorted
out per query afterwards.

Session queries (engine/sessions.py) decide closing per commit: their partials keep the
commit grain (keys, event time, commit).

SQL queries (sql/rows.py): the row pass adds their joins and derived columns before
grouping. Their WHERE and inner joins come after the watermark (Spark's withWatermark
precedes them), so their first pass counts the rows failing them too, noting per (commit,
pane) whether a row passed (a pane's restart point counts only those); a TOML `filter`
keeps its failing rows out of the first pass. A query with ANSI guards keeps the commit
grain, so that an error names the Silver version that raised it.

A batch read in chunks (`max_rows_per_chunk`) is grouped chunk by chunk and the chunks'
partials are merged; a batch that crosses a query's rebuild point (a restart: versions
Gold already holds, then live ones) keeps the commit in every group, so that `versions`
can split it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import polars as pl

from goldstream.columns import VERSION
from goldstream.engine.clock import COMMIT_MAX

if TYPE_CHECKING:
    from goldstream.engine.state import WindowedAggregation

PANE, KMIN, ROWS, TSMAX, FUTURE, PASSED = "__pane", "__kmin", "__rows", "__tsmax", "__future", "__passed"
BUCKET = "__bucket"  # a row's commit (version or data-file index) where its group keeps it; else null


class Scan(Protocol):
    """A chunk of a batch's rows (source.reader.BatchScan): `unit` tells a row's commit,
    `files` maps it to the version when it is not the version itself."""

    rows: pl.LazyFrame
    unit: str
    files: pl.DataFrame | None


@dataclass
class RowScan:
    """Rows already tagged with their version (tests, `WindowedAggregation.process`)."""

    rows: pl.LazyFrame
    unit: str = VERSION
    files: pl.DataFrame | None = None


@dataclass
class Partials:
    """One query's partial aggregates of a batch (or of the part of it a caller selects).

    `frame` has one row per group: keys, `__pane`, the aggregates' state fields, `__rows`,
    the flags `__future`/`__passed` when the query has a skew bound/filter, and `__version`:
    the commit of the group's rows, or null for rows of any commit of the batch (panes
    whose first window is the same for all of them). `panes` (the first pass: `__version`, `__pane`, `__max`, counted
    over rows that passed the filter and the skew bound) gives each commit's largest event
    time and which commits fed which panes. Session partials (`panes` None) are at commit
    grain, with `__tsmax` per group."""

    frame: pl.DataFrame
    first: int  # versions first … last of the batch
    last: int
    panes: pl.DataFrame | None = None

    def versions(self, first: int, last: int | None = None) -> Partials:
        """The part of commits first … last (None: to the end)."""
        hi = self.last if last is None else min(last, self.last)
        lo = max(first, self.first)
        if lo <= self.first and hi >= self.last:
            return self
        in_range = pl.col(VERSION).is_between(lo, hi)
        if lo > hi:
            return Partials(self.frame.clear(), lo, lo - 1, None if self.panes is None else self.panes.clear())
        if self.frame[VERSION].null_count():
            raise AssertionError(f"partials of versions {self.first}-{self.last} were grouped across commits and "
                                 f"cannot be split at {lo}-{hi}: the row pass was not told of that split")
        panes = None if self.panes is None else self.panes.filter(in_range)
        return Partials(self.frame.filter(in_range), lo, hi, panes)

    def commit_maxima(self, timed: pl.DataFrame) -> pl.DataFrame:
        """`__version`, `__max`: each commit's largest event time over the rows that move
        the clock (`timed`: this frame's groups of such rows, for commit-grain partials)."""
        if self.panes is not None:
            return commit_maxima(self.panes)
        return timed.group_by(VERSION).agg(pl.col(TSMAX).max().alias(COMMIT_MAX)).sort(VERSION)


def commit_maxima(panes: pl.DataFrame) -> pl.DataFrame:
    """The first pass's (commit, pane) maxima → each commit's, in commit order."""
    return panes.group_by(VERSION).agg(pl.col(COMMIT_MAX).max()).sort(VERSION)


@dataclass
class _Group:
    """Engines sharing one row grouping, hence one group-by over the rows."""

    members: list[int]
    leader: WindowedAggregation
    # pane -> first version whose rows keep their commit in the group key (mixed panes)
    mixed: dict[int, int] = field(default_factory=dict)
    by_commit: bool = False
    chunks: list[pl.DataFrame] = field(default_factory=list)  # one group-by result per chunk
    panes: pl.DataFrame | None = None


def batch_partials(engines: Sequence[WindowedAggregation], scans: Sequence[Scan], first: int, last: int,
                   splits: Sequence[int] = (), alive: Callable[[], None] = lambda: None) -> list[Partials]:
    """Each engine's partials of a batch (versions first … last, read as `scans`, chunk
    after chunk): the first pass over the event times, then one streamed group-by per
    chunk and row grouping. `splits` are versions inside the batch where a caller will cut
    it (`Partials.versions`)."""
    groups: dict[tuple[object, ...], _Group] = {}
    for i, engine in enumerate(engines):
        group = groups.setdefault(engine.row_grouping(), _Group([], engine))
        group.members.append(i)
    cut = any(first < s <= last for s in splits)
    windowed = [g for g in groups.values() if g.leader.pane_grain]
    for g in groups.values():
        g.by_commit = cut or not g.leader.pane_grain or g.leader.guards_by_commit()
    if windowed:
        _first_pass(windowed, engines, scans)
    for scan in scans:
        plans = []
        for g in groups.values():
            partials = [e.name.prefix(f"__q{i}.") for i in g.members for e in engines[i].aggs.update()]
            plans.append(g.leader.row_pass_plan(scan.rows, partials, _bucket(scan, g)))
        for g, frame in zip(groups.values(), pl.collect_all(plans, engine="streaming")):
            g.chunks.append(_resolve(frame, scan))
        alive()
    out: list[Partials] = [None] * len(engines)  # type: ignore[list-item]
    for g in groups.values():
        for i in g.members:
            own = [_own(chunk, i) for chunk in g.chunks]
            frame = own[0] if len(own) == 1 else engines[i].merge_chunks(own)
            out[i] = Partials(frame, first, last, g.panes)
    return out


def _own(frame: pl.DataFrame, i: int) -> pl.DataFrame:
    """Query i's columns of a shared group-by result."""
    prefix = f"__q{i}."
    common = [c for c in frame.columns if not c.startswith("__q")]
    return frame.select(*common, *(pl.col(c).alias(c[len(prefix):]) for c in frame.columns if c.startswith(prefix)))


def _first_pass(groups: list[_Group], engines: Sequence[WindowedAggregation], scans: Sequence[Scan]) -> None:
    """Per row grouping: each (commit, pane)'s largest event time, and the panes whose
    rows have a first window that depends on their commit, for some member (members may
    differ in window size and delay)."""
    plans = [g.leader.first_pass_plan(scan.rows, scan.unit) for g in groups for scan in scans]
    frames = iter(pl.collect_all(plans, engine="streaming"))
    for g in groups:
        parts = [_resolve(next(frames), scan, bucket=scan.unit) for scan in scans]
        # several data files (and chunks) of one commit
        both = pl.concat(parts, how="vertical_relaxed")
        passed = [pl.col(PASSED).any()] if PASSED in both.columns else []  # SQL WHERE: see first_pass_plan
        panes = both.group_by(VERSION, PANE).agg(pl.col(COMMIT_MAX).max(), *passed)
        g.panes = panes.sort(VERSION, PANE)
        for i in g.members:
            kmins = engines[i].first_windows(g.panes, engines[i].clock.preview(commit_maxima(g.panes)))
            # a pane's first window only grows with the version (watermarks only grow): the
            # rows of the versions before the first change share the first version's
            changes = (kmins.sort(VERSION).with_columns(pl.col(KMIN).first().over(PANE).alias("__first"))
                       .filter(pl.col(KMIN) != pl.col("__first")).group_by(PANE).agg(pl.col(VERSION).min()))
            for pane, version in changes.iter_rows():
                g.mixed[pane] = min(version, g.mixed.get(pane, version))


def _bucket(scan: Scan, g: _Group) -> pl.Expr | None:
    """The commit column in the group key: for every row (commit grain), for rows of the
    mixed panes, or for none (None)."""
    if g.by_commit:
        return pl.col(scan.unit)
    if not g.mixed:
        return None
    # Rows are told apart by their position in commit order: the version itself, or their
    # data file's index in the scan's file list (an Enum's physical value, far cheaper per
    # row than looking the path up).
    if scan.files is None:
        position, starts = pl.col(scan.unit), list(g.mixed.values())
    else:
        versions = scan.files[VERSION]
        position = pl.col(scan.unit).cast(pl.Enum(scan.files[scan.unit].to_list())).to_physical().cast(pl.Int64)
        starts = [int((versions < v).sum()) for v in g.mixed.values()]
    start = g.leader.pane_expr().replace_strict(list(g.mixed), starts, default=None, return_dtype=pl.Int64)
    return pl.when(position >= start).then(position)


def _resolve(frame: pl.DataFrame, scan: Scan, bucket: str = BUCKET) -> pl.DataFrame:
    """The commit column of a group-by result as `__version` (null stays null)."""
    if bucket not in frame.columns:
        return frame.with_columns(pl.lit(None, pl.Int64).alias(VERSION))
    if scan.files is None:
        return frame.rename({bucket: VERSION}).with_columns(pl.col(VERSION).cast(pl.Int64))
    if frame.schema[bucket].is_integer():  # a data file's index in the scan's file list
        versions = scan.files[VERSION].gather(frame[bucket])
        return frame.with_columns(versions.alias(bucket)).rename({bucket: VERSION})
    known = scan.files
    versions = frame[bucket].replace_strict(known[scan.unit], known[VERSION], default=None, return_dtype=pl.Int64)
    if versions.null_count() != frame[bucket].null_count():
        unknown = frame.filter(versions.is_null() & frame[bucket].is_not_null())[bucket][0]
        raise AssertionError(f"Polars reported rows from {unknown!r}, which is not one of the batch's data files")
    return frame.with_columns(versions.alias(bucket)).rename({bucket: VERSION})  # same column order as above
