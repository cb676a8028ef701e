"""goldstream configs as tests and benchmarks write them: the seed queries (the two
queries of config.example.toml) or others, with settings replaced, dumped to TOML.

The seed queries are read from config.example.toml, never retyped, so every test and
benchmark follows the example when it changes.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from testsupport import ROOT

EXAMPLE_CONFIG = ROOT / "config.example.toml"


def example_doc() -> dict[str, Any]:
    """config.example.toml as a fresh document (callers may edit it)."""
    return tomllib.loads(EXAMPLE_CONFIG.read_text())


def seed_queries() -> dict[str, dict[str, Any]]:
    """The seed queries of config.example.toml, as TOML tables (name -> query)."""
    return {q["name"]: q for q in example_doc()["queries"]}


QUERIES: tuple[str, ...] = tuple(seed_queries())


def seed_query_list(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The seed queries in the example's order, `changes[name]` merged into query `name`."""
    return [{**q, **changes.get(name, {})} for name, q in seed_queries().items()]


def write_config(path: Path, silver: Path | str | None = None, gold_root: Path | str | None = None,
                 queries: list[dict[str, Any]] | None = None, *, doc: dict[str, Any] | None = None,
                 **source: Any) -> Path:
    """Write a config: `doc` (default: the seed queries, every setting at its default) with
    `source` fields merged into [source], the Silver path and Gold root when given, and
    `queries` (whole query tables) replacing the document's. The health server is off:
    tests never bind a fixed port."""
    if doc is None:
        doc = {"log_level": "INFO", "source": {}, "sink": {}, "server": {}, "queries": seed_query_list()}
    doc["source"] = {**doc.get("source", {}), **source, **({"path": str(silver)} if silver is not None else {})}
    if gold_root is not None:
        doc["sink"] = {**doc.get("sink", {}), "gold_root": str(gold_root)}
    doc["server"] = {**doc.get("server", {}), "http_port": 0}
    if queries is not None:
        doc["queries"] = queries
    path.write_text(dump_toml(doc))
    return path


def dump_toml(doc: dict[str, Any]) -> str:
    """Just enough TOML for goldstream configs: scalars, tables, arrays of tables."""
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not _is_table(v) and not _is_table_array(v)]
    for k, v in doc.items():
        if _is_table(v):
            lines += ["", f"[{k}]"] + [f"{kk} = {toml_value(vv)}" for kk, vv in v.items()]
        elif _is_table_array(v):
            for item in v:
                lines += ["", f"[[{k}]]"] + [f"{kk} = {toml_value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _toml_char(c: str) -> str:
    if ord(c) > 0xFFFF:
        return f"\\U{ord(c):08X}"
    return "\\u007F" if c == "\x7f" else c


def toml_value(v: Any) -> str:
    """A Python value as an inline TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):  # JSON's escapes are TOML's, but for DEL and characters past U+FFFF
        return "".join(_toml_char(c) for c in json.dumps(v, ensure_ascii=False))
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")
