"""The one way configuration text enters the exported job: as a Python literal.

Names, conditions, notes and the config file's name come from a file a user (or an
attacker) wrote. Pasted into a comment, a docstring or code, a newline, a triple quote
or a Unicode line separator would end that context and turn the rest into code that
runs at import. So the job generator writes no such text anywhere but through
`py_literal`, whose output is always one printable line (every control, separator,
format or unpaired surrogate character escaped) that `ast.literal_eval` reads back
as the same value.
"""

from __future__ import annotations

import json
from typing import Any


def py_literal(value: Any) -> str:
    """`value` (str, int, bool, None, or lists and dicts of them) as a Python literal, strings
    in double quotes as the rest of the job is written."""
    if isinstance(value, str):
        return printable(json.dumps(value, ensure_ascii=False))
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no job literal for a {type(value).__name__}")


def printable(text: str) -> str:
    """`text` with every character that is not printable (newlines, control and format
    characters, line separators, unpaired surrogates) written as its Python escape, so it
    stays on one line and shows what it holds: for messages quoting configuration text."""
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
