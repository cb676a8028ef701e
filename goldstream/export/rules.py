"""What a goldstream configuration may carry into a Spark job.

Spark must compute the same Gold rows, never a silent approximation: a goldstream-only
option, or an aggregate Spark cannot compute in a streaming aggregation (its `spark_sql()`
raises NoSparkEquivalent), stops the export with a message naming the query, the field and
why. An equivalent that differs in a way the user should know (an approximate distinct
count they asked for, a function's declared `spark_difference`, a rate limit the Delta
source has no option for) is allowed and becomes a note: a line on stderr, and an entry of
the job's NOTES literal, which the job prints with --help and at start.
"""

from __future__ import annotations

from dataclasses import dataclass

from goldstream.config import QuerySpec, Settings, SourceSpec
from goldstream.errors import ConfigError
from goldstream.functions.base import Function, NoSparkEquivalent
from goldstream.functions.registry import build

# Window kinds the job knows a Spark grouping for: window(...) or session_window(...).
SPARK_WINDOWS = ("tumbling", "sliding", "session")


class ExportRefused(ConfigError):
    """The configuration uses something Spark cannot compute the same way; nothing was written."""


@dataclass(frozen=True)
class Column:
    """One output column of a query, with its Spark SQL expression."""

    function: Function
    sql: str


@dataclass(frozen=True)
class ExportPlan:
    """The checked configuration: each query's columns in their Spark form, and the notes."""

    settings: Settings
    columns: dict[str, list[Column]]
    notes: list[str]


def plan_export(settings: Settings, approximate: bool = False) -> ExportPlan:
    """The queries' Spark forms, or ExportRefused listing everything Spark cannot express."""
    refusals: list[str] = []
    notes = _source_notes(settings.source)
    columns: dict[str, list[Column]] = {}
    for query in settings.queries:
        if query.gold_path:
            notes.append(f"query {query.name!r}: its gold_path {query.gold_path} is goldstream's own table; the job "
                         f"writes <gold-root>/{query.name} (or --gold-path {query.name}=URI) and refuses that path")
        refusals += [f"query {query.name!r}, field {field}: {why}" for field, why in _goldstream_only(settings, query)]
        columns[query.name] = []
        if query.sql_query is not None:  # exported as its own (canonical) SQL text: spark_job.py
            if any(a.fn == "count_distinct" for a in query.sql_query.aggregates):
                refusals.append(f"query {query.name!r}: count(DISTINCT ...) is refused by Spark on a stream; "
                                "goldstream computes it exactly, the export cannot")
            continue
        for spec in query.aggregates:
            function = build(spec)
            where = f"query {query.name!r}, aggregate {spec.name!r} (fn = {spec.fn!r})"
            try:
                columns[query.name].append(Column(function, function.spark_sql()))
            except NoSparkEquivalent as missing:
                if not (approximate and missing.approximate):
                    hint = "; --approx-distinct exports that closest form" if missing.approximate else ""
                    refusals.append(f"{where}: {_reason(missing)}{hint}")
                    continue
                notes.append(f"{where}: {_reason(missing)}")
                columns[query.name].append(Column(function, missing.approximate))
            if function.spark_difference:
                notes.append(f"{where}: {function.spark_difference}")
    if refusals:
        raise ExportRefused("cannot export to Spark, which would compute different Gold rows:\n  - "
                            + "\n  - ".join(refusals))
    return ExportPlan(settings, columns, notes)


def _reason(missing: NoSparkEquivalent) -> str:
    """Its message without the "aggregate 'x': " it starts with (the export names it)."""
    return str(missing).split(": ", 1)[-1]


def _goldstream_only(settings: Settings, query: QuerySpec) -> list[tuple[str, str]]:
    """The (field, why) of each goldstream-only option the query uses."""
    found = []
    assert query.window is not None
    if query.window.kind not in SPARK_WINDOWS:
        found.append(("window.kind", f"{query.window.kind!r} windows have no Spark grouping in the export"))
    if query.late_sink:
        found.append(("late_sink", "Spark's streaming aggregation drops late rows without handing them over, so "
                                   "there is no late table to write; remove late_sink to export"))
    if query.idle_timeout is not None:
        found.append(("idle_timeout", "it advances the watermark with wall-clock time while Silver is idle, and "
                                      "Spark's watermark moves only with event time; remove it to export"))
    if settings.max_event_time_skew(query) is not None:
        field = "max_event_time_skew" if query.max_event_time_skew is not None else "[source] max_event_time_skew"
        found.append((field, "it keeps rows far ahead of their commit's time from moving the watermark, and "
                             "Spark lets every row move it; remove it to export"))
    return found


def _source_notes(source: SourceSpec) -> list[str]:
    """[source] rate limits the Delta source has no option for (maxFilesPerTrigger is kept)."""
    defaults = SourceSpec()
    return [
        f"[source] {field} = {getattr(source, field)}: the Delta source has no such limit; with --io delta a "
        "micro-batch is bounded by maxFilesPerTrigger only, with --io deltalake it is one Silver commit"
        for field in ("max_commits_per_batch", "max_rows_per_batch")
        if getattr(source, field) != getattr(defaults, field)
    ]
