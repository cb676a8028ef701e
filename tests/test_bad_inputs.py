"""Every bad input ends in a message, never a traceback, and writes nothing.

One table of bad inputs (config file contents, GOLDSTREAM_* variables, CLI flags), each run
as the real CLI in a subprocess against a small real Silver table and its Gold. For each:
the exit code, the key words of the message (what is wrong, where, what to do), no
`Traceback` on stdout or stderr, and the workspace unchanged (no table created or touched;
Gold, Silver and every other file exactly as before). `validate-config` is used where it
proves the point; `replay`, `run`, `status` and `show` where the refusal must come at start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from silver_cases import frames, replay
from testsupport.config import QUERIES, seed_queries, write_config
from testsupport.process import cli_env, goldstream_argv
from testsupport.silver import append_commits
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


class Workspace:
    """A temporary directory holding a copy of the small Silver and its Gold, the config
    files written by a case, and whatever a wrong path might create (the CLI runs here)."""

    def __init__(self, root: Path, template: Path) -> None:
        self.root = root
        shutil.copytree(template, root, symlinks=True, dirs_exist_ok=True)
        self.silver, self.gold = root / "silver", root / "gold"

    def config(self, queries: list[dict[str, Any]] | None = None, text: Callable[[str], str] | None = None,
               silver: str | None = None, gold_root: str | None = None, **source: Any) -> str:
        """The seed config on this workspace's tables; `queries` replaces the seed queries,
        `text` edits the TOML text (for what a dict cannot express), `source` sets [source] fields."""
        path = self.root / "bad.toml"
        write_config(path, self.silver if silver is None else silver, self.gold if gold_root is None else gold_root,
                     queries, **source)
        if text is not None:
            path.write_text(text(path.read_text()))
        return str(path)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every file and directory under the workspace (but the configs): size and mtime."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if p.suffix != ".toml":
                    st = p.lstat()
                    out[str(p.relative_to(self.root))] = (st.st_size, st.st_mtime_ns)
        return out


@dataclass(frozen=True)
class Bad:
    """One bad input: how to build the command line (and environment) in a workspace,
    the exit code, and the words its message must hold."""

    build: Callable[[Workspace], tuple[list[str], dict[str, str]]]
    words: tuple[str, ...]
    code: int = 2
    hidden: tuple[str, ...] = field(default=())  # must appear nowhere in the output


def validate(**config: Any) -> Callable[[Workspace], tuple[list[str], dict[str, str]]]:
    return lambda ws: (["validate-config", ws.config(**_resolve(ws, config))], {})


def command(cmd: str, *flags: str, env: dict[str, str] | None = None,
            **config: Any) -> Callable[[Workspace], tuple[list[str], dict[str, str]]]:
    """`goldstream <cmd> --config ... <flags>`; `{silver}`, `{gold}` and `{root}` in flags,
    env values and config strings are this workspace's paths."""
    def build(ws: Workspace) -> tuple[list[str], dict[str, str]]:
        extra = ["--http-port", "0"] if cmd == "run" and not any(f == "--http-port" for f in flags) else []
        return ([cmd, "--config", ws.config(**_resolve(ws, config)), *(_fill(ws, f) for f in flags), *extra],
                {k: _fill(ws, v) for k, v in (env or {}).items()})
    return build


def env_validate(**env: str) -> Callable[[Workspace], tuple[list[str], dict[str, str]]]:
    return lambda ws: (["validate-config", ws.config()], {k: _fill(ws, v) for k, v in env.items()})


def _fill(ws: Workspace, value: str) -> str:
    return value.format(silver=ws.silver, gold=ws.gold, root=ws.root)


def _resolve(ws: Workspace, value: Any) -> Any:
    """Config values with {silver}/{gold}/{root} placeholders filled in (recursively)."""
    if isinstance(value, str):
        return _fill(ws, value)
    if isinstance(value, list):
        return [_resolve(ws, v) for v in value]
    if isinstance(value, dict):
        return {k: (v if callable(v) else _resolve(ws, v)) for k, v in value.items()}
    return value


def stats(**fields: Any) -> dict[str, Any]:
    """The seed country_stats query with `fields` replaced."""
    return {**seed_queries()["country_stats"], **fields}


def anomalies(**fields: Any) -> dict[str, Any]:
    return {**seed_queries()["country_anomalies"], **fields}


def with_aggregates(*aggs: dict[str, Any]) -> dict[str, Any]:
    return stats(aggregates=[{"name": "flight_count", "fn": "count"}, *aggs])


SAME_TABLE = ("same table", "country_stats", "Fix")
LONG = "q" * 300

CASES: dict[str, Bad] = {
    # -- one table, two roles (an alias of the same path, or one table inside another) ----
    "gold_alias_dot": Bad(validate(queries=[stats(), stats(name="copy", gold_path="{gold}/./country_stats")]),
                          (*SAME_TABLE, "'copy'")),
    "gold_alias_dot_replay": Bad(command("replay", queries=[stats(), stats(name="copy",
                                                                           gold_path="{gold}/./country_stats")]),
                                 (*SAME_TABLE, "'copy'")),
    "gold_alias_double_slash": Bad(validate(queries=[stats(), stats(name="copy", gold_path="{gold}//country_stats")]),
                                   SAME_TABLE),
    "gold_alias_trailing_slash": Bad(validate(queries=[stats(), stats(name="copy",
                                                                      gold_path="{gold}/country_stats//")]), SAME_TABLE),
    "gold_alias_dotdot": Bad(validate(queries=[stats(), stats(name="copy", gold_path="{gold}/x/../country_stats")]),
                             SAME_TABLE),
    "gold_alias_symlink": Bad(validate(queries=[stats(), stats(name="copy", gold_path="{root}/gold_link/country_stats")]),
                              SAME_TABLE),
    "gold_alias_file_uri": Bad(validate(queries=[stats(), stats(name="copy", gold_path="file://{gold}/country_stats")]),
                               SAME_TABLE),
    "gold_alias_relative": Bad(validate(queries=[stats(), stats(name="copy", gold_path="gold/country_stats")]),
                               SAME_TABLE),
    "late_sink_is_silver": Bad(validate(queries=[stats(late_sink="{silver}/./")]),
                               ("late sink", "Silver", "same table", "country_stats")),
    "late_sink_is_silver_run": Bad(command("run", queries=[stats(late_sink="{silver}/./")]),
                                   ("late sink", "Silver", "same table")),
    "late_sink_is_other_gold": Bad(validate(queries=[stats(), anomalies(late_sink="{gold}/country_stats/")]),
                                   ("late sink", "country_anomalies", "Gold table", "country_stats", "same table")),
    "late_sink_inside_silver": Bad(validate(queries=[stats(late_sink="{silver}/late")]),
                                   ("late sink", "inside", "Silver")),
    "silver_inside_gold": Bad(validate(silver="{gold}/country_stats/sub"), ("Silver", "inside", "Gold table")),
    "gold_root_override_is_silver": Bad(command("replay", "--gold-root", "{silver}/."),
                                        ("Silver", "inside", "--silver/--gold-root")),
    "silver_override_is_gold": Bad(command("status", "--silver", "{gold}//country_stats/"),
                                   ("Silver", "Gold table", "same table")),
    "s3_alias": Bad(validate(silver="s3://bucket/silver", queries=[stats(late_sink="s3a://bucket//silver/")]),
                    ("late sink", "Silver", "same table", "s3://bucket/silver")),
    "s3_nested": Bad(validate(silver="s3://bucket/data/country_stats/x", gold_root="s3://bucket/data/"),
                     ("Silver", "inside", "Gold table")),
    # -- only goldstream's own files: no table in someone's folder, no copy inside another --
    "gold_path_is_foreign_folder": Bad(command("replay", queries=[stats(gold_path="{root}/reports")]),
                                       ("Gold table of query 'country_stats'", "reports", "2023", "no Delta table")),
    "gold_path_is_foreign_folder_run": Bad(command("run", queries=[stats(gold_path="{root}/reports/")]),
                                           ("Gold table of query 'country_stats'", "no Delta table")),
    "gold_path_is_a_file": Bad(command("replay", queries=[stats(gold_path="{root}/reports/2023/q4.csv")]),
                               ("Gold table of query 'country_stats'", "is a file")),
    "gold_root_query_folder_is_foreign": Bad(command("replay", "--gold-root", "{root}/other"),
                                             ("Gold table of query 'country_stats'", "notes.txt", "no Delta table")),
    "late_sink_is_foreign_folder": Bad(command("replay", queries=[stats(late_sink="{root}/reports")]),
                                       ("late sink of query 'country_stats'", "no Delta table")),
    "second_query_foreign_writes_nothing": Bad(command("replay", queries=[stats(name="fresh"), anomalies(
        gold_path="{root}/reports")]), ("Gold table of query 'country_anomalies'", "no Delta table")),
    "copy_gold_inside_silver": Bad(command("copy-gold", "--query", "country_stats", "--to", "{silver}/copy"),
                                   ("--to", "inside", "Silver")),
    "copy_gold_inside_old_gold": Bad(command("copy-gold", "--query", "country_stats", "--to",
                                             "{gold}/country_stats/copy"), ("--to", "inside", "country_stats")),
    "copy_gold_around_silver": Bad(command("copy-gold", "--query", "country_stats", "--to", "{root}"),
                                   ("--to", "inside", "Silver")),
    "copy_gold_is_other_query": Bad(command("copy-gold", "--query", "country_stats", "--to",
                                            "{gold}//country_anomalies/"), ("--to", "country_anomalies", "same table")),
    "copy_gold_is_late_table": Bad(command("copy-gold", "--query", "country_stats", "--to", "{root}/late",
                                           queries=[stats(late_sink="{root}/late"), anomalies()]),
                                   ("--to", "late sink", "same table")),
    "copy_gold_foreign_folder": Bad(command("copy-gold", "--query", "country_stats", "--to", "{root}/reports"),
                                    ("copy-gold --to", "no Delta table", "2023")),
    # -- empty or blank values ------------------------------------------------------------
    "empty_gold_root_env": Bad(env_validate(GOLDSTREAM_SINK__GOLD_ROOT=""),
                               ("sink.gold_root", "empty", "GOLDSTREAM_SINK__GOLD_ROOT")),
    "empty_gold_root_env_replay": Bad(command("replay", env={"GOLDSTREAM_SINK__GOLD_ROOT": ""}),
                                      ("sink.gold_root", "empty", "GOLDSTREAM_SINK__GOLD_ROOT")),
    "empty_silver_env": Bad(env_validate(GOLDSTREAM_SOURCE__PATH=""), ("source.path", "empty")),
    "blank_silver_env": Bad(env_validate(GOLDSTREAM_SOURCE__PATH="  "), ("source.path", "empty")),
    "padded_silver_path": Bad(validate(silver=" {silver}"), ("source.path", "whitespace")),
    "empty_gold_path": Bad(validate(queries=[stats(gold_path="")]), ("queries.0.gold_path", "empty")),
    "blank_late_sink": Bad(validate(queries=[stats(late_sink=" ")]), ("queries.0.late_sink", "empty")),
    "empty_event_time": Bad(validate(queries=[stats(event_time="")]), ("queries.0.event_time", "empty")),
    "empty_key": Bad(validate(queries=[stats(keys=[""])]), ("queries.0.keys.0", "empty")),
    "empty_app_id": Bad(validate(queries=[stats(app_id=" ")]), ("queries.0.app_id", "empty")),
    "empty_silver_flag": Bad(command("replay", "--silver", ""), ("source.path", "empty", "--silver")),
    "blank_gold_root_flag": Bad(command("status", "--gold-root", "  "), ("sink.gold_root", "empty")),
    "empty_endpoint_env": Bad(env_validate(GOLDSTREAM_STORAGE__ENDPOINT=""), ("storage.endpoint", "empty")),
    "blank_http_token": Bad(command("run", env={"GOLDSTREAM_HTTP_TOKEN": "   "}),
                            ("GOLDSTREAM_HTTP_TOKEN", "blank", "/api/*")),
    "blank_http_token_validate": Bad(env_validate(GOLDSTREAM_HTTP_TOKEN=" "), ("GOLDSTREAM_HTTP_TOKEN", "blank")),
    "empty_http_token": Bad(command("run", env={"GOLDSTREAM_HTTP_TOKEN": ""}), ("GOLDSTREAM_HTTP_TOKEN", "blank")),
    "tab_newline_http_token": Bad(command("run", "--http-port", "0", env={"GOLDSTREAM_HTTP_TOKEN": "\t\n"}),
                                  ("GOLDSTREAM_HTTP_TOKEN", "blank")),
    # -- names: one identifier rule, no collisions ----------------------------------------
    "duplicate_keys": Bad(validate(queries=[stats(keys=["origin_country", "origin_country"])]),
                          ("queries.0", "'origin_country'", "twice")),
    "duplicate_keys_replay": Bad(command("replay", queries=[stats(keys=["origin_country", "origin_country"])]),
                                 ("'origin_country'", "twice")),
    "empty_aggregate_name": Bad(validate(queries=[with_aggregates({"name": "", "fn": "count"})]),
                                ("queries.0.aggregates.1.name", "empty")),
    "aggregate_name_with_space": Bad(validate(queries=[with_aggregates({"name": "flight count", "fn": "count"})]),
                                     ("queries.0.aggregates.1.name", "'flight count'", "letters, digits")),
    "aggregate_names_differ_in_case": Bad(validate(queries=[with_aggregates({"name": "Flight_Count", "fn": "count"})]),
                                          ("'Flight_Count'", "'flight_count'", "case")),
    "aggregate_named_window_start": Bad(validate(queries=[with_aggregates({"name": "window_start", "fn": "count"})]),
                                        ("'window_start'", "twice")),
    "aggregate_named_like_key": Bad(validate(queries=[with_aggregates({"name": "origin_country", "fn": "count"})]),
                                    ("'origin_country'", "twice")),
    "aggregate_name_reserved": Bad(validate(queries=[with_aggregates({"name": "__version", "fn": "count"})]),
                                   ("'__version'", "reserved")),
    "aggregate_name_too_long": Bad(validate(queries=[with_aggregates({"name": LONG, "fn": "count"})]),
                                   ("queries.0.aggregates.1.name", "300 characters", "at most 128")),
    "query_name_too_long": Bad(command("replay", queries=[stats(name=LONG)]),
                               ("queries.0.name", "300 characters", "at most 128")),
    "query_name_dotdot": Bad(validate(queries=[stats(name="..")]), ("queries.0.name", "'..'")),
    "query_name_slash": Bad(validate(queries=[stats(name="a/b")]), ("queries.0.name", "'a/b'")),
    "query_name_empty": Bad(validate(queries=[stats(name="")]), ("queries.0.name", "empty")),
    "query_names_differ_in_case": Bad(validate(queries=[stats(), anomalies(name="Country_Stats")]),
                                      ("'Country_Stats'", "'country_stats'", "case")),
    "key_with_bad_character": Bad(validate(queries=[stats(keys=["origin;country"])]), ("queries.0.keys.0",)),
    "duplicate_toml_key": Bad(validate(text=lambda t: t.replace('name = "country_stats"',
                                                               'name = "country_stats"\nname = "other"', 1)),
                              ("cannot parse configuration", "line")),
    # -- numbers and versions -------------------------------------------------------------
    "starting_version_float": Bad(validate(starting_version=1.5), ("source.starting_version", "1.5", "version number")),
    "starting_version_bool": Bad(validate(starting_version=True), ("source.starting_version", "version number")),
    "starting_version_float_string": Bad(validate(starting_version="1.5"), ("source.starting_version", "'1.5'")),
    "http_port_flag_too_large": Bad(command("run", "--http-port", "99999"), ("--http-port", "65535")),
    "http_port_flag_negative": Bad(command("run", "--http-port", "-1"), ("--http-port", "greater than or equal to 0")),
    "http_port_env_too_large": Bad(env_validate(GOLDSTREAM_SERVER__HTTP_PORT="70000"),
                                   ("server.http_port", "65535", "GOLDSTREAM_SERVER__HTTP_PORT")),
    "huge_count": Bad(validate(max_commits_per_batch=10**25), ("source.max_commits_per_batch", "less than")),
    "negative_count": Bad(validate(max_files_per_batch=-5), ("source.max_files_per_batch", "greater than")),
    "huge_duration": Bad(validate(poll_interval="99999999999999999999d"), ("source.poll_interval", "too large")),
    "infinite_duration": Bad(validate(poll_interval=float("inf")), ("source.poll_interval",)),
    "nan_duration": Bad(validate(text=lambda t: t.replace("[source]", "[source]\npoll_interval = nan", 1)),
                        ("source.poll_interval",)),
    "long_poll_interval": Bad(validate(poll_interval="400000d"), ("source.poll_interval", "at most")),
    "nan_stale_factor": Bad(validate(text=lambda t: t.replace("[server]", "[server]\nhealth_stale_factor = nan", 1)),
                            ("server.health_stale_factor",)),
    "replay_beyond_latest": Bad(command("replay", "--to-version", "999"),
                                ("--to-version 999", "latest version", "3", "Silver")),
    "replay_from_beyond_latest": Bad(command("replay", "--from-version", "999",
                                             queries=[stats(name="fresh")]), ("999", "latest")),
    "show_unknown_query": Bad(command("show", "--query", "nope"), ("'nope'", "country_stats", "country_anomalies")),
    "status_unknown_query": Bad(command("status", "--query", "nope"), ("'nope'", "country_stats", "country_anomalies")),
    # -- secrets are never echoed ---------------------------------------------------------
    "unknown_storage_secret_env": Bad(env_validate(GOLDSTREAM_STORAGE__SECRET_ACCESS_KEY=SECRET),
                                      ("storage.secret_access_key", "unknown field"), hidden=(SECRET,)),
    "unknown_storage_secret_replay": Bad(command("replay", env={"GOLDSTREAM_STORAGE__SESSION_TOKEN": SECRET}),
                                         ("storage.session_token", "unknown field"), hidden=(SECRET,)),
    "secret_in_source_section": Bad(validate(aws_secret_access_key=SECRET),
                                    ("source.aws_secret_access_key", "unknown field"), hidden=(SECRET,)),
    "bad_storage_value": Bad(env_validate(GOLDSTREAM_STORAGE__ALLOW_HTTP=SECRET), ("storage.allow_http",),
                             hidden=(SECRET,)),
    # -- files ----------------------------------------------------------------------------
    "missing_config": Bad(lambda ws: (["validate-config", str(ws.root / "nope.toml")], {}),
                          ("nope.toml", "does not exist")),
    "config_is_a_directory": Bad(lambda ws: (["replay", "--config", str(ws.root)], {}), ("configuration",)),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Silver (4 commits) and its Gold, replayed once; each case gets a copy."""
    root = tmp_path_factory.mktemp("template")
    silver, gold = root / "silver", root / "gold"
    append_commits(silver, frames(4, rows=50))
    replay(write_config(root / "seed.toml", silver, gold), silver, gold)
    (root / "seed.toml").unlink()
    (root / "gold_link").symlink_to("gold")
    for foreign in ("reports/2023/q4.csv", "other/country_stats/notes.txt"):  # someone else's files
        (root / foreign).parent.mkdir(parents=True, exist_ok=True)
        (root / foreign).write_text("not goldstream's")
    return root


def test_cases_cover_enough_inputs() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_with_a_message(name: str, template: Path, tmp_path: Path) -> None:
    case = CASES[name]
    ws = Workspace(tmp_path / "ws", template)
    args, env = case.build(ws)
    before, at_root = ws.snapshot(), {q: Path("/", q).exists() for q in QUERIES}
    proc = subprocess.run(goldstream_argv(*args), capture_output=True, text=True,
                          env=cli_env(**env), cwd=ws.root, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == case.code, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    for word in case.words:
        assert word in out, f"{word!r} missing from:\n{out[-3000:]}"
    for secret in case.hidden:
        assert secret not in out, out[-3000:]
    assert ws.snapshot() == before, "the workspace changed"
    assert {q: Path("/", q).exists() for q in QUERIES} == at_root, "a table was created at the filesystem root"
