"""Builders for the robustness tests: Silver histories, configs, expected Gold.

Every situation is built with real Delta operations on real tables; the expected Gold
comes from the brute-force oracle (`reference.py`) over the table's own commit log, so
"Gold is complete" means "equals what a clean replay of that history must produce".
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable, write_deltalake

from goldstream.demo.synth import synth_commit_frames
from helpers import QUERIES, ROOT, goldstream, read_gold, toml_value
from reference import read_delta_commits, reference_gold_frame

EXAMPLE = ROOT / "config.example.toml"


# -- Silver ------------------------------------------------------------------------------


def frames(n: int = 16, rows: int = 100, seed: int = 5) -> list[pl.DataFrame]:
    """One synthetic Silver frame per commit, a minute of event time each, so that both
    seed queries (the sliding one has a 6-minute delay) close windows within the history."""
    return list(synth_commit_frames(n, rows, seed, commit_interval_s=60))


def write_commits(table: Path, data: list[pl.DataFrame], **create: Any) -> None:
    """One Delta append per frame; `create` (configuration, partition_by) applies to the
    first write, the one that creates the table."""
    for f in data:
        kw = create if not (table / "_delta_log").exists() else {}
        write_deltalake(str(table), f.to_arrow(), mode="append", **kw)


def latest_version(table: Path) -> int:
    return DeltaTable(str(table)).version()


def data_file_of(table: Path, version: int) -> Path:
    """The (first) data file a commit added, from the commit's own log entry."""
    for line in (table / "_delta_log" / f"{version:020d}.json").read_text().splitlines():
        action = json.loads(line)
        if "add" in action:
            return table / action["add"]["path"]
    raise AssertionError(f"version {version} of {table} adds no file")


# -- config ------------------------------------------------------------------------------


def dump_toml(doc: dict[str, Any]) -> str:
    """Just enough TOML for goldstream configs: scalars, tables, arrays of tables."""
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, (dict, list))
             or (isinstance(v, list) and not all(isinstance(x, dict) for x in v))]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {toml_value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                lines += ["", f"[[{k}]]"] + [f"{kk} = {toml_value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


def example_doc() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text())


def write_config(path: Path, source: dict[str, Any] | None = None, queries: dict[str, dict[str, Any]] | None = None,
                 only: tuple[str, ...] = QUERIES, doc: dict[str, Any] | None = None) -> Path:
    """The example config with [source] fields and per-query fields merged in."""
    doc = doc or example_doc()
    doc["source"] = {**doc["source"], **(source or {})}
    doc["queries"] = [{**q, **(queries or {}).get(q["name"], {})} for q in doc["queries"] if q["name"] in only]
    path.write_text(dump_toml(doc))
    return path


def query_dicts(config: Path = EXAMPLE) -> dict[str, dict[str, Any]]:
    from goldstream.config import load_settings

    return {q.name: q.model_dump(mode="json", exclude_none=True) for q in load_settings(config).queries}


# -- running and checking ------------------------------------------------------------------


def cli(config: Path, silver: Path | str, gold: Path, *args: str, command: str = "replay",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return goldstream(command, "--config", str(config), "--silver", str(silver), "--gold-root", str(gold),
                      *args, env=env, check=False)


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """The --json summary line of a replay, by query."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["query"]: r for r in json.loads(proc.stdout.splitlines()[-1])["summary"]}


def gold_version(gold: Path, query: str, app_id: str | None = None) -> int | None:
    """Silver version Gold records as processed (None: no offsets, or no table)."""
    if not (gold / query / "_delta_log").exists():
        return None
    return DeltaTable(str(gold / query)).transaction_version(app_id or f"goldstream-{query}")


_ORACLE_CACHE: dict[tuple[Any, ...], pl.DataFrame] = {}


def expected_gold(commits: list[pl.DataFrame | None], query: str, flush: bool = False,
                  config: Path = EXAMPLE) -> pl.DataFrame:
    """The oracle's Gold, memoized on the history's content (many tests share histories)."""
    key = (query, flush, str(config), config.stat().st_mtime_ns,
           tuple(None if c is None else (c.height, tuple(c.columns), int(c.hash_rows().sum())) for c in commits))
    if key not in _ORACLE_CACHE:
        _ORACLE_CACHE[key] = reference_gold_frame(commits, query_dicts(config)[query], flush=flush)
    return _ORACLE_CACHE[key]


def assert_gold_is_prefix(gold: Path, table: Path, below: int, skip_change_commits: bool = False,
                          commits: list[pl.DataFrame | None] | None = None) -> None:
    """After a failed run: nothing at or after `below` was committed, and what was
    committed is exactly right for the versions Gold says it processed."""
    from gold_compare import assert_gold_equal

    if commits is None:
        commits = read_delta_commits(str(table), skip_change_commits=skip_change_commits)
    for q in QUERIES:
        through = gold_version(gold, q)
        assert through is None or through < below, f"{q}: Gold recorded version {through} >= {below}"
        if through is not None:
            assert_gold_equal(read_gold(gold / q), expected_gold(commits[: through + 1], q))
        elif (gold / q / "_delta_log").exists():
            assert read_gold(gold / q).height == 0


def assert_gold_complete(gold: Path, table: Path, skip_change_commits: bool = False,
                         commits: list[pl.DataFrame | None] | None = None, config: Path = EXAMPLE,
                         queries: tuple[str, ...] = QUERIES) -> None:
    """Gold equals what a clean replay of the whole history produces."""
    from gold_compare import assert_gold_equal

    if commits is None:
        commits = read_delta_commits(str(table), skip_change_commits=skip_change_commits)
    for q in queries:
        expected = expected_gold(commits, q, config=config)
        assert expected.height > 0, f"{q}: the test history closes no window"
        assert_gold_equal(read_gold(gold / q), expected)


def pipeline(config: Path, silver: Path | str, gold: Path, from_version: int | None = None) -> Any:
    """An in-process Pipeline on the same config the CLI would load (for Pipeline internals)."""
    from goldstream.config import load_settings, with_overrides
    from goldstream.runner import Pipeline

    return Pipeline(with_overrides(load_settings(config), silver=str(silver), gold_root=str(gold)),
                    from_version=from_version)


def replay(config: Path, silver: Path | str, gold: Path, to_version: int | None = None, **source: Any) -> Any:
    """An in-process replay (the CLI's code path, without its start-up cost); `source`
    overrides [source] fields the way GOLDSTREAM_SOURCE__* would."""
    p = pipeline(config, silver, gold)
    if source:
        s = p.settings
        p = _pipeline_from(s.model_copy(update={"source": s.source.model_copy(update=source)}))
    p.start()
    p.replay(to_version=to_version)
    return p


def _pipeline_from(settings: Any) -> Any:
    from goldstream.runner import Pipeline

    return Pipeline(settings)


def replay_error(config: Path, silver: Path | str, gold: Path) -> Any:
    """Run an in-process replay that must fail; return the GoldstreamError."""
    from goldstream.errors import GoldstreamError

    p = pipeline(config, silver, gold)
    try:
        p.start()
        p.replay()
    except GoldstreamError as err:
        return err
    raise AssertionError("the replay did not fail")
