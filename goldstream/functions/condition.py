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
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
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
        if m is None or m.end() == pos:
            at = len(text) - len(text[pos:].lstrip())
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

    def parse(self) -> None:
        if self.peek.kind == "end":
            raise self.fail("expected a condition")
        self.disjunction()
        if self.peek.kind != "end":
            raise self.fail("expected AND, OR, an operator or the end")

    def disjunction(self) -> None:
        self.conjunction()
        while self.take("keyword", "OR"):
            self.conjunction()

    def conjunction(self) -> None:
        self.negation()
        while self.take("keyword", "AND"):
            self.negation()

    def negation(self) -> None:
        if self.take("keyword", "NOT"):
            self.negation()
        else:
            self.predicate()

    def predicate(self) -> None:
        self.additive()
        t = self.peek
        if t.kind == "op" and t.text in _COMPARISONS:
            self.i += 1
            self.additive()
        elif self.take("keyword", "IS"):
            self.take("keyword", "NOT")
            self.expect("keyword", "NULL", "NULL after IS [NOT] (IS TRUE/FALSE differ on null between the dialects)")
        else:
            negated = self.take("keyword", "NOT")
            if self.take("keyword", "IN"):
                self.expect("op", "(", "'(' after IN")
                self.additive()
                while self.take("op", ","):
                    self.additive()
                self.expect("op", ")", "',' or ')' in the IN list")
            elif self.take("keyword", "BETWEEN"):
                self.additive()
                self.expect("keyword", "AND", "AND in BETWEEN ... AND ...")
                self.additive()
            elif negated:
                raise self.fail("expected IN or BETWEEN after NOT")

    def additive(self) -> None:
        self.multiplicative()
        while self.peek.kind == "op" and self.peek.text in "+-":
            self.i += 1
            self.multiplicative()

    def multiplicative(self) -> None:
        self.unary()
        while self.peek.kind == "op" and self.peek.text in ("*", "/", "%"):
            self.i += 1
            self.unary()

    def unary(self) -> None:
        if self.take("op", "-") or self.take("op", "+"):
            self.unary()
        else:
            self.primary()

    def primary(self) -> None:
        t = self.peek
        if t.kind in ("number", "string") or (t.kind == "keyword" and t.text in ("TRUE", "FALSE", "NULL")):
            self.i += 1
        elif t.kind in ("word", "quoted"):
            self.i += 1
            if self.peek.kind == "op" and self.peek.text == "(":
                raise self.fail(f"functions are not supported (they differ between the dialects): {t.text}",
                                self.peek)
            self.columns.append(t.text.strip("`"))
        elif self.take("op", "("):
            self.disjunction()
            self.expect("op", ")", "')'")
        else:
            raise self.fail("expected a column, a literal or '('")


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
