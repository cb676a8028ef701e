"""Frames as a person reads them on a terminal: Rich tables, whole headers, numbers right-
aligned with one number of decimals per column (so the points line up), timestamps on one
line. A frame wider than the terminal is cut into column groups, each repeating the
leading identity columns (window, keys), instead of squeezing headers into fragments.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import polars as pl
from rich import box
from rich.table import Table

MISSING = "–"
BORDER = 4  # a table's outer border and padding
PER_COLUMN = 3  # a column's separator and padding


def cells(series: pl.Series) -> list[str]:
    """A column's values as text, formatted alike so they align."""
    dtype = series.dtype
    if dtype.is_float():
        finite = [abs(v) for v in series.to_list() if v is not None and math.isfinite(v)]
        top = max(finite, default=0.0)
        decimals = 0 if top >= 10_000 else 1 if top >= 100 else 2 if top >= 1 else _small_decimals(top)
        return [_float(v, decimals) for v in series.to_list()]
    return [_value(v) for v in series.to_list()]


def _small_decimals(top: float) -> int:
    """Decimals that show two significant digits of a column's largest value below 1."""
    return 4 if top == 0 else min(8, max(4, 1 - math.floor(math.log10(top))))


def _float(v: float | None, decimals: int) -> str:
    if v is None:
        return MISSING
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:,.{decimals}f}"


def _value(v: Any) -> str:
    if v is None:
        return MISSING
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S" if v.microsecond == 0 else "%Y-%m-%d %H:%M:%S.%f")
    return str(v)


def _unbroken(dtype: pl.DataType) -> bool:
    """Numbers and times are never broken over lines: a number cut in two misreads."""
    return dtype.is_numeric() or dtype.is_temporal()


def span(seconds: float | None) -> str:
    """A lag as a person says it: "45 s", "3 min 12 s", "5 h 2 min", "1,881 d"."""
    if seconds is None:
        return MISSING
    sign, s = ("-", -seconds) if seconds < 0 else ("", seconds)
    if s >= 2 * 86_400:
        return f"{sign}{s / 86_400:,.0f} d"
    if s >= 3_600:
        return f"{sign}{int(s // 3_600)} h {int(s % 3_600 // 60)} min"
    if s >= 60:
        return f"{sign}{int(s // 60)} min {int(s % 60)} s"
    return f"{sign}{s:.1f} s" if s < 10 else f"{sign}{s:.0f} s"


def tables(frame: pl.DataFrame, width: int, identity: int = 0, title: str | None = None) -> list[Table]:
    """`frame` as one Rich table, or several column groups when it is wider than `width`;
    every group starts with the first `identity` columns."""
    text = {name: cells(frame[name]) for name in frame.columns}
    widths = {name: max([len(name), *map(len, text[name])]) for name in frame.columns}
    for name in frame.columns:  # text folds: give it at most half the width, never less than its header
        if not _unbroken(frame[name].dtype):
            widths[name] = max(len(name), min(widths[name], width // 2))
    fixed, rest = frame.columns[:identity], frame.columns[identity:]
    groups: list[list[str]] = []
    used = BORDER + sum(widths[c] + PER_COLUMN for c in fixed)
    for name in rest:
        need = widths[name] + PER_COLUMN
        if not groups or (used + need > width and len(groups[-1]) > len(fixed)):
            groups.append(list(fixed))
            used = BORDER + sum(widths[c] + PER_COLUMN for c in fixed)
        groups[-1].append(name)
        used += need
    if not groups:
        groups = [list(frame.columns)]
    out = []
    for i, group in enumerate(groups):
        part = f" ({i + 1}/{len(groups)})" if len(groups) > 1 else ""
        table = Table(title=None if title is None else title + part, title_justify="left", box=box.ROUNDED,
                      header_style="bold")
        for name in group:
            dtype = frame[name].dtype
            if _unbroken(dtype):
                table.add_column(name, justify="right" if dtype.is_numeric() else "left", no_wrap=True,
                                 min_width=widths[name])
            else:  # text longer than the terminal (a table URI) folds; its header stays whole
                table.add_column(name, overflow="fold", min_width=len(name))
        for row in zip(*(text[name] for name in group), strict=True):
            table.add_row(*row)
        out.append(table)
    return out
