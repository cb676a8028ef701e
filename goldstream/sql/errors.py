"""The one error of goldstream's SQL translation: what is wrong, and where in the text."""

from __future__ import annotations

from typing import Any


class SqlError(ValueError):
    """A construct outside the supported Spark SQL subset, or one Spark itself refuses.
    `line`/`column` (1-based) point into the SQL text when the parser knows them."""

    def __init__(self, message: str, node: Any = None, line: int | None = None, column: int | None = None) -> None:
        if node is not None and line is None:
            line, column = position(node)
        self.reason = message
        self.line, self.column = line, column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


def position(node: Any) -> tuple[int | None, int | None]:
    """The earliest line/column the parser recorded inside `node` (identifiers, literals and
    function names carry them), or (None, None)."""
    try:
        nodes = list(node.walk())
    except AttributeError:
        return None, None
    found = []
    for n in nodes:
        meta = getattr(n, "_meta", None) or {}
        if "line" in meta:
            found.append((meta["line"], meta["col"] - (meta["end"] - meta["start"])))
    return min(found) if found else (None, None)
