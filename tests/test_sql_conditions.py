"""Issue 23, finding 6: conditions keep exactly the rows Spark keeps (real subprocesses on a
real Silver table). Division or % by zero, integer overflow and invalid casts stop the query
in ANSI mode (Spark 4's default) naming the Silver version and the expression, and give NULL
with `ansi = false`; a comment ended by a lone carriage return hides nothing after it; a
string compared with a boolean is cast as Spark casts it; what Spark refuses is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from silver_cases import cli, frames, summary
from testsupport.config import seed_query_list, write_config
from testsupport.gold import read_gold
from testsupport.silver import append_commits


def _run(tmp_path: Path, changes: dict[str, Any]) -> tuple[Any, Path, list[pl.DataFrame]]:
    stats = {**seed_query_list()[0], **changes}
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    commits = frames(6)
    append_commits(silver, commits)
    proc = cli(write_config(tmp_path / "c.toml", queries=[stats]), silver, gold, "--json")
    return proc, gold, commits


@pytest.mark.parametrize(("condition", "what"), [
    ("altitude_meters / (velocity_kmh - velocity_kmh) > 1", "division by zero in `altitude_meters / (velocity_kmh - "
                                                            "velocity_kmh)`"),
    ("altitude_meters % 0 > 1", "division by zero in `altitude_meters % 0`"),
    ("CAST(altitude_meters AS INT) * 2147483647 > 0", "int overflow in `CAST(altitude_meters AS INT) * 2147483647`"),
    ("CAST(origin_country AS INT) > 0", "invalid cast to int (a value that is no int) in `CAST(origin_country AS INT)`"),
])
def test_ansi_errors_stop_the_query_naming_version_and_expression(tmp_path: Path, condition: str, what: str) -> None:
    proc, gold, _ = _run(tmp_path, {"filter": condition})
    assert proc.returncode == 2, proc.stderr
    assert f"query 'country_stats': {what} at Silver version 0" in proc.stderr
    assert "ansi = false" in proc.stderr and "Traceback" not in proc.stderr


def test_legacy_mode_gives_null_and_the_rows_are_filtered(tmp_path: Path) -> None:
    proc, gold, commits = _run(tmp_path, {"filter": "altitude_meters / 0 > 1 OR on_ground = 'TRUE'", "ansi": False})
    assert proc.returncode == 0, proc.stderr
    rows = pl.concat(commits)
    kept = rows.filter(pl.col("on_ground").fill_null(False))  # x / 0 is NULL: only the second term keeps rows
    assert summary(proc)["country_stats"]["rows_filtered"] == rows.height - kept.height > 0
    assert read_gold(gold / "country_stats")["airborne_count"].sum() == 0


def test_a_comment_ended_by_a_lone_carriage_return_hides_nothing_after_it(tmp_path: Path) -> None:
    proc, gold, commits = _run(tmp_path, {"filter": "on_ground = false -- airborne only\r OR on_ground = true"})
    assert proc.returncode == 0, proc.stderr
    rows = pl.concat(commits)
    assert summary(proc)["country_stats"]["rows_filtered"] == rows["on_ground"].null_count()


@pytest.mark.parametrize(("condition", "why"), [
    ("on_ground = 1", "`on_ground = 1` compares a boolean with a int, which Spark refuses"),
    ("event_timestamp > 0", "`event_timestamp > 0` compares a timestamp with a int, which Spark refuses"),
    ("altitude_meters < 1e309", "numeric literal 1e309 does not fit in the range of a double"),
    ("altitude_meters IN ('1', 1)", "mixes values of types int, string"),
    ("on_ground = 'maybe'", "'maybe' cannot be cast to boolean"),
])
def test_conditions_spark_refuses_stop_the_query_before_writing(tmp_path: Path, condition: str, why: str) -> None:
    proc, gold, _ = _run(tmp_path, {"filter": condition})
    assert proc.returncode == 2, proc.stderr
    assert why in proc.stderr and "Traceback" not in proc.stderr
    assert not gold.exists()
