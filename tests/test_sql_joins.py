"""Stream-static joins: each batch joins the dimension's latest Delta version, the version
used is recorded in Gold's offsets (a restart rebuilds open windows joining it), and a
dimension that disappears, changes its schema or grows too large stops the query with a
message saying so (real subprocesses, real Delta tables)."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path

import polars as pl
from deltalake import DeltaTable, write_deltalake

import pytest

from goldstream.errors import SourceError
from goldstream.sql.dimensions import Dimensions
from gold_compare import assert_gold_equal
from testsupport import ROOT
from testsupport.gold import read_gold
from testsupport.process import goldstream

CASE = ROOT / "tests" / "conformance" / "opensky_paris_30min_sql"
SILVER = ROOT / "tests" / "conformance" / "opensky_paris_30min" / "silver"


def maker_minutes_config(tmp_path: Path, dims: Path, extra: str = "") -> Path:
    sql = next(q for q in tomllib.loads((CASE / "queries.toml").read_text())["queries"]
               if q["name"] == "maker_minutes")
    config = tmp_path / "join.toml"
    # [tables] relative to the configuration file
    rel = Path(os.path.relpath(dims, tmp_path))
    config.write_text(f'[source]\n{extra}\n[tables]\naircraft = "{rel}"\n\n[[queries]]\n'
                      + "\n".join(f"{k} = {json.dumps(v)}" for k, v in sql.items()) + "\n")
    return config


def replay(config: Path, gold: Path, *args: str, check: bool = True):  # noqa: ANN201
    return goldstream("replay", "--config", str(config), "--silver", str(SILVER), "--gold-root", str(gold),
                      *args, check=check)


def recorded(gold: Path) -> int | None:
    return DeltaTable(str(gold / "maker_minutes")).transaction_version("goldstream-maker_minutes.dim.aircraft")


def test_join_across_a_restart_records_the_dimension_version(tmp_path: Path) -> None:
    dims = tmp_path / "dims" / "aircraft"
    shutil.copytree(CASE / "dims" / "aircraft", dims)
    config, gold = maker_minutes_config(tmp_path, dims), tmp_path / "gold"
    replay(config, gold, "--to-version", "113")
    assert recorded(gold) == 0
    # a new version of the dimension with the same rows: Gold is still Spark's, and the
    # batches after the restart record the version they joined
    write_deltalake(str(dims), pl.read_delta(str(dims)).to_arrow(), mode="overwrite")
    replay(config, gold)
    assert recorded(gold) == 1
    assert_gold_equal(read_gold(gold / "maker_minutes"), pl.read_parquet(CASE / "expected" / "maker_minutes.parquet"))


def test_a_dimension_that_changes_schema_or_disappears_stops_the_query(tmp_path: Path) -> None:
    dims = tmp_path / "dims" / "aircraft"
    shutil.copytree(CASE / "dims" / "aircraft", dims)
    config, gold = maker_minutes_config(tmp_path, dims), tmp_path / "gold"
    replay(config, gold, "--to-version", "50")
    changed = pl.read_delta(str(dims)).with_columns(pl.col("seats").cast(pl.Int64))
    write_deltalake(str(dims), changed.to_arrow(), mode="overwrite", schema_mode="overwrite")
    proc = replay(config, gold, check=False)
    # the restart reads the new schema at start: Gold's max_seats is int32, the dimension's seats now bigint
    assert proc.returncode == 2
    assert "max_seats" in proc.stderr and "Traceback" not in proc.stderr

    shutil.rmtree(dims)
    proc = replay(config, gold, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "dimension table 'aircraft'" in proc.stderr and "cannot be read" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_dimension_larger_than_the_bound_stops_the_query(tmp_path: Path) -> None:
    config = maker_minutes_config(tmp_path, CASE / "dims" / "aircraft", extra="max_dimension_rows = 100")
    proc = replay(config, tmp_path / "gold", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "dimension table 'aircraft' has 241 rows at version 0, more than the 100" in proc.stderr
    assert "max_dimension_rows" in proc.stderr


def test_a_dimension_changing_schema_while_running_stops_at_that_version(tmp_path: Path) -> None:
    """Within one process: a batch finds a new version with another schema and stops; the
    same version is read once however many batches join it."""
    dims = tmp_path / "aircraft"
    shutil.copytree(CASE / "dims" / "aircraft", dims)
    tables = Dimensions({"aircraft": str(dims)})
    first = tables.frame("aircraft")
    assert tables.frame("aircraft") is first  # one read per version
    write_deltalake(str(dims), first.with_columns(pl.col("seats").cast(pl.Int64)).to_arrow(), mode="overwrite",
                    schema_mode="overwrite")
    with pytest.raises(SourceError, match="dimension table 'aircraft' changed its schema at version 1: it was "
                                          "icao24 String, manufacturer String, category String, seats Int32, it is "
                                          ".*seats Int64"):
        tables.frame("aircraft")


def test_explain_shows_the_plan_with_the_dimension_version_now(tmp_path: Path) -> None:
    dims = tmp_path / "dims" / "aircraft"
    shutil.copytree(CASE / "dims" / "aircraft", dims)
    write_deltalake(str(dims), pl.read_delta(str(dims)).to_arrow(), mode="overwrite")  # version 1
    config = maker_minutes_config(tmp_path, dims)
    out = goldstream("explain", "--config", str(config), "--silver", str(SILVER), "--query", "maker_minutes").stdout
    assert all(len(line) <= 100 for line in out.splitlines())
    flat = " ".join(out.split())
    assert "query maker_minutes (Spark SQL)" in flat
    assert "reads Silver" in flat and "on_ground (boolean)" in flat and "icao24 (string)" in flat
    assert "keeps rows where: silver.on_ground = FALSE (after the watermark" in flat
    assert f"joins INNER aircraft ({dims}, version 1 now, 241 rows) ON silver.icao24 = aircraft.icao24" in flat
    assert "window: tumbling 1m on event_timestamp; watermark = max event time per Silver commit - 2m" in flat
    assert "keys: aircraft.manufacturer" in flat
    assert "AVG(s.altitude_meters * 3.28084): goldstream avg over column = silver.altitude_meters * 3.28084; " \
           "state: sum, n" in flat
    assert "max_seats int = MAX(a.seats)" in flat
    assert "climbing bigint = COALESCE(SUM(CASE WHEN s.vertical_rate > 0 THEN 1 ELSE 0 END), 0)" in flat
