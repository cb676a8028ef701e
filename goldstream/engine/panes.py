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

PANE, MINVER = "__pane", "__minver"

Merge = Callable[[pl.DataFrame], pl.DataFrame]


class PaneStore:
    """Frames by pane index; each frame holds its pane's column `PANE` and `MINVER` (the
    oldest Silver version in a row)."""

    def __init__(self) -> None:
        self._frames: dict[int, pl.DataFrame] = {}
        self._min_version: dict[int, int] = {}

    def add(self, rows: pl.DataFrame, merge: Merge) -> None:
        """Fold new state rows (any panes) into the panes they touch: `merge` groups the
        touched panes' rows and the new ones into one row per (keys, pane, first window)."""
        if rows.height == 0:
            return
        touched = rows[PANE].unique().to_list()
        parts = [self._frames.pop(p) for p in touched if p in self._frames]
        merged = merge(pl.concat([*parts, rows], how="vertical_relaxed") if parts else rows)
        for (pane,), frame in merged.partition_by(PANE, as_dict=True).items():
            self._frames[pane] = frame  # type: ignore[index]
            self._min_version[pane] = int(frame[MINVER].min())  # type: ignore[arg-type, index]

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
