"""Floats are reproducible (docs/semantics.md, "Floating-point results"): different batchings
of the same commits agree to 1e-12 relative; the same command on the same Silver writing
bit-identical Gold is the open part (xfail). Before this round, stddev differed in its last
bits between two runs of one command (merges of per-commit partials in hash order).

Real subprocesses over a real Delta Silver; values with full 52-bit fractions so that any
change in summation order shows.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from goldstream.demo.synth import synth_commit_frames
from goldstream.functions.value_sets import Percentile
from testsupport.config import seed_query_list, write_config
from testsupport.gold import read_gold
from testsupport.process import goldstream
from testsupport.silver import FastSilver

EXTRA = {"name": "spread", "event_time": "event_timestamp", "keys": ["origin_country"],
         "window": {"kind": "sliding", "size": "3m", "slide": "1m"}, "watermark_delay": "1m",
         "aggregates": [{"name": "n", "fn": "count"},
                        {"name": "sum_altitude", "fn": "sum", "column": "altitude_meters"},
                        {"name": "avg_velocity", "fn": "avg", "column": "velocity_kmh"},
                        {"name": "stddev_altitude", "fn": "stddev", "column": "altitude_meters"},
                        {"name": "p90_velocity", "fn": "percentile", "column": "velocity_kmh", "p": 0.9}]}


@pytest.fixture(scope="module")
def silver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("floats") / "silver"
    frames = list(synth_commit_frames(24, 40_000, seed=11, commit_interval_s=20.0))
    # values whose sums round differently in every order: a large offset plus full fractions
    frames = [f.with_columns((pl.col("altitude_meters") * math.pi + 1e7).alias("altitude_meters"),
                             (pl.col("velocity_kmh") / 3.0).alias("velocity_kmh")) for f in frames]
    table = FastSilver(path, frames[0])
    for frame in frames[1:]:
        table.append(frame)
    return path


def _replay(tmp: Path, silver: Path, name: str, **source: object) -> dict[str, pl.DataFrame]:
    gold = tmp / name
    config = write_config(tmp / f"{name}.toml", silver, gold, [*seed_query_list(), EXTRA], **source)
    goldstream("replay", "--config", str(config))
    out = {}
    for query in ("country_stats", "country_anomalies", "spread"):
        frame = read_gold(gold / query)
        keys = [c for c in ("window_start", "origin_country") if c in frame.columns]
        out[query] = frame.sort(keys, nulls_last=True)
    return out


@pytest.mark.xfail(strict=False, reason="open (issue 23 finding 8): Polars' streaming group-by adds a group's "
                   "partial sums in an order that varies run to run (seen on 1 M-row chunks of 20 k-row files; "
                   "this Silver often comes out identical); see docs/semantics.md")
def test_same_replay_twice_gives_bit_identical_gold(silver: Path, tmp_path: Path) -> None:
    first = _replay(tmp_path, silver, "first")
    second = _replay(tmp_path, silver, "second")
    for query, frame in first.items():
        assert frame.height > 100, query
        # bit-identical: compare the float columns' bits, not their values
        bits = [pl.col(c).reinterpret(signed=True) if t == pl.Float64 else pl.col(c)
                for c, t in frame.schema.items()]
        a, b = frame.select(bits), second[query].select(bits)
        diff = a.with_row_index().join(b.with_row_index(), on="index", suffix="_b").filter(
            pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_b")) for c in a.columns))
        assert diff.height == 0, f"{query}: {diff.height} rows differ between two runs:\n{diff.head(3)}"


def test_batchings_agree_to_1e_12(silver: Path, tmp_path: Path) -> None:
    whole = _replay(tmp_path, silver, "whole")
    single = _replay(tmp_path, silver, "single", max_commits_per_batch=1)
    for query, frame in whole.items():
        other = single[query]
        assert frame.select(frame.columns[:3]).equals(other.select(frame.columns[:3])), query
        for column, dtype in frame.schema.items():
            if dtype != pl.Float64:
                assert frame[column].equals(other[column]), (query, column)
                continue
            for x, y in zip(frame[column].to_list(), other[column].to_list()):
                if x is None or y is None or math.isnan(x) or math.isnan(y):
                    assert (x is None) == (y is None) and (x is None or math.isnan(x) == math.isnan(y))
                else:
                    assert math.isclose(x, y, rel_tol=1e-12, abs_tol=0.0), (query, column, x, y)


def test_percentile_interpolates_with_spark_4_formula() -> None:
    """Spark 4.3: low + (pos - lower) * (high - low); Spark 3's (higher - pos) * low +
    (pos - lower) * high rounds differently for these values."""
    low, high, p = 0.1, 0.7, 0.3
    values = [low, high]
    percentile = Percentile("q", column="x", p=p)
    frame = pl.DataFrame({"g": [0, 0], "x": values}).group_by("g").agg(percentile.update()).select(
        percentile.finalize())
    position = p * (len(values) - 1)
    spark4 = low + (position - 0.0) * (high - low)
    spark3 = (1.0 - position) * low + (position - 0.0) * high
    assert spark4 != spark3  # the case tells the formulas apart
    assert frame["q"][0] == spark4
