"""The one rule for the names goldstream turns into directories, columns and ids.

A query's name becomes its Gold directory and application id; its keys and aggregate
names become Gold columns. Each must then be a file name on every store, a Delta and
Parquet column name (no spaces, commas, semicolons, braces, '=' or dots, which Spark
reads as a struct path), and distinct from every other such name once case is ignored
(Delta compares column names without case, as do case-insensitive filesystems). A
name that passed validation must never fail later with "File name too long": hence the
length bound. Names starting with '__' are kept for goldstream's bookkeeping columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated

from pydantic import AfterValidator

MAX_LENGTH = 128
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RULE = (f"use letters, digits and underscores, starting with a letter or underscore, "
        f"at most {MAX_LENGTH} characters")


def check_identifier(name: str) -> str:
    """`name` if it follows the rule, else ValueError saying which part it breaks."""
    if not name.strip():
        raise ValueError(f"a name must not be empty: {RULE}")
    if len(name) > MAX_LENGTH:
        raise ValueError(f"name {name[:20]!r}... is {len(name)} characters long, at most {MAX_LENGTH} are allowed")
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid name: {RULE}")
    if name.startswith("__"):
        raise ValueError(f"{name!r}: names starting with '__' are reserved for goldstream's bookkeeping columns")
    return name


Identifier = Annotated[str, AfterValidator(check_identifier)]


def first_collision(names: Iterable[str]) -> tuple[str, str] | None:
    """The first two names that are equal once case is ignored, in declaration order."""
    seen: dict[str, str] = {}
    for name in names:
        if (folded := name.casefold()) in seen:
            return seen[folded], name
        seen[folded] = name
    return None


def collision_message(first: str, second: str) -> str:
    """Why two names collide: declared twice, or equal but for case."""
    if first == second:
        return f"{first!r} is declared twice"
    return f"{second!r} and {first!r} differ only in case, which Delta and some filesystems ignore"
