"""Real OpenSky data from the traffic 2.13 wheel, converted to Silver.

The wheel is downloaded once with pip (needs PyPI) and cached under
`~/.cache/goldstream` (or `$XDG_CACHE_HOME/goldstream`) across test sessions.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from goldstream.demo.opensky import (
    FEET_TO_METRES,
    PATTERNS_MEMBER,
    country_ranges,
    default_cache_dir,
    fetch_traffic_wheel,
    icao24_to_country,
    load_opensky_states,
    opensky_commit_frames,
    write_opensky_silver,
)
from goldstream.demo.synth import SILVER_SCHEMA

QUICKSTART_ROWS = 284_505
QUICKSTART_AIRCRAFT = 213


@pytest.fixture(scope="session")
def wheel() -> Path:
    return fetch_traffic_wheel(default_cache_dir())


@pytest.fixture(scope="session")
def states(wheel: Path) -> pl.DataFrame:
    return load_opensky_states(wheel)


@pytest.fixture(scope="session")
def registers(wheel: Path) -> list[dict[str, str]]:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        return json.loads(zf.read(PATTERNS_MEMBER))["registers"]


def test_cached_wheel_is_reused(wheel: Path) -> None:
    assert wheel.name.startswith("traffic-2.13-") and wheel.suffix == ".whl"
    assert fetch_traffic_wheel(wheel.parent) == wheel  # no second download


def test_all_rows_in_silver_schema(states: pl.DataFrame) -> None:
    assert states.height == QUICKSTART_ROWS
    assert states.schema == SILVER_SCHEMA
    assert states.get_column("icao24").n_unique() == QUICKSTART_AIRCRAFT
    assert states.get_column("event_timestamp").null_count() == 0
    assert states.get_column("event_timestamp").is_sorted()


def test_altitude_is_in_metres(states: pl.DataFrame) -> None:
    alt = states.get_column("altitude_meters").drop_nulls()
    # Cruise levels over Paris top out around FL410 (12.5 km); in feet it would be 41,000.
    assert 9_000 < alt.quantile(0.99) < 13_000  # type: ignore[operator]
    assert alt.min() >= -100  # type: ignore[operator]  # -300 ft is the lowest reading
    # The sample holds a few hundred real transponder glitches (up to 123,100 ft): kept,
    # they are what country_anomalies is for. So the max is not < 15 km; the bulk is.
    assert (alt < 15_000).mean() > 0.995  # type: ignore[operator]
    assert alt.max() == pytest.approx(123_100 * FEET_TO_METRES)


def test_velocity_is_in_kmh(states: pl.DataFrame) -> None:
    vel = states.get_column("velocity_kmh").drop_nulls()
    assert vel.min() >= 0  # type: ignore[operator]
    assert vel.max() < 1_100  # type: ignore[operator]  # 539 kt is the fastest reading
    assert 300 < vel.median() < 900  # type: ignore[operator]


def test_origin_country_is_mostly_france(states: pl.DataFrame) -> None:
    countries = states.get_column("origin_country")
    assert countries.null_count() <= 0.01 * states.height
    counts = countries.value_counts(sort=True)
    assert counts.item(0, "origin_country") == "France"
    assert counts.item(0, "count") > 0.4 * states.height


def test_on_ground_and_optional_columns(states: pl.DataFrame) -> None:
    assert states.get_column("on_ground").null_count() == 0
    assert states.get_column("on_ground").sum() > 0
    # OpenSky sends velocity, track and vertical rate in one message: null together.
    velocity_missing = states.get_column("velocity_kmh").is_null()
    assert velocity_missing.sum() > 0
    for column in ("true_track", "vertical_rate"):
        assert states.get_column(column).is_null().equals(velocity_missing)


def _traffic_country(registers: list[dict[str, str]], icao24: str) -> str | None:
    """traffic's own rule: the first register, in file order, whose range holds the address."""
    address = int(icao24, 16)
    return next(
        (r["country"] for r in registers if "start" in r and int(r["start"], 16) <= address <= int(r["end"], 16)),
        None,
    )


def test_country_lookup_matches_traffic_rule(registers: list[dict[str, str]], states: pl.DataFrame) -> None:
    ranges = country_ranges(registers)
    bounds = [r[k] for r in registers if "start" in r for k in ("start", "end")]
    probes = sorted(set(states.get_column("icao24").unique().to_list()) | {f"{int(b, 16):06x}" for b in bounds})
    probes += ["899000", "500000", "6fffff", "000000", "ffffff", "not-hex"]
    got = icao24_to_country(pl.Series(probes + [None]), ranges).to_list()
    want = [None if p == "not-hex" else _traffic_country(registers, p) for p in probes] + [None]
    assert got == want
    assert got[probes.index("899000")] == "Taiwan"  # listed twice; the first listing wins
    assert got[probes.index("500000")] == "San Marino"  # inside the broad "Unassigned" EUR block


@pytest.mark.parametrize("commit_seconds", [10.0, 60.0, 7.5])
def test_commit_slicing_covers_every_row_once(states: pl.DataFrame, commit_seconds: float) -> None:
    frames = list(opensky_commit_frames(states, commit_seconds))
    assert all(f.height > 0 and f.schema == SILVER_SCHEMA for f in frames)
    assert_frame_equal(pl.concat(frames), states)
    step_us = round(commit_seconds * 1_000_000)
    slots = [f.select(pl.col("event_timestamp").dt.epoch("us") // step_us).to_series().unique() for f in frames]
    assert all(s.len() == 1 for s in slots)
    ids = [s.item() for s in slots]
    assert ids == sorted(set(ids))
    if commit_seconds == 10.0:
        assert len(frames) == 1080  # 3 hours with no 10 s gap


def test_write_opensky_silver(tmp_path: Path, wheel: Path, states: pl.DataFrame) -> None:
    out = str(tmp_path / "silver")
    written = write_opensky_silver(out, commit_seconds=10.0, max_commits=5, cache_dir=wheel.parent)
    assert written == 5
    dt = DeltaTable(out)
    assert dt.version() == 4
    expected = pl.concat(list(opensky_commit_frames(states, 10.0))[:5])
    table = pl.from_arrow(dt.to_pyarrow_table())
    assert isinstance(table, pl.DataFrame)
    assert table.schema == SILVER_SCHEMA
    key = list(SILVER_SCHEMA.names())
    assert_frame_equal(table.sort(key, nulls_last=True), expected.sort(key, nulls_last=True))
