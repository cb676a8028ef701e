"""What the status page asks the daemon for: `/`, `/api/status`, `/api/progress?query=Q`.

`/` is one static file (HTML, CSS and the chart code inline: no CDN, no font to fetch,
since the machine serving it may have no internet); it holds no data. Everything the
page shows comes from `/api/*` as JSON, which the HTTP server guards with the optional
bearer token. Answers are built from the in-memory history and the status snapshot
only, so the page never touches storage.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs

from goldstream.config import AggregateSpec, QuerySpec, Settings
from goldstream.durations import format_duration
from goldstream.runner.status import PipelineStatus, fmt_us
from goldstream.web.history import ProgressHistory

if TYPE_CHECKING:
    from goldstream.observability import ProgressReporter

JSON = "application/json"
HTML = "text/html; charset=utf-8"
PAGE = resources.files("goldstream.web").joinpath("status.html").read_bytes()

Answer = tuple[int, bytes, str]  # status code, body, content type


class StatusApp:
    """Answers the page's requests from `history` and `status` snapshots."""

    def __init__(self, settings: Settings, history: ProgressHistory, status: Callable[[], PipelineStatus]) -> None:
        self.settings = settings
        self.history = history
        self.status = status

    def answer(self, path: str, query_string: str, health: dict[str, Any]) -> Answer | None:
        """The answer to a GET of `path`, or None when it is not one of the page's paths.
        `health` is what the probes would answer now."""
        if path == "/":
            return 200, PAGE, HTML
        if path == "/api/status":
            return _json(200, self.overview(health))
        if path == "/api/progress":
            query = parse_qs(query_string).get("query", [""])[0]
            if not self.history.knows(query):
                known = ", ".join(q.name for q in self.settings.queries)
                return _json(404, {"error": f"unknown query {query!r}: this process runs {known}"})
            return _json(200, {"query": query, "progress": self.history.records(query)})
        return None

    def overview(self, health: dict[str, Any]) -> dict[str, Any]:
        """Health, and per query its definition, tables, position and latest closed windows."""
        snapshot = {q.name: q for q in self.status().queries}
        queries = []
        for q in self.settings.queries:
            now = snapshot.get(q.name)
            queries.append({
                "name": q.name,
                "definition": definition(q),
                "gold": self.settings.gold_path(q),
                "late": q.late_sink,
                "appId": q.resolved_app_id,
                "processedThrough": None if now is None else now.processed,
                "watermark": None if now is None else fmt_us(now.watermark_us),
                "lateRows": None if now is None else now.late_rows,
                "latestWindows": self.history.windows(q.name),
            })
        return {"silver": self.settings.source.path, "health": health, "queries": queries}


def definition(q: QuerySpec) -> dict[str, Any]:
    """A query's definition as a person reads it."""
    return {
        "window": f"{q.window.kind} {q.window.extent}",
        "watermarkDelay": format_duration(q.watermark_delay),
        "eventTime": q.event_time,
        "keys": q.keys,
        "filter": q.filter,
        "aggregates": [aggregate_text(a) for a in q.aggregates],
    }


def aggregate_text(a: AggregateSpec) -> str:
    """An aggregate as configured: "ground_count = count_if(on_ground, equals=true)"."""
    args = a.model_dump(exclude_none=True, exclude={"name", "fn", "column", "where"})
    shown = ([a.column] if a.column is not None else []) + [f"{k}={json.dumps(v)}" for k, v in args.items()]
    where = f" where {a.where}" if a.where is not None else ""
    return f"{a.name} = {a.fn}({', '.join(shown)}){where}"


def _json(code: int, body: dict[str, Any]) -> Answer:
    return code, json.dumps(body, default=str).encode(), JSON


def attach(settings: Settings, progress: ProgressReporter, status: Callable[[], PipelineStatus]) -> StatusApp:
    """A status page fed by `progress` from now on."""
    history = ProgressHistory(settings.queries)
    progress.add_listener(history.on_progress)
    return StatusApp(settings, history, status)
