"""Builders for the robustness tests: Silver histories, CLI and in-process runs, expected Gold.

Every situation is built with real Delta operations on real tables; the expected Gold
comes from the brute-force oracle (`reference.py`) over the table's own commit log, so
"Gold is complete" means "equals what a clean replay of that history must produce".
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import polars as pl

from goldstream.demo.synth import synth_commit_frames
from reference import read_delta_commits, reference_gold_frame
from testsupport.config import EXAMPLE_CONFIG as EXAMPLE
from testsupport.config import QUERIES
from testsupport.gold import read_gold, txn_version
from testsupport.process import goldstream


# -- Silver ------------------------------------------------------------------------------


def frames(n: int = 16, rows: int = 100, seed: int = 5) -> list[pl.DataFrame]:
    """One synthetic Silver frame per commit, a minute of event time each, so that both
    seed queries (the sliding one has a 6-minute delay) close windows within the history."""
    return list(synth_commit_frames(n, rows, seed, commit_interval_s=60))


def data_file_of(table: Path, version: int) -> Path:
    """The (first) data file a commit added, from the commit's own log entry."""
    for line in (table / "_delta_log" / f"{version:020d}.json").read_text().splitlines():
        action = json.loads(line)
        if "add" in action:
            return table / action["add"]["path"]
    raise AssertionError(f"version {version} of {table} adds no file")


# -- config ------------------------------------------------------------------------------


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
        through = txn_version(gold, q)
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
