"""`goldstream export spark` with hostile configuration text: nothing a config says runs.

Every string of the configuration that reaches the exported job (column names, event
time, application id, conditions, the config file's own name, the notes about them)
must arrive there as a Python literal made by one escaping function, never as comment,
docstring or code text; conditions reach Spark only as the condition parser's canonical
rendering, so text the parser would not read as Spark does (a `--` comment hiding the
rest, a function call) cannot pass. Each hostile value carries a payload that would
create a marker file if it ever ran: the job is exported by the real CLI, compiled, and
run with `--help` in a subprocess, and the marker must not appear.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from goldstream.export.literal import py_literal
from goldstream.sql.condition import ConditionError, spark_condition
from testsupport.config import seed_queries, seed_query_list, write_config
from testsupport.process import goldstream

MARKER = "PWNED_MARKER"
PAYLOAD = f"import pathlib; pathlib.Path({MARKER!r}).touch()"

# Ways out of a comment, a docstring or a string literal, each around the payload. Every
# value starts and ends with a letter (padded values are refused before the export).
BREAKOUTS = {
    "newline": "a\n{p}\n#b",
    "carriage_return": "a\r{p}\r#b",
    "crlf": "a\r\n{p}\r\n#b",
    "triple_double_quotes": 'a"""\n{p}\n"""b',
    "triple_single_quotes": "a'''\n{p}\n'''b",
    "backslash_newline": "a\\\n{p}\n#b",
    "trailing_backslash": "a\\\\\"\n{p}\n#b",
    "line_separator": "a\u2028{p}\u2028b",
    "paragraph_separator": "a\u2029{p}\u2029b",
    "next_line": "a\u0085{p}\u0085b",
    "form_feed_vertical_tab": "a\x0c\x0b\n{p}\nb",
    "sql_comment_backquote": "a` --\n{p}\n#`b",
    "ansi_and_bidi": "a\x1b[2J\u202e\n{p}\n\u202cb",
    "astral": "a\U0001f600\n{p}\n\U000e0041b",
}
HOSTILE = {name: text.format(p=PAYLOAD) for name, text in BREAKOUTS.items()}


def _no_backquote(text: str) -> str:
    return text.replace("`", "'")


def _no_quote(text: str) -> str:
    """A body for a SQL string literal of the shared subset (no quote, no backslash)."""
    return text.replace("'", '"').replace("\\", "/")


def hostile_queries(text: str) -> list[dict[str, Any]]:
    """The seed queries with `text` in every field that reaches the job as a string."""
    stats = seed_queries()["country_stats"]
    return seed_query_list(country_stats={
        "event_time": text,
        "app_id": text,
        "gold_path": "/tmp/gold-" + text.replace("/", "_"),  # goldstream's table: in GOLDSTREAM_TABLES and a note
        "filter": f"origin_country <> '{_no_quote(text)}' AND `{_no_backquote(text)}` IS NULL",
        "aggregates": [
            *stats["aggregates"],
            {"name": "distinct_hostile", "fn": "count_distinct", "column": text},  # a note (--approx-distinct)
            {"name": "max_hostile", "fn": "max", "column": text},
            {"name": "max_by_hostile", "fn": "max_by", "column": "altitude_meters", "by": text},  # a note
            {"name": "where_hostile", "fn": "count", "where": f"`{_no_backquote(text)}` > - -1 OR "
                                                                f"origin_country IN ('{_no_quote(text)}', 'x')"},
        ],
    })


def config_name(tmp_path: Path, text: str) -> Path:
    """A config file whose own name holds the hostile text (no '/', no NUL: a file name)."""
    return tmp_path / ("c" + text.replace("/", "_").replace("\x00", "_") + ".toml")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_literal_round_trips_and_is_one_line(name: str) -> None:
    text = HOSTILE[name]
    literal = py_literal({"k": [text, text + "\x00\ud800"]})
    assert "\n" not in literal and "\r" not in literal and all(c.isprintable() for c in literal)
    assert ast.literal_eval(literal) == {"k": [text, text + "\x00\ud800"]}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_config_text_never_runs_in_the_job(name: str, tmp_path: Path) -> None:
    text = HOSTILE[name]
    config = write_config(config_name(tmp_path, text), queries=hostile_queries(text))
    job = tmp_path / "job.py"
    export = goldstream("export", "spark", "--config", str(config), "--out", str(job), "--approx-distinct")
    assert all(line.isprintable() for line in export.stderr.splitlines()), "notes echo control characters"
    source = job.read_text()
    tree = ast.parse(source)  # compiles (ast.parse runs nothing)
    assert PAYLOAD not in _comments_and_docstrings(source, tree)
    proc = subprocess.run([sys.executable, str(job), "--help"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / MARKER).exists(), "the payload ran"
    assert "Notes for this configuration" in proc.stdout  # the notes are printed, from a literal
    queries = hostile_queries(text)[0]
    filters, exprs = _spark_sql(tree)
    assert filters == [spark_condition(queries["filter"])]
    where = spark_condition(queries["aggregates"][-1]["where"])
    assert f"count(*) FILTER (WHERE {where})" in exprs


def _comments_and_docstrings(source: str, tree: ast.Module) -> str:
    """Every comment and docstring of the job: config text must never be in them."""
    import io
    import tokenize

    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                if t.type == tokenize.COMMENT]
    docs = [ast.get_docstring(node) or "" for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))]
    return "\n".join(comments + docs)


def _spark_sql(tree: ast.Module) -> tuple[list[str], list[str]]:
    """The SQL text the job hands Spark: `.where(...)` conditions and `F.expr(...)` expressions."""
    filters, exprs = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if node.func.attr == "where":
                    filters.append(arg.value)
                elif node.func.attr == "expr":
                    exprs.append(arg.value)
    return filters, exprs


# Conditions that call functions outside the subset, or hold what Spark does not read as
# goldstream's parser does: refused before a job exists.
REFUSED_CONDITIONS = [
    "velocity_kmh > 0 --`\nOR java_method('java.lang.System', 'exit', 1) IS NULL",
    "velocity_kmh > 0 -- a\rOR reflect('java.lang.System', 'exit', 1) IS NULL",  # a lone CR ends a comment
    "java_method('java.lang.Math', 'abs', -1) = 1",
    "velocity_kmh > 0 /* unclosed",
    "velocity_kmh > 0; DROP TABLE x",
    "velocity_kmh > \u0661",  # an Arabic-Indic digit: not a number to Spark
]


@pytest.mark.parametrize("condition", REFUSED_CONDITIONS)
def test_conditions_the_parser_would_not_read_as_spark_are_refused(condition: str, tmp_path: Path) -> None:
    with pytest.raises(ConditionError):
        spark_condition(condition)
    config = write_config(tmp_path / "c.toml", queries=seed_query_list(country_stats={"filter": condition}))
    proc = goldstream("export", "spark", "--config", str(config), "--out", str(tmp_path / "job.py"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "filter" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "job.py").exists()


@pytest.mark.parametrize(("condition", "canonical"), [
    ("on_ground = false AND callsign IS NOT NULL", "on_ground = FALSE AND NOT callsign IS NULL"),
    ("a > - -1", "a > - -1"),
    ("NOT a BETWEEN 1 AND 2 OR b not in (1, 'x')", "NOT a BETWEEN 1 AND 2 OR NOT b IN (1, 'x')"),
    ("`a --b` * (2 + c) % 3 > 1e3", "`a --b` * (2 + c) % 3 > 1e3"),
    ("x is null", "x IS NULL"),
    # comments are read as Spark's lexer reads them, and never reach the job
    ("velocity_kmh > 0 -- `", "velocity_kmh > 0"),
    ("velocity_kmh > 0 --\nOR 1 = 1", "velocity_kmh > 0 OR 1 = 1"),
    ("velocity_kmh > 0 -- x\rOR 1 = 1", "velocity_kmh > 0 OR 1 = 1"),
    ("velocity_kmh > 0 /* `*/ OR 1 = 1", "velocity_kmh > 0 OR 1 = 1"),
    ("velocity_kmh>0--x", "velocity_kmh > 0"),
])
def test_canonical_rendering_is_explicit_and_stable(condition: str, canonical: str) -> None:
    assert spark_condition(condition) == canonical
    assert spark_condition(canonical) == canonical
