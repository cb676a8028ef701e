"""Window and pane arithmetic, in integer microseconds since the Unix epoch (UTC).

A window of size S sliding by L is split into panes of length L: pane p covers
[p·L, (p+1)·L) and window k covers panes k … k+n-1 with n = S/L (tumbling: n = 1).
State is kept per pane, never per (row, window), so a row is aggregated once whatever
n is; windows are assembled from panes only when they close. Session windows have no
fixed panes: their rows are kept per event time and merged into sessions as they come.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from goldstream.config import WindowSpec
from goldstream.durations import to_us


@dataclass(frozen=True)
class Windows:
    size_us: int
    slide_us: int

    @classmethod
    def from_spec(cls, spec: WindowSpec) -> Windows:
        """A session's rows are kept per event time (panes of 1 µs, size the gap): its
        bounds are its first and last event exactly (engine/sessions.py)."""
        if spec.kind == "session":
            return cls(to_us(spec.gap), 1)
        return cls(to_us(spec.size), to_us(spec.slide_value))

    @property
    def panes_per_window(self) -> int:
        return self.size_us // self.slide_us

    def pane(self, ts_us: pl.Expr) -> pl.Expr:
        """Pane index of an event time (floor division, so pre-1970 times work too)."""
        return ts_us // self.slide_us

    def first_open_window(self, watermark_us: pl.Expr | int) -> pl.Expr | int:
        """Smallest window index k whose end k·L + S is still after the watermark."""
        return (watermark_us - self.size_us) // self.slide_us + 1

    def last_closed_window(self, watermark_us: int) -> int:
        """Largest window index k whose end is at or before the watermark."""
        return (watermark_us - self.size_us) // self.slide_us

    def pane_is_needed(self, pane: int, watermark_us: int) -> bool:
        """A pane stays in state while its last window (k = pane) is still open."""
        return pane * self.slide_us + self.size_us > watermark_us

    def start(self, k: pl.Expr) -> pl.Expr:
        return k * self.slide_us

    def end(self, k: pl.Expr) -> pl.Expr:
        return k * self.slide_us + self.size_us
