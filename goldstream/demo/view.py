"""What `goldstream demo` shows: a Rich live view on a terminal, plain lines otherwise.

Per query: the latest closed windows (top keys by the first aggregate, as they were
just committed to Gold), the watermark, rows in / late, windows and Gold commits. The
windows come from the pipeline's progress listener (`ProgressReporter.add_listener`),
so the view costs no extra reads of Gold. Plain mode prints one line per closed window
so a log, a CI job or a test can follow it.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import polars as pl
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from goldstream.config import QuerySpec
from goldstream.durations import format_duration

if TYPE_CHECKING:
    from goldstream.demo.feed import DemoOptions, OpenSkyLoader, Phase
    from goldstream.engine.state import StepResult

REFRESH_S = 0.25  # at most 4 renders a second: the CPU is for the pipeline
SHOWN_AGGREGATES = 4


def _hms(us: int | None) -> str:
    if us is None or us <= 0:
        return "–"
    return datetime.fromtimestamp(us / 1e6, timezone.utc).strftime("%H:%M:%S")


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.1f}" if abs(v) >= 1 else f"{v:.4f}"
    return str(v)


def _ranked(q: QuerySpec, windows: pl.DataFrame) -> pl.DataFrame:
    """Top keys first: by the first ratio aggregate if the query has one (the anomaly rate:
    what that query is for), then by the first aggregate (the count)."""
    return windows.sort(_rank_columns(q), descending=True, nulls_last=True)


def _rank_columns(q: QuerySpec) -> list[str]:
    return [a.name for a in q.aggregates if a.fn == "ratio"][:1] + [q.aggregates[0].name]


def _window_label(q: QuerySpec) -> str:
    return f"{q.window.kind} {q.window.extent} · watermark delay {format_duration(q.watermark_delay)}"


class DemoView:
    def __init__(self, opts: DemoOptions, t0: float, live: bool) -> None:
        self.opts = opts
        self.t0 = t0
        self.live_mode = live
        self.console = Console(highlight=False)
        self.live: Live | None = None
        self.phase: Phase | None = None
        self.latest: dict[str, pl.DataFrame] = {}
        self.notes: list[str] = []
        self.first_window_s: float | None = None
        self.status = "starting…"
        self._last_render = 0.0

    # -- lifecycle --

    def __enter__(self) -> DemoView:
        if self.live_mode:
            self.live = Live(self._render(), console=self.console, auto_refresh=False, transient=False,
                             vertical_overflow="crop")
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._render(), refresh=True)
            self.live.__exit__(None, None, None)
            self.live = None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- events --

    def begin(self, phase: Phase) -> None:
        self.phase = phase
        self.latest = {}
        self._plain(f"streaming {phase.data.title}: one Silver commit (10 s of event time) every "
                    f"{self.opts.commit_every_s:g}s; Silver {phase.feeder.uri}, Gold {phase.pipeline.settings.sink.gold_root}")

    def note(self, text: str) -> None:
        self.notes.append(f"{self.elapsed():5.1f}s  {text}")
        self._plain(text)
        self._refresh(force=True)

    def preparing(self, text: str) -> None:
        self._set_status(text)
        self._refresh(force=True)

    def waiting(self, loader: OpenSkyLoader) -> None:
        self._set_status(f"preparing real OpenSky data: {loader.stage}…")
        self._refresh()

    def on_progress(self, record: dict[str, Any], result: StepResult) -> None:
        """Progress listener: keep the windows a batch just committed to Gold."""
        closed = result.closed
        if closed.height == 0:
            return
        if self.first_window_s is None:
            self.first_window_s = self.elapsed()
        name = record["name"]
        latest = closed.filter(pl.col("window_end") == pl.col("window_end").max())
        self.latest[name] = latest
        if not self.live_mode:
            self._plain(self._line(name, latest))

    def update(self, phase: Phase, loader: OpenSkyLoader) -> None:
        self.phase = phase
        if not phase.final and not loader.done.is_set():
            self._set_status(f"synthetic warm-up while the real OpenSky data is prepared: {loader.stage}…")
        else:
            self._set_status("")
        self._refresh()

    # -- output --

    def _set_status(self, text: str) -> None:
        if text != self.status and text:
            self._plain(text)
        self.status = text

    def _plain(self, text: str) -> None:
        if not self.live_mode:
            print(f"[{self.elapsed():6.1f}s] {text}", flush=True)

    def _refresh(self, force: bool = False) -> None:
        if self.live is None:
            return
        now = time.monotonic()
        if force or now - self._last_render >= REFRESH_S:
            self._last_render = now
            self.live.update(self._render(), refresh=True)

    def _run_of(self, name: str) -> Any:
        assert self.phase is not None
        return next(r for r in self.phase.pipeline.runs if r.query.name == name)

    def _line(self, name: str, latest: pl.DataFrame) -> str:
        run = self._run_of(name)
        q: QuerySpec = run.query
        shown = _rank_columns(q)
        first, ratio = shown[-1], shown[:-1]

        def item(r: dict[str, Any]) -> str:
            extra = "".join(f" ({c} {_num(r[c])})" for c in ratio)
            return f"{' / '.join(str(r[k]) for k in q.keys) or '(all)'} {_num(r[first])}{extra}"

        keys = ", ".join(item(r) for r in _ranked(q, latest).head(3).iter_rows(named=True))
        start, end = latest["window_start"][0], latest["window_end"][0]
        st = run.stats
        groups = f"{latest.height} group{'s' if latest.height != 1 else ''}"
        return (f"{name}: window {start:%H:%M}–{end:%H:%M} closed ({groups}), top by {', '.join(shown)}: {keys} | "
                f"watermark {_hms(run.engine.watermark_us)} | rows in {st.rows_in:,} late {st.rows_late:,} | "
                f"windows {st.windows_emitted:,} in {st.gold_commits} Gold commits")

    def _render(self) -> RenderableType:
        parts: list[RenderableType] = []
        head = Text()
        head.append("goldstream demo", style="bold")
        head.append("  Silver → windowed aggregates → Gold, live", style="dim")
        head.append(f"   {self.elapsed():.1f}s", style="dim")
        parts.append(head)
        phase = self.phase
        if phase is not None:
            feeder = phase.feeder
            total = f"/{phase.data.total_commits:,}" if phase.data.total_commits else ""
            event_us = max((r.engine.max_event_time_us or 0 for r in phase.pipeline.runs), default=0)
            speed = 10.0 / self.opts.commit_every_s  # 10 s of event time per commit
            parts.append(Text.assemble(("data    ", "dim"), phase.data.title))
            parts.append(Text.assemble(
                ("Silver  ", "dim"), f"{feeder.written:,}{total} commits · {feeder.rows:,} rows · event time ",
                (_hms(event_us), "bold"), (f" · {speed:.0f}× real time", "dim")))
        if self.status:
            parts.append(Text(self.status, style="yellow"))
        for note in self.notes[-2:]:
            parts.append(Text(note, style="cyan"))
        if phase is not None:
            rows = self._top_rows()
            for run in phase.pipeline.runs:
                parts.append(self._panel(run, rows))
        parts.append(Text(f"Ctrl+C stops · progress records in {self.opts.workdir / 'demo.log'}", style="dim"))
        return Group(*parts)

    def _top_rows(self) -> int:
        """As many rows per query as fit the terminal (the rest of the view is ~11 lines per query)."""
        height = self.console.size.height
        n = len(self.phase.pipeline.runs) if self.phase else 1
        return max(3, min(8, (height - 7 - n * 8) // max(1, n)))

    def _panel(self, run: Any, top_n: int) -> Panel:
        q: QuerySpec = run.query
        st = run.stats
        lag = None
        if self.phase is not None:
            lag = max(0, self.phase.feeder.last_version - run.processed)
        stats = Text.assemble(
            ("watermark ", "dim"), (_hms(run.engine.watermark_us), "bold"),
            ("  rows in ", "dim"), f"{st.rows_in:,}",
            ("  late ", "dim"), f"{st.rows_late:,}",
            ("  windows ", "dim"), f"{st.windows_emitted:,}",
            ("  Gold commits ", "dim"), f"{st.gold_commits:,}",
            ("  state ", "dim"), f"{run.engine.state_rows:,}",
            ("  lag ", "dim"), f"{lag}" if lag is not None else "–",
        )
        latest = self.latest.get(q.name)
        shown = [a.name for a in q.aggregates[:SHOWN_AGGREGATES]]
        if latest is None:
            body: RenderableType = Text("no window closed yet: waiting for the watermark to pass the first window's end",
                                        style="dim")
            title_window = ""
        else:
            table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=False)
            for k in q.keys:
                table.add_column(k.replace("_", " "), no_wrap=True, max_width=24)
            for name in shown:
                table.add_column(name.replace("_", " "), justify="right")
            for r in _ranked(q, latest).head(top_n).iter_rows(named=True):
                table.add_row(*(str(r[k]) if r[k] is not None else "(null)" for k in q.keys),
                              *(_num(r[c]) for c in shown))
            body = table
            start, end = latest["window_start"][0], latest["window_end"][0]
            title_window = (f"latest closed window {start:%H:%M}–{end:%H:%M} · {latest.height} "
                            f"{' / '.join(q.keys) or 'row'} group{'s' if latest.height != 1 else ''}"
                            + (f", top {top_n}" if latest.height > top_n else ""))
        inner: list[RenderableType] = [stats]
        if title_window:
            inner.append(Text(title_window, style="dim"))
        inner.append(body)
        return Panel(Group(*inner), title=f"[bold]{q.name}[/] · {_window_label(q)}", title_align="left",
                     box=box.ROUNDED, padding=(0, 1))

    def print_summary(self, phase: Phase | None, warmup: tuple[str, float] | None,
                      loader: OpenSkyLoader, interrupted: bool) -> None:
        how = "stopped (Ctrl+C)" if interrupted else "finished"
        if phase is None:
            print(f"goldstream demo {how} after {self.elapsed():.1f}s, before any data was streamed.", flush=True)
            return
        lines = [f"\ngoldstream demo {how} after {self.elapsed():.1f}s · {phase.data.name} data · "
                 f"{phase.feeder.written:,} Silver commits, {phase.feeder.rows:,} rows"]
        if warmup is not None:
            lines.append(f"  (synthetic warm-up for {warmup[1]:.1f}s while the real data was prepared)")
        elif phase.data.name == "synthetic" and loader.error:
            lines.append(f"  real OpenSky data unavailable: {loader.error}")
        width = max(len(r.query.name) for r in phase.pipeline.runs)
        for run in phase.pipeline.runs:
            st = run.stats
            lines.append(f"  {run.query.name:<{width}}  rows in {st.rows_in:,} · late {st.rows_late:,} · windows "
                         f"{st.windows_emitted:,} · commits {st.gold_commits} · watermark {_hms(run.engine.watermark_us)}")
        if self.first_window_s is not None:
            lines.append(f"  first closed windows on screen {self.first_window_s:.1f}s after start")
        lines.append(f"Gold: {phase.pipeline.settings.sink.gold_root}")
        lines.append(f"Next: goldstream show --config {phase.config}")
        print("\n".join(lines), flush=True)
