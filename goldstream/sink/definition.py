"""A query's identity in its Gold table, and what changed since Gold was written.

Gold keeps the query's definition twice: as JSON in the table description (to say what
differs when the config changed) and as a fingerprint `txn` (checked with the offsets).
A query whose definition changed is refused: mixing two definitions in one table would
make Gold wrong. Both values must stay stable across releases, or every existing Gold
table would be refused.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from deltalake import DeltaTable

from goldstream.config import QuerySpec
from goldstream.durations import format_duration, to_us

_DESCRIPTION_PREFIX = "goldstream query "
_LABELS = {"window.size_us": "window size", "window.slide_us": "window slide", "window.kind": "window kind", "window.gap_us": "session gap",
           "watermark_delay_us": "watermark delay"}


def definition(query: QuerySpec) -> dict[str, Any]:
    """What defines the query's output; a change to any of it changes the Gold rows. A SQL
    query is defined by its canonical SQL (as parsed and rendered again: comments, spacing and
    case of keywords do not count), never equal to a TOML query's definition."""
    if query.sql_query is not None:
        return {
            "event_time": query.event_time,
            "sql": query.sql_query.canonical,
            "watermark_delay_us": to_us(query.watermark_delay),
            **({"ansi": False} if not query.ansi else {}),
            **({"max_event_time_skew_us": to_us(query.max_event_time_skew)}
               if query.max_event_time_skew is not None else {}),
        }
    return {
        "event_time": query.event_time,
        "keys": list(query.keys),
        "window": _window(query),
        "watermark_delay_us": to_us(query.watermark_delay),
        "aggregates": [a.model_dump(exclude_none=True) for a in query.aggregates],
        **({"filter": query.filter} if query.filter is not None else {}),
        **({"ansi": False} if not query.ansi else {}),
        # which rows count depends on the skew bound too (only when set, so that the
        # fingerprint of a query without it does not change)
        **({"max_event_time_skew_us": to_us(query.max_event_time_skew)}
           if query.max_event_time_skew is not None else {}),
    }


def _window(query: QuerySpec) -> dict[str, Any]:
    w = query.window
    if w.kind == "session":
        return {"kind": w.kind, "gap_us": to_us(w.gap)}
    return {"kind": w.kind, "size_us": to_us(w.size), "slide_us": to_us(w.slide_value)}


def fingerprint(query: QuerySpec) -> int:
    """A 62-bit hash of `definition()`, small enough for a Delta `txn` version."""
    canon = json.dumps(definition(query), sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(canon.encode()).digest()[:8], "big") >> 2


def description(query: QuerySpec) -> str:
    """The Gold table description: the definition, for a later start to compare with."""
    return _DESCRIPTION_PREFIX + json.dumps(definition(query), sort_keys=True)


def recorded_definition(dt: DeltaTable) -> dict[str, Any] | None:
    """The definition a Gold table was created for (None: not a goldstream Gold table)."""
    desc = dt.metadata().description or ""
    if not desc.startswith(_DESCRIPTION_PREFIX):
        return None
    try:
        return json.loads(desc[len(_DESCRIPTION_PREFIX):])
    except ValueError:
        return None


def changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """What differs between two query definitions, in the config's own terms."""
    out: list[str] = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changes(a, b, f"{path}.")
        elif path == "aggregates" and isinstance(a, list) and isinstance(b, list) and a != b:
            out += _aggregate_changes(a, b)
        elif a != b:
            out.append(f"{_LABELS.get(path, path)}: Gold has {_show(path, a)}, config has {_show(path, b)}")
    return out


def _show(path: str, v: Any) -> str:
    """A definition value as the operator wrote it: durations as "1m", the rest as JSON."""
    if path.endswith("_us") and isinstance(v, int):
        return format_duration(timedelta(microseconds=v))
    return json.dumps(v)


def _aggregate_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Aggregates by name: renamed (same definition, new name), removed, added, changed, reordered."""
    def body(a: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in a.items() if k != "name"}

    o, n = {a["name"]: a for a in old}, {a["name"]: a for a in new}
    removed, added = [x for x in o if x not in n], [x for x in n if x not in o]
    out: list[str] = []
    for r in list(removed):
        twin = next((x for x in added if body(n[x]) == body(o[r])), None)
        if twin is not None:
            out.append(f"aggregate {r!r} renamed to {twin!r}")
            removed.remove(r)
            added.remove(twin)
    out += [f"aggregate {x!r} removed" for x in removed]
    out += [f"aggregate {x!r} added ({', '.join(f'{k} {json.dumps(v)}' for k, v in body(n[x]).items())})"
            for x in added]
    for x in o:
        if x in n and o[x] != n[x]:
            out += [f"aggregate {x!r}: {k}: Gold has {json.dumps(o[x].get(k))}, config has {json.dumps(n[x].get(k))}"
                    for k in sorted(set(o[x]) | set(n[x])) if o[x].get(k) != n[x].get(k)]
    if not out:
        out.append(f"aggregate order: Gold has {[a['name'] for a in old]}, config has {[a['name'] for a in new]}")
    return out
