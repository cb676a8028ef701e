"""What a SQL query means in the terms of a TOML query: its window, keys and aggregate
list (the registry's functions over derived columns), so config, engine and Gold treat
both kinds alike."""

from __future__ import annotations

from typing import Any

from goldstream.sql.compile import arg_column
from goldstream.sql.query import SqlQuery


def plan_fields(text: str) -> tuple[SqlQuery, dict[str, Any], list[str], list[dict[str, Any]]]:
    """(parsed query, window fields, key columns, aggregate entries) of SQL `text`."""
    q = SqlQuery.parse(text)
    if q.window_kind == "session":
        window: dict[str, Any] = {"kind": "session", "gap": q.gap}
    elif q.window_kind == "sliding":
        window = {"kind": "sliding", "size": q.size, "slide": q.slide}
    else:
        window = {"kind": "tumbling", "size": q.size}
    aggregates = []
    for a in q.aggregates:
        entry: dict[str, Any] = {"name": a.name, "fn": a.fn}
        for argument, _ in a.inputs:
            entry[argument] = arg_column(a.name, argument)
        entry.update(dict(a.options))
        aggregates.append(entry)
    return q, window, q.key_names, aggregates
