"""Row conditions written in the SQL that Spark SQL and Polars SQL share.

A query's `filter` and an aggregate's `where` are strings in Spark SQL syntax, so the
same text runs in goldstream (evaluated vectorised by Polars' SQL expressions) and in
the exported Spark job. The two dialects differ outside a common core (string escapes,
double quotes, `IS TRUE` on null, functions), so a condition is first checked against
that core by the small parser below, which also says where in the string it went wrong:

    comparisons  = == != <> < <= > >=      logic  AND OR NOT, parentheses
    IS [NOT] NULL   [NOT] IN (v, ...)   [NOT] BETWEEN a AND b
    arithmetic   + - * / %  (unary -)     literals  numbers, 'strings', TRUE FALSE NULL
    columns      plain names or `backquoted`

Both dialects then agree: null makes a comparison null and a null condition keeps no
row, AND/OR are three-valued, NaN equals NaN and is greater than every number, `/` is
a division in double and `%` keeps the dividend's sign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<string>'[^'\\]*')"
    r"|(?P<quoted>`[^`]+`)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|<>|!=|==|[=<>+\-*/%(),]))"
)
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "TRUE", "FALSE"}
_COMPARISONS = {"=", "==", "!=", "<>", "<", "<=", ">", ">="}


class ConditionError(ValueError):
    """A condition outside the shared subset; `position` is 1-based in the string."""

    def __init__(self, text: str, position: int, reason: str) -> None:
        self.position = position
        super().__init__(f"{reason} at position {position} of {text!r}")


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, quoted, word, keyword, op, end
    text: str
    position: int  # 0-based


def _tokens(text: str) -> list[_Token]:
    out, pos = [], 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        at = len(text) - len(text[pos:].lstrip())
        if text.startswith(("--", "/*"), at):
            raise ConditionError(text, at + 1, "comments are not supported: Spark would skip what follows "
                                 "(to the line's end for --) and read a different condition; remove it, and "
                                 "write a - - b with a space between the minus signs")
        if m is None or m.end() == pos:
            char = text[at]
            if char == '"':
                raise ConditionError(text, at + 1, "double quotes mean a string in one SQL dialect and a column in "
                                     "the other: write strings in single quotes and columns plain or in backquotes")
            if char in "'\\":
                raise ConditionError(text, at + 1, "unterminated string, or a quote or backslash inside one "
                                     "(the dialects escape them differently)")
            raise ConditionError(text, at + 1, f"unexpected character {char!r}")
        group = m.lastgroup or "op"
        kind, token = group, m.group(group)
        if kind == "word" and token.upper() in _KEYWORDS:
            kind, token = "keyword", token.upper()
        out.append(_Token(kind, token, m.start(group)))
        pos = m.end()
    out.append(_Token("end", "", len(text)))
    return out


class _Parser:
    """Recursive descent over the shared subset, Spark's precedence: OR < AND < NOT <
    comparison/IS/IN/BETWEEN < + - < * / % < unary minus < literal, column, ( )."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0
        self.columns: list[str] = []

    @property
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def fail(self, reason: str, token: _Token | None = None) -> ConditionError:
        token = token or self.peek
        found = "the end" if token.kind == "end" else repr(token.text)
        return ConditionError(self.text, token.position + 1, f"{reason}, found {found}")

    def take(self, kind: str, text: str | None = None) -> bool:
        t = self.peek
        if t.kind == kind and (text is None or t.text == text):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, text: str, what: str) -> None:
        if not self.take(kind, text):
            raise self.fail(f"expected {what}")

    def parse(self) -> str:
        """The canonical rendering (see spark_condition)."""
        if self.peek.kind == "end":
            raise self.fail("expected a condition")
        rendered = self.disjunction()
        if self.peek.kind != "end":
            raise self.fail("expected AND, OR, an operator or the end")
        return rendered[1:-1] if rendered.startswith("(") and _enclosed(rendered) else rendered

    # Each method returns what it read, rendered: every operation in parentheses, so the
    # grouping Spark applies is the one this parser saw, whatever the precedence rules.

    def disjunction(self) -> str:
        out = self.conjunction()
        while self.take("keyword", "OR"):
            out = f"({out} OR {self.conjunction()})"
        return out

    def conjunction(self) -> str:
        out = self.negation()
        while self.take("keyword", "AND"):
            out = f"({out} AND {self.negation()})"
        return out

    def negation(self) -> str:
        if self.take("keyword", "NOT"):
            return f"(NOT {self.negation()})"
        return self.predicate()

    def predicate(self) -> str:
        left = self.additive()
        t = self.peek
        if t.kind == "op" and t.text in _COMPARISONS:
            self.i += 1
            return f"({left} {t.text} {self.additive()})"
        if self.take("keyword", "IS"):
            negated = " NOT" if self.take("keyword", "NOT") else ""
            self.expect("keyword", "NULL", "NULL after IS [NOT] (IS TRUE/FALSE differ on null between the dialects)")
            return f"({left} IS{negated} NULL)"
        negated = " NOT" if self.take("keyword", "NOT") else ""
        if self.take("keyword", "IN"):
            self.expect("op", "(", "'(' after IN")
            values = [self.additive()]
            while self.take("op", ","):
                values.append(self.additive())
            self.expect("op", ")", "',' or ')' in the IN list")
            return f"({left}{negated} IN ({', '.join(values)}))"
        if self.take("keyword", "BETWEEN"):
            low = self.additive()
            self.expect("keyword", "AND", "AND in BETWEEN ... AND ...")
            return f"({left}{negated} BETWEEN {low} AND {self.additive()})"
        if negated:
            raise self.fail("expected IN or BETWEEN after NOT")
        return left

    def additive(self) -> str:
        out = self.multiplicative()
        while self.peek.kind == "op" and self.peek.text in "+-":
            op = self.peek.text
            self.i += 1
            out = f"({out} {op} {self.multiplicative()})"
        return out

    def multiplicative(self) -> str:
        out = self.unary()
        while self.peek.kind == "op" and self.peek.text in ("*", "/", "%"):
            op = self.peek.text
            self.i += 1
            out = f"({out} {op} {self.unary()})"
        return out

    def unary(self) -> str:
        for sign in "-+":
            if self.take("op", sign):
                return f"({sign}{self.unary()})"  # never "--": that would start a comment
        return self.primary()

    def primary(self) -> str:
        t = self.peek
        if t.kind in ("number", "string") or (t.kind == "keyword" and t.text in ("TRUE", "FALSE", "NULL")):
            self.i += 1
            return t.text
        if t.kind in ("word", "quoted"):
            self.i += 1
            if self.peek.kind == "op" and self.peek.text == "(":
                raise self.fail(f"functions are not supported (they differ between the dialects): {t.text}",
                                self.peek)
            name = t.text.strip("`") if t.kind == "quoted" else t.text
            self.columns.append(name)
            return t.text if t.kind == "word" else f"`{name}`"
        if self.take("op", "("):
            inner = self.disjunction()
            self.expect("op", ")", "')'")
            return inner if inner.startswith("(") and _enclosed(inner) else f"({inner})"
        raise self.fail("expected a column, a literal or '('")


def _enclosed(rendered: str) -> bool:
    """Whether the parentheses opening `rendered` close at its end (not `(a) AND (b)`).
    Only parentheses outside strings and backquoted names count."""
    depth, quote = 0, ""
    for i, char in enumerate(rendered):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i == len(rendered) - 1
    return False


def spark_condition(text: str) -> str:
    """The condition as the exported Spark job receives it: this parser's reading, rendered
    again with every operation in parentheses, keywords in capitals, single spaces and no
    comment, so Spark evaluates exactly what goldstream parsed (never the raw text, where
    Spark's lexer could see a comment or a call goldstream did not). ConditionError for
    anything outside the shared subset. The one place the export renders conditions, so
    another parser can replace this one behind the same signature."""
    return _Parser(text).parse()


@dataclass(frozen=True)
class Condition:
    """A checked condition: its text, and the Silver columns it reads."""

    text: str
    columns: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Raise ConditionError (with the position) unless `text` is in the shared subset."""
        parser = _Parser(text)
        parser.parse()
        return cls(text, tuple(dict.fromkeys(parser.columns)))

    def expr(self) -> pl.Expr:
        """The condition as a Polars expression (null where SQL gives null)."""
        return pl.sql_expr(self.text)

    def result_type(self, schema: dict[str, pl.DataType]) -> pl.DataType:
        """Its type over rows of `schema` (which must hold its columns); a PolarsError if
        it cannot be evaluated there (evaluated on no rows: type checks happen only then)."""
        return pl.DataFrame(schema=schema).select(self.expr().alias("c")).schema["c"]
