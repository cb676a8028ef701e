"""`show --plot`: a query's Gold over time, one line per key, as a PNG or an HTML page.

Drawn with matplotlib (the `plot` extra: it is large, and only this command needs it).
The HTML page embeds matplotlib's SVG and the plotted values as JSON, so it opens
anywhere without a network, and a script can read the numbers back.
"""

from __future__ import annotations

import io
import json
import math
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from goldstream.config import QuerySpec, Settings
from goldstream.errors import ConfigError
from goldstream.report import read_gold

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = (".png", ".html")
SIZE_IN, DPI = (10.0, 5.0), 100  # a 1000 × 500 px picture


def plot_gold(settings: Settings, q: QuerySpec, path: Path, metric: str | None, top: int) -> str:
    """Draw `metric` (default: the query's first aggregate) of the `top` keys with the
    largest total into `path`; returns what was written, for the user."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--plot {path}: give a file ending in .png or .html")
    names = q.gold_columns.values
    name = metric or names[0]
    if name not in names:
        raise ConfigError(f"--metric {name!r}: query {q.name!r} has the aggregates {', '.join(names)}")
    gold = read_gold(settings, q)
    if gold.height and not gold[name].dtype.is_numeric():
        raise ConfigError(f"--metric {name!r} of query {q.name!r} holds {gold[name].dtype} values, not numbers: "
                          "choose a numeric aggregate")
    lines = series(gold, q, name, top)
    if not lines:
        raise ConfigError(f"Gold table {settings.gold_path(q)} of query {q.name!r} has no rows yet: nothing to plot")
    figure = _figure(q, name, lines)
    if suffix == ".png":
        figure.savefig(path, dpi=DPI)
    else:
        path.write_text(_html(q, name, lines, figure))
    windows = len({t for points in lines.values() for t, _ in points})
    return f"wrote {path}: {name} of query {q.name} over {windows} windows, {len(lines)} keys"


def series(gold: pl.DataFrame, q: QuerySpec, metric: str, top: int) -> dict[str, list[tuple[Any, float | None]]]:
    """Per key (its values joined by " / "; "all" without keys), its (window end, value)
    points in time order, for the `top` keys with the largest total, largest first."""
    if gold.height == 0:
        return {}
    keys, end = q.gold_columns.keys, q.gold_columns.window_end or q.gold_columns.window_start
    key = (pl.concat_str([pl.col(k).cast(pl.String).fill_null("null") for k in keys], separator=" / ")
           if keys else pl.lit("all"))
    data = gold.select(pl.col(end).alias("window_end"), key.alias("key"),
                       pl.col(metric).cast(pl.Float64).alias("value"))
    leaders = (data.group_by("key").agg(pl.col("value").fill_nan(None).sum().alias("total"))
               .sort(["total", "key"], descending=[True, False], nulls_last=True).head(top)["key"].to_list())
    data = data.filter(pl.col("key").is_in(leaders)).sort("window_end")
    return {k: list(data.filter(pl.col("key") == k).select("window_end", "value").iter_rows()) for k in leaders}


def with_gaps(points: list[tuple[Any, float | None]], step: timedelta | None) -> list[tuple[Any, float | None]]:
    """`points` with a None (a break in the line) after each window a key has no row in, so a
    line never bridges windows where the key was absent. Windows end every `step` (their
    slide); session windows have no grid (None): their points are drawn as they are."""
    if step is None:
        return points
    out: list[tuple[Any, float | None]] = []
    for point in points:
        if out and point[0] - out[-1][0] > step:
            out.append((out[-1][0] + step, None))
        out.append(point)
    return out


def _figure(q: QuerySpec, metric: str, lines: dict[str, list[tuple[Any, float | None]]]) -> Figure:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never a window, works without a display
        import matplotlib.dates as mdates
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("show --plot needs matplotlib, which the 'plot' extra installs: "
                          "pip install 'goldstream[plot]'") from None
    figure = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    marker = "o" if max(map(len, lines.values())) <= 60 else None  # dots while they stay apart
    step = None if q.window.kind == "session" else q.window.slide_value
    for i, (key, points) in enumerate(lines.items()):
        times, values = zip(*with_gaps(points, step), strict=True)
        (line,) = ax.plot(times, [math.nan if v is None else v for v in values], label=key,
                          marker=marker, markersize=3, linewidth=1.5)
        line.set_gid(f"series-{i}")
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("window end (UTC)")
    ax.set_ylabel(metric)
    per = " / ".join(q.gold_columns.keys) if q.gold_columns.keys else "all rows"
    ax.set_title(f"{q.name}: {metric} per {per}, top {len(lines)}", loc="left")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    return figure


def _html(q: QuerySpec, metric: str, lines: dict[str, list[tuple[Any, float | None]]], figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # inline: without the XML prolog
    data = {"query": q.name, "metric": metric, "keys": q.gold_columns.keys, "series": [
        {"key": key, "points": [[t.isoformat().replace("+00:00", "Z"), _finite(v)] for t, v in points]}
        for key, points in lines.items()]}
    title = f"{q.name}: {metric} over time"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            '<style>body{font-family:system-ui,sans-serif;margin:24px;color:#1f2933}svg{max-width:100%;height:auto}'
            "</style></head><body>"
            f"<h1>{_esc(title)}</h1>{svg}"
            f'<script type="application/json" id="gold-series">{_esc_script(json.dumps(data))}</script>'
            "</body></html>\n")


def _finite(v: float | None) -> float | str | None:
    """JSON without NaN or infinity tokens, which strict parsers refuse."""
    if v is None or math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _esc_script(text: str) -> str:
    return text.replace("</", "<\\/")  # a key holding "</script>" cannot end the block
