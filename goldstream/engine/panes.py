"""A query's open state, partitioned by pane: one frame per pane, one row per (keys,
first window) in it.

Taking in a batch touches only the panes its rows fall in (merged with the new rows in
one group-by); closing windows reads only the panes those windows cover; evicting a
pane drops its frame. So the cost of a batch follows the rows and panes it touches,
never the whole state (a million aircraft × a dozen open minutes), and nothing is ever
re-sorted or re-grouped because another pane changed.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

PANE, MINVER = "__pane", "__minver"  # MINVER: the oldest version in a session (engine/sessions.py)

Merge = Callable[[pl.DataFrame], pl.DataFrame]


class PaneStore:
    """Frames by pane index, one row per (keys, first window) in each; and per pane the
    oldest Silver version with a row in it (where a restart starts re-reading)."""

    def __init__(self) -> None:
        self._frames: dict[int, pl.DataFrame] = {}
        self._min_version: dict[int, int] = {}

    def add(self, rows: pl.DataFrame, versions: dict[int, int], merge: Merge) -> None:
        """Fold new state rows (any panes, one row per (keys, pane, first window)) into
        state: a pane not held yet takes them as they are; a held pane's rows and the new
        ones are merged by `merge` (at most two rows per group, so float sums do not depend
        on row order). `versions`: the oldest Silver version of the new rows, per pane."""
        if rows.height == 0:
            return
        by_pane = {p: f for (p,), f in rows.partition_by(PANE, as_dict=True).items()}  # type: ignore[misc]
        held = [p for p in by_pane if p in self._frames]
        if held:
            merged = merge(pl.concat([*(self._frames[p] for p in held), *(by_pane[p] for p in held)],
                                     how="vertical_relaxed"))
            for (pane,), frame in merged.partition_by(PANE, as_dict=True).items():
                self._frames[pane] = frame  # type: ignore[index]
        for pane, frame in by_pane.items():
            if pane not in self._frames:
                self._frames[pane] = frame  # type: ignore[index]
        for pane in by_pane:
            oldest = versions[pane]  # type: ignore[index]
            self._min_version[pane] = min(self._min_version.get(pane, oldest), oldest)  # type: ignore[index]

    def select(self, first: int, last: int) -> pl.DataFrame | None:
        """Rows of panes first … last (None: none held)."""
        frames = [f for p, f in self._frames.items() if first <= p <= last]
        return pl.concat(frames, how="vertical_relaxed") if frames else None

    def heights(self, first: int, last: int) -> dict[int, int]:
        """Rows held per pane, for panes first … last."""
        return {p: f.height for p, f in self._frames.items() if first <= p <= last}

    def all(self) -> pl.DataFrame | None:
        return pl.concat(list(self._frames.values()), how="vertical_relaxed") if self._frames else None

    def evict(self, needed: Callable[[int], bool]) -> None:
        for pane in [p for p in self._frames if not needed(p)]:
            del self._frames[pane], self._min_version[pane]

    @property
    def last_pane(self) -> int | None:
        return max(self._frames, default=None)

    @property
    def rows(self) -> int:
        return sum(f.height for f in self._frames.values())

    @property
    def bytes(self) -> int:
        """Estimated memory of the frames (Polars' estimate of their buffers)."""
        return sum(int(f.estimated_size()) for f in self._frames.values())

    def min_version(self) -> int | None:
        return min(self._min_version.values(), default=None)
