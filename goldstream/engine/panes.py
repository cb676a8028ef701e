"""A query's open state, partitioned by pane: per pane, a merged frame (one row per (keys,
first window)) and the frames folded in since, not yet merged with it.

Taking in a batch groups only its own rows and appends them to the panes they touch, so
late rows trickling into an old pane, or a live commit into the current one, never
re-group what the pane already holds; a pane is compacted (its frames merged into one)
once what was appended outgrows what was merged, so each row is re-grouped a bounded
number of times and memory stays within about twice the merged state. Closing windows
reads only the panes those windows cover (their group-by merges the parts anyway);
evicting a pane drops its frames. So the cost of a batch follows the rows and panes it
touches, never the whole state (a million aircraft × a dozen open minutes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

PANE, MINVER = "__pane", "__minver"

Merge = Callable[[pl.DataFrame], pl.DataFrame]


@dataclass
class _Pane:
    merged: pl.DataFrame
    appended: list[pl.DataFrame] = field(default_factory=list)
    appended_rows: int = 0
    min_version: int = 0

    @property
    def frames(self) -> list[pl.DataFrame]:
        return [self.merged, *self.appended]

    @property
    def height(self) -> int:
        return self.merged.height + self.appended_rows


class PaneStore:
    """Panes by index; each frame holds its pane's column `PANE` and `MINVER` (the oldest
    Silver version in a row)."""

    def __init__(self) -> None:
        self._panes: dict[int, _Pane] = {}

    def add(self, rows: pl.DataFrame, merge: Merge) -> None:
        """Fold new state rows (any panes) into the panes they touch: `merge` groups rows
        into one row per (keys, pane, first window)."""
        if rows.height == 0:
            return
        for (index,), frame in merge(rows).partition_by(PANE, as_dict=True).items():
            low = int(frame[MINVER].min())  # type: ignore[arg-type]
            pane = self._panes.get(index)  # type: ignore[arg-type]
            if pane is None:
                self._panes[index] = _Pane(frame, min_version=low)  # type: ignore[index]
                continue
            pane.appended.append(frame)
            pane.appended_rows += frame.height
            pane.min_version = min(pane.min_version, low)
            if pane.appended_rows > pane.merged.height:
                pane.merged = merge(pl.concat(pane.frames, how="vertical_relaxed"))
                pane.appended, pane.appended_rows = [], 0

    def select(self, first: int, last: int) -> pl.DataFrame | None:
        """Rows of panes first … last, a (keys, pane, first window) possibly on several
        rows (None: none held)."""
        frames = [f for p, pane in self._panes.items() if first <= p <= last for f in pane.frames]
        return pl.concat(frames, how="vertical_relaxed") if frames else None

    def heights(self, first: int, last: int) -> dict[int, int]:
        """Rows held per pane, for panes first … last."""
        return {p: pane.height for p, pane in self._panes.items() if first <= p <= last}

    def all(self) -> pl.DataFrame | None:
        return self.select(min(self._panes), max(self._panes)) if self._panes else None

    def evict(self, needed: Callable[[int], bool]) -> None:
        for index in [p for p in self._panes if not needed(p)]:
            del self._panes[index]

    @property
    def last_pane(self) -> int | None:
        return max(self._panes, default=None)

    @property
    def rows(self) -> int:
        return sum(pane.height for pane in self._panes.values())

    @property
    def bytes(self) -> int:
        """Estimated memory of the frames (Polars' estimate of their buffers)."""
        return sum(int(f.estimated_size()) for pane in self._panes.values() for f in pane.frames)

    def min_version(self) -> int | None:
        return min((pane.min_version for pane in self._panes.values()), default=None)
