"""Reading Spark SQL text: sqlglot's Spark dialect, with Spark's own lexer rules for
comments and whitespace applied first.

Spark's lexer (SqlBaseLexer.g4) ends a `--` comment at a line feed *or* a carriage
return, continues it over a backslash-newline, nests `/* */` comments, and treats a few
Unicode spaces as whitespace. The pre-pass below replaces every comment by spaces (line
breaks kept, so positions stay right) following exactly those rules, so what sqlglot
parses is what Spark parses: text hidden from one is hidden from the other.
`window` is a function name in Spark's GROUP BY, not the WINDOW clause keyword.
"""

from __future__ import annotations

import re

import sqlglot
import sqlglot.errors
import sqlglot.expressions as E
from sqlglot.dialects.spark import Spark

from goldstream.sql.errors import SqlError

# Spark 4's WS rule (besides ' ', \t, \n, \r): form feed, vertical tab and Unicode spaces.
_SPACES = "\f\v\u00a0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u2028\u2029\u202f\u205f\u3000"


class GoldSpark(Spark):
    """Spark's dialect with `window` usable as a function and column qualifier."""

    class Tokenizer(Spark.Tokenizer):
        KEYWORDS = {k: v for k, v in Spark.Tokenizer.KEYWORDS.items() if k != "WINDOW"}


def strip_comments(text: str) -> str:
    """`text` with comments blanked out by Spark's lexer rules (strings and quoted names
    untouched); an unterminated comment or string is an SqlError."""
    out: list[str] = []
    i, n = 0, len(text)
    line, col = 1, 1

    def blank(chunk: str) -> str:
        return "".join(c if c in "\r\n" else " " for c in chunk)

    while i < n:
        c = text[i]
        if c in "'\"`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if c != "`" and text[j] == "\\" else 1
            if j >= n:
                raise SqlError(f"unterminated {'quoted name' if c == '`' else 'string'} starting here",
                               line=line, column=col)
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("--", i):
            j = i + 2
            while j < n and text[j] not in "\r\n":
                j += 2 if text.startswith("\\\n", j) else 1
            if text.startswith("\r\n", j):
                j += 2
            elif j < n:
                j += 1
            out.append(blank(text[i:j]) if j > i else "")
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise SqlError("unclosed /* comment (Spark refuses it: UNCLOSED_BRACKETED_COMMENT)",
                               line=line, column=col)
            out.append(blank(text[i:j]))
            i = j
        else:
            out.append(" " if c in _SPACES else c)
            i += 1
        line = text.count("\n", 0, i) + 1
        col = i - text.rfind("\n", 0, i)
    return "".join(out)


_OPERATORS = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<=", "EQ": "=", "NEQ": "<>", "And": "AND", "Or": "OR",
              "Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Mod": "%", "Between": "BETWEEN", "In": "IN",
              "Like": "LIKE", "Not": "NOT", "Is": "IS"}


def _parse_error(err: sqlglot.errors.ParseError, what: str) -> SqlError:
    """sqlglot's message in the SQL's own terms, at the place it names."""
    first = err.errors[0] if err.errors else {}
    reason = str(first.get("description") or err).splitlines()[0]
    missing = re.match(r"Required keyword: '(\w+)' missing for <class '[\w.]+\.(\w+)'>", reason)
    if missing:
        node = missing.group(2)
        shown = _OPERATORS.get(node, node.upper())
        reason = f"{shown} is incomplete: its {'right-hand side' if missing.group(1) == 'expression' else missing.group(1)} " \
                 "is missing"
    near = str(first.get("highlight") or "")
    if near.strip() and not missing:
        reason += f" (near {near.strip()!r})"
    column = first.get("col")
    if column is not None and near:
        column = max(1, column - len(near) + 1)  # sqlglot points at the token's end; say where it starts
    return SqlError(f"cannot parse the {what}: {reason}", line=first.get("line"), column=column)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


def _check_names(tree: E.Expression) -> E.Expression:
    """Unquoted names as Spark's lexer reads them: ASCII letters, digits and `_` only (a
    non-ASCII character, such as an Arabic-Indic digit, is no name or number to Spark)."""
    for ident in tree.find_all(E.Identifier):
        if not ident.quoted and not _PLAIN_NAME.fullmatch(ident.name):
            raise SqlError(f"`{ident.name}` is not a name Spark reads unquoted (ASCII letters, digits and _ only): "
                           "put a column name in backquotes, write numbers with ASCII digits")
    return tree


def parse_query(text: str) -> E.Expression:
    """One SQL statement (a SELECT, maybe WITH ...)."""
    clean = strip_comments(text)
    try:
        statements = [s for s in sqlglot.parse(clean, read=GoldSpark) if s is not None]
    except sqlglot.errors.ParseError as err:
        raise _parse_error(err, "SQL") from None
    except sqlglot.errors.TokenError as err:
        raise SqlError(f"cannot read the SQL: {err}") from None
    if len(statements) != 1:
        raise SqlError(f"the SQL holds {len(statements)} statements; a query is exactly one SELECT")
    return _check_names(statements[0])


def parse_condition(text: str) -> E.Expression:
    """A boolean expression alone (a TOML `filter` or an aggregate's `where`)."""
    clean = strip_comments(text)
    if not clean.strip():
        raise SqlError("the condition is empty (or only a comment)")
    try:
        return _check_names(sqlglot.parse_one(clean, read=GoldSpark, into=E.Condition))
    except sqlglot.errors.ParseError:
        pass
    except sqlglot.errors.TokenError as err:
        raise SqlError(f"cannot read the condition: {err}") from None
    # Say where it went wrong: parse it as a WHERE clause, whose errors have a position.
    try:
        tree = sqlglot.parse_one("SELECT 1 WHERE\n" + clean, read=GoldSpark)
    except sqlglot.errors.ParseError as err:
        e = _parse_error(err, "condition")
        raise SqlError(e.reason, line=None if e.line is None else e.line - 1, column=e.column) from None
    raise SqlError(f"`{text.strip()}` is not a single condition: "
                   f"it reads as `{tree.sql(dialect='spark')}`; write only the condition")
