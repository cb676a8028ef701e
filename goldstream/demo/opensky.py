"""Real OpenSky state vectors as Silver, from the `traffic==2.13` wheel (MIT).

Why: synthetic data proves the corner cases, but only real data shows the engine
behaves on real traffic — a skewed key mix, bursts, aircraft on the ground, and real
transponder glitches (the Paris sample holds a few hundred altitudes above 15 km that
are decoding errors, exactly what `country_anomalies` is for). The `traffic` package
ships such a sample, `quickstart` (284,505 state vectors, 213 aircraft, 3 hours over
Paris on 2021-10-07), plus the ICAO 24-bit address allocation table that maps an
aircraft's address to its country of registration — OpenSky's `origin_country`.

We read both files straight out of the wheel with `zipfile` rather than installing
`traffic`: it drags in pandas, shapely, and more, none of which goldstream needs.

Units are converted to the Silver contract: feet → metres, knots → km/h. The vertical
rate is converted from ft/min (traffic's unit) to m/s, OpenSky's own unit for
`vertical_rate`, which the synthetic generator also uses.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from goldstream.demo.synth import SILVER_SCHEMA

__all__ = [
    "PATTERNS_MEMBER",
    "QUICKSTART_MEMBER",
    "TRAFFIC_REQUIREMENT",
    "country_ranges",
    "default_cache_dir",
    "fetch_traffic_wheel",
    "icao24_to_country",
    "load_opensky_states",
    "opensky_commit_frames",
    "write_opensky_silver",
]

TRAFFIC_REQUIREMENT = "traffic==2.13"
_WHEEL_GLOB = "traffic-2.13-*.whl"
QUICKSTART_MEMBER = "traffic/data/samples/collections/quickstart.json.gz"
PATTERNS_MEMBER = "traffic/data/basic/patterns.json"
PIP_TIMEOUT_S = 120.0

FEET_TO_METRES = 0.3048
KNOTS_TO_KMH = 1.852
FEET_PER_MIN_TO_M_PER_S = 0.3048 / 60.0

# The columns of quickstart.json.gz, typed explicitly so that inference over the first
# rows can never turn a column into the wrong type. `timestamp` is epoch milliseconds.
_QUICKSTART_SCHEMA: dict[str, pl.DataType] = {
    "altitude": pl.Float64(),
    "callsign": pl.String(),
    "groundspeed": pl.Float64(),
    "icao24": pl.String(),
    "latitude": pl.Float64(),
    "longitude": pl.Float64(),
    "onground": pl.Boolean(),
    "timestamp": pl.Int64(),
    "track": pl.Float64(),
    "vertical_rate": pl.Float64(),
}


def default_cache_dir() -> Path:
    """Where the wheel is kept between runs: `$XDG_CACHE_HOME/goldstream` or `~/.cache/goldstream`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "goldstream"


def _cached_wheel(cache_dir: Path) -> Path | None:
    """A complete traffic 2.13 wheel already in `cache_dir`, if any (corrupt ones are removed)."""
    for wheel in sorted(cache_dir.glob(_WHEEL_GLOB)):
        if zipfile.is_zipfile(wheel):
            return wheel
        wheel.unlink()  # a truncated download would fail later with a confusing error
    return None


def fetch_traffic_wheel(cache_dir: Path) -> Path:
    """Return the `traffic==2.13` wheel, downloading it once with pip into `cache_dir`.

    pip (not a hand-rolled HTTP call) so that the user's index, proxy and certificate
    settings apply. Only the wheel is fetched: `--no-deps`, `--only-binary=:all:`.
    """
    cache_dir = Path(cache_dir)
    if (wheel := _cached_wheel(cache_dir)) is not None:
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        TRAFFIC_REQUIREMENT, "-d", str(cache_dir),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"could not run pip to download {TRAFFIC_REQUIREMENT}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise RuntimeError(
            f"pip download {TRAFFIC_REQUIREMENT} failed (exit {done.returncode}); it needs access "
            f"to PyPI or a configured index. pip said:\n{tail}"
        )
    if (wheel := _cached_wheel(cache_dir)) is None:
        raise RuntimeError(f"pip download {TRAFFIC_REQUIREMENT} succeeded but no {_WHEEL_GLOB} is in {cache_dir}")
    return wheel


def _read_member(wheel: Path, member: str) -> bytes:
    """One file from the wheel, with an error that names the wheel and the file."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    except KeyError as exc:
        raise RuntimeError(f"{wheel} has no {member}: is it the traffic 2.13 wheel?") from exc


def country_ranges(registers: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Disjoint, sorted icao24 ranges (`start`, `end`, `country`) from patterns.json registers.

    The registers overlap: broad "Unassigned (... region)" blocks contain national
    blocks, and 0x899000-0x8993ff is listed twice (Taiwan, then "ICAO (special use)").
    `traffic` resolves this by taking the first register, in file order, whose range
    holds the address; we flatten the table once into elementary segments with that
    same rule, so each address then needs a single binary search. The loop is over
    the ~200 registers, not over rows. Registers without a range (matched only by
    tail-number pattern) cannot be used from an address and are ignored.
    """
    ranged = [(int(r["start"], 16), int(r["end"], 16), r["country"]) for r in registers if "start" in r]
    cuts = sorted({s for s, _, _ in ranged} | {e + 1 for _, e, _ in ranged})
    starts: list[int] = []
    ends: list[int] = []
    countries: list[str | None] = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        owner = next((c for s, e, c in ranged if s <= lo and hi - 1 <= e), None)
        if owner is None:
            continue
        if countries and countries[-1] == owner and ends[-1] + 1 == lo:
            ends[-1] = hi - 1  # merge neighbours with the same owner
        else:
            starts.append(lo)
            ends.append(hi - 1)
            countries.append(owner)
    return pl.DataFrame(
        {"start": starts, "end": ends, "country": countries},
        schema={"start": pl.Int64, "end": pl.Int64, "country": pl.String},
    )


def icao24_to_country(icao24: pl.Series, ranges: pl.DataFrame) -> pl.Series:
    """Country of registration for each hex icao24 address; null if unparsable or unallocated.

    Vectorised: parse hex, binary-search the range starts, then check the range end.
    """
    address = icao24.str.to_integer(base=16, strict=False)
    if ranges.height == 0:
        return pl.Series("origin_country", [None] * len(icao24), dtype=pl.String)
    pos = ranges.get_column("start").search_sorted(address.fill_null(-1), side="right").cast(pl.Int64) - 1
    candidate = ranges[pos.clip(lower_bound=0)]  # the last range starting at or below
    hit = (pos >= 0) & (address <= candidate.get_column("end")).fill_null(False)
    return (
        pl.DataFrame({"hit": hit, "country": candidate.get_column("country")})
        .select(pl.when(pl.col("hit")).then(pl.col("country")).alias("origin_country"))
        .to_series()
    )


def _read_quickstart(wheel: Path) -> pl.DataFrame:
    """The raw `quickstart` state vectors (a gzipped JSON array of objects)."""
    raw = gzip.decompress(_read_member(wheel, QUICKSTART_MEMBER))
    return pl.read_json(io.BytesIO(raw), schema=_QUICKSTART_SCHEMA)


def _to_silver(raw: pl.DataFrame, ranges: pl.DataFrame) -> pl.DataFrame:
    """traffic's column names and units → the Silver schema, sorted by event time."""
    return (
        raw.with_columns(icao24_to_country(raw.get_column("icao24"), ranges))
        .select(
            pl.col("icao24"),
            pl.col("callsign"),
            pl.col("origin_country"),
            (pl.col("timestamp") * 1000).cast(pl.Datetime("us", "UTC")).alias("event_timestamp"),
            pl.col("longitude"),
            pl.col("latitude"),
            (pl.col("altitude") * FEET_TO_METRES).alias("altitude_meters"),
            (pl.col("groundspeed") * KNOTS_TO_KMH).alias("velocity_kmh"),
            pl.col("onground").alias("on_ground"),
            (pl.col("vertical_rate") * FEET_PER_MIN_TO_M_PER_S).alias("vertical_rate"),
            pl.col("track").alias("true_track"),
        )
        .cast(dict(SILVER_SCHEMA))
        # File order is per aircraft; a feed delivers in time order. The stable sort
        # keeps each aircraft's own order for equal timestamps, so the result is fixed.
        .sort("event_timestamp", "icao24", maintain_order=True)
    )


def load_opensky_states(wheel: Path) -> pl.DataFrame:
    """The `quickstart` sample as Silver rows (exact Silver schema), sorted by event time."""
    patterns = json.loads(_read_member(wheel, PATTERNS_MEMBER))
    return _to_silver(_read_quickstart(wheel), country_ranges(patterns["registers"]))


def opensky_commit_frames(states: pl.DataFrame, commit_seconds: float = 10.0) -> Iterator[pl.DataFrame]:
    """Slice states into Silver commits, one per `commit_seconds` of event time.

    That is what an ingestion job with a fixed trigger would commit while following
    the feed in real time. Slices are aligned to the Unix epoch; a slice with no rows
    is no commit (a streaming writer does not commit when it got nothing). Every row
    lands in exactly one commit, so rows without an event time are refused.
    """
    if not commit_seconds > 0:
        raise ValueError(f"commit_seconds must be > 0, got {commit_seconds}")
    if states.get_column("event_timestamp").null_count():
        raise ValueError("states with a null event_timestamp cannot be sliced by event time")
    commit_us = round(commit_seconds * 1_000_000)
    bucket = pl.col("event_timestamp").dt.epoch("us") // commit_us
    ordered = states.sort("event_timestamp", maintain_order=True)
    yield from ordered.with_columns(bucket.alias("__commit")).partition_by(
        "__commit", maintain_order=True, include_key=False
    )


def write_opensky_silver(
    out: str,
    commit_seconds: float = 10.0,
    max_commits: int | None = None,
    cache_dir: Path | None = None,
    storage_options: dict[str, str] | None = None,
) -> int:
    """Write the real sample to `out` as Delta append commits; return versions written.

    `max_commits` bounds the history (the full sample is ~1,080 commits at 10 s), which
    keeps demos and tests quick while still using real rows.
    """
    from deltalake import (
        write_deltalake,  # deferred: only writers need the Rust binding
    )

    if max_commits is not None and max_commits < 0:
        raise ValueError(f"max_commits must be >= 0, got {max_commits}")
    wheel = fetch_traffic_wheel(cache_dir if cache_dir is not None else default_cache_dir())
    written = 0
    for frame in opensky_commit_frames(load_opensky_states(wheel), commit_seconds):
        if max_commits is not None and written >= max_commits:
            break
        write_deltalake(out, frame.to_arrow(), mode="append", storage_options=storage_options)
        written += 1
    return written
