"""Seeded synthetic Silver: OpenSky-like state vectors, one Delta commit per batch.

Why synthetic data at all: the real OpenSky sample (see `goldstream.demo.opensky`) is three
calm hours over Paris. It never exercises the corners the Gold contract is about
(Spark's windowing and watermark rules): rows that arrive minutes late, rows exactly on a window boundary, null
and empty-string keys, values exactly on an anomaly threshold, NaN, empty commits. This
generator produces all of them at controlled, documented rates, at any scale, and
*deterministically*: the same seed gives the same rows byte for byte, so a benchmark or
a failing test can be reproduced from its seed alone.

Design choices:

- Randomness comes from `random.Random(...).randbytes`, reinterpreted as `uint32`
  columns through Arrow: one C call per commit, no per-row Python, no numpy (not a
  dependency of goldstream). Python guarantees the Mersenne Twister stream for a given
  seed, so the data does not change between runs or Python versions. Every commit has
  its own generator derived from `(seed, commit index)`, so commit *i* does not depend
  on how many rows earlier commits had.
- All shaping (mixtures, Box-Muller normals, null/anomaly injection) is done with
  Polars expressions over those uniform columns.
- One uniform per concern is split into disjoint bands (e.g. altitude: null / NaN /
  too high / too low / exactly 12000 / exactly -100 / normal), so the injected rates
  are exact in expectation and the kinds never collide.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa

__all__ = [
    "DEFAULT_START",
    "SILVER_SCHEMA",
    "SynthSummary",
    "empty_silver_frame",
    "generate_silver",
    "synth_commit_frames",
]

#: The Silver table's columns, in order, with the Polars types whose Arrow form maps to
#: the Delta types of the contract (string, timestamp, double, boolean).
SILVER_SCHEMA: pl.Schema = pl.Schema(
    {
        "icao24": pl.String(),
        "callsign": pl.String(),
        "origin_country": pl.String(),
        "event_timestamp": pl.Datetime("us", "UTC"),
        "longitude": pl.Float64(),
        "latitude": pl.Float64(),
        "altitude_meters": pl.Float64(),
        "velocity_kmh": pl.Float64(),
        "on_ground": pl.Boolean(),
        "vertical_rate": pl.Float64(),
        "true_track": pl.Float64(),
    }
)

DEFAULT_START = datetime(2024, 6, 1, tzinfo=UTC)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_S = 1_000_000
_MINUTE_US = 60 * _US_PER_S

# --- rates (fractions of rows, or of commits for EMPTY_COMMIT_RATE) -----------------
EMPTY_COMMIT_RATE = 0.03
FLEET_SIZE = 4000
LATE_RATE = 0.03  # delayed by (0, 10 min]
VERY_LATE_RATE = 0.001  # delayed by (10 min, 60 min]
LATE_MAX_US = 10 * _MINUTE_US
VERY_LATE_MAX_US = 60 * _MINUTE_US
MINUTE_ROUNDED_RATE = 0.01
NULL_TIMESTAMP_RATE = 0.001
NULL_COUNTRY_RATE = 0.001
EMPTY_COUNTRY_RATE = 0.0005
NULL_CALLSIGN_RATE = 0.01
ON_GROUND_RATE = 0.10
NULL_ON_GROUND_RATE = 0.02
CLIMB_RATE = 0.30  # airborne rows in climb/descent rather than cruise
NAN_RATE = 0.0001

ALTITUDE_BANDS: tuple[tuple[str, float], ...] = (
    ("null", 0.05),
    ("nan", NAN_RATE),
    ("high", 0.003),  # > 12000
    ("low", 0.001),  # < -100
    ("at_high", 0.0002),  # exactly 12000: not an anomaly
    ("at_low", 0.0002),  # exactly -100: not an anomaly
)
VELOCITY_BANDS: tuple[tuple[str, float], ...] = (
    ("null", 0.02),
    ("nan", NAN_RATE),
    ("high", 0.002),  # > 1000
    ("low", 0.001),  # < 0
    ("at_high", 0.0002),  # exactly 1000: not an anomaly
    ("at_zero", 0.0002),  # exactly 0 (also common on the ground): not an anomaly
)


@dataclass(frozen=True)
class _Country:
    """A country of registration: its ICAO 24-bit block, a map centre, its airlines."""

    name: str
    icao_start: int
    icao_end: int
    lon: float
    lat: float
    airlines: tuple[str, ...]


# Ordered by Zipf rank: the first is the most frequent. Names follow OpenSky's
# `origin_country`; ICAO blocks follow ICAO Annex 10 so icao24 and country agree.
_COUNTRIES: tuple[_Country, ...] = (
    _Country("United States", 0xA00000, 0xAFFFFF, -98.0, 39.0, ("AAL", "DAL", "UAL", "SWA", "JBU")),
    _Country("United Kingdom", 0x400000, 0x43FFFF, -2.0, 53.0, ("BAW", "EZY", "VIR", "TOM")),
    _Country("Germany", 0x3C0000, 0x3FFFFF, 10.0, 51.0, ("DLH", "EWG", "CFG", "BCS")),
    _Country("France", 0x380000, 0x3BFFFF, 2.5, 46.5, ("AFR", "TVF", "HOP")),
    _Country("China", 0x780000, 0x7BFFFF, 110.0, 33.0, ("CCA", "CES", "CSN", "CHH")),
    _Country("Ireland", 0x4CA000, 0x4CAFFF, -8.0, 53.3, ("RYR", "EIN")),
    _Country("Canada", 0xC00000, 0xC3FFFF, -95.0, 55.0, ("ACA", "WJA", "JZA")),
    _Country("Spain", 0x340000, 0x37FFFF, -3.7, 40.4, ("IBE", "VLG", "AEA", "IBS")),
    _Country("Italy", 0x300000, 0x33FFFF, 12.5, 42.5, ("ITY", "NOS")),
    _Country("Turkey", 0x4B8000, 0x4BFFFF, 35.0, 39.0, ("THY", "PGT")),
    _Country("Kingdom of the Netherlands", 0x480000, 0x487FFF, 5.3, 52.2, ("KLM", "TRA")),
    _Country("Japan", 0x840000, 0x87FFFF, 138.0, 36.0, ("JAL", "ANA")),
    _Country("Australia", 0x7C0000, 0x7FFFFF, 134.0, -25.0, ("QFA", "VOZ", "JST")),
    _Country("India", 0x800000, 0x83FFFF, 79.0, 22.0, ("AIC", "IGO")),
    _Country("United Arab Emirates", 0x896000, 0x896FFF, 54.0, 24.0, ("UAE", "ETD")),
    _Country("Switzerland", 0x4B0000, 0x4B7FFF, 8.2, 46.8, ("SWR", "EZS")),
    _Country("Brazil", 0xE40000, 0xE7FFFF, -52.0, -10.0, ("TAM", "GLO", "AZU")),
    _Country("Mexico", 0x0D0000, 0x0D7FFF, -102.0, 23.0, ("AMX", "VOI")),
    _Country("Republic of Korea", 0x718000, 0x71FFFF, 127.8, 36.3, ("KAL", "AAR")),
    _Country("Russian Federation", 0x100000, 0x1FFFFF, 60.0, 56.0, ("AFL", "SBI")),
)
_ZIPF_EXPONENT = 1.1
_POSITION_SPREAD_DEG = 4.0  # spread of aircraft home positions around a country centre
_TRACK_NOISE_DEG = 0.3  # per-observation jitter around an aircraft's home position


@dataclass(frozen=True)
class SynthSummary:
    """What `generate_silver` wrote, so callers can report or assert on it."""

    versions_written: int
    rows_written: int
    empty_commits: int
    first_event_time: datetime | None
    last_event_time: datetime | None


def empty_silver_frame() -> pl.DataFrame:
    """A 0-row frame with the exact Silver schema (an empty commit's content)."""
    return SILVER_SCHEMA.to_frame()


def _to_us(ts: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC (Delta's zone)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _rng(seed: int, label: str) -> random.Random:
    """An independent, reproducible generator per (seed, label): str seeds hash with SHA-512."""
    return random.Random(f"goldstream-synth:{seed}:{label}")


# `random.randbytes` takes its size in bits as a C int (at most 256 MiB in one call): a
# commit's randomness is drawn in chunks of this many bytes, a multiple of 4 so that the
# chunks join into exactly the bytes one call would have returned.
RANDOM_BYTES_CHUNK = 1 << 26


def _random_bytes(rng: random.Random, n: int) -> bytes:
    """`rng.randbytes(n)` for any n."""
    return b"".join(rng.randbytes(min(RANDOM_BYTES_CHUNK, n - at)) for at in range(0, n, RANDOM_BYTES_CHUNK))


def _uniforms(rng: random.Random, n: int, names: Sequence[str]) -> pl.DataFrame:
    """`len(names)` columns of n uniforms in the open interval (0, 1), from one C call.

    The bytes become uint32 columns through Arrow without a copy per value (read in the
    host's byte order: every little-endian machine gets the same data); the +0.5 keeps
    values off 0 so `log(u)` in Box-Muller is finite.
    """
    k = len(names)
    raw = pa.Array.from_buffers(pa.uint32(), n * k, [None, pa.py_buffer(_random_bytes(rng, 4 * n * k))])
    flat = (pl.Series(raw).cast(pl.Float64) + 0.5) / 2.0**32
    return pl.DataFrame([flat.slice(j * n, n).alias(name) for j, name in enumerate(names)])


def _normal(u1: str, u2: str, *, sine: bool = False) -> pl.Expr:
    """A standard normal from two uniform columns (Box-Muller)."""
    trig = (2.0 * math.pi * pl.col(u2)).sin() if sine else (2.0 * math.pi * pl.col(u2)).cos()
    return (-2.0 * pl.col(u1).log()).sqrt() * trig


def _banded(
    selector: str, bands: Sequence[tuple[str, float]], values: dict[str, pl.Expr], default: pl.Expr
) -> pl.Expr:
    """Pick `values[band]` where the selector uniform falls in that band, else `default`.

    Bands are consecutive slices of [0, 1) of the given widths, so they are disjoint and
    each has exactly its probability.
    """
    expr: pl.Expr | None = None
    lo = 0.0
    for name, width in bands:
        hit = (pl.col(selector) >= lo) & (pl.col(selector) < lo + width)
        expr = pl.when(hit).then(values[name]) if expr is None else expr.when(hit).then(values[name])
        lo += width
    assert expr is not None
    return expr.otherwise(default)


def _build_fleet(seed: int, aircraft: int | None = None) -> pl.DataFrame:
    """The aircraft that fly in this seed's world: one row per aircraft.

    Countries are drawn Zipf-like (United States first), so a few keys dominate the
    Gold output as in real traffic. The per-aircraft string formatting is a loop over
    the fleet, never over rows. With `aircraft` set the fleet has exactly that many
    distinct icao24 (a per-aircraft benchmark's key count); see `_distinct_icao24`.
    """
    rng = _rng(seed, "fleet")
    size = FLEET_SIZE if aircraft is None else aircraft
    u = _uniforms(rng, size, ["country", "icao", "airline", "number", "nocall", "p1", "p2"])
    weights = [1.0 / (rank + 1) ** _ZIPF_EXPONENT for rank in range(len(_COUNTRIES))]
    total = sum(weights)
    cumulative = pl.Series([sum(weights[: i + 1]) / total for i in range(len(weights))])
    country_idx = cumulative.search_sorted(u["country"], side="right").clip(0, len(_COUNTRIES) - 1)

    icao24: list[str] = []
    callsign: list[str | None] = []
    lon: list[float] = []
    lat: list[float] = []
    rows = zip(country_idx, u["icao"], u["airline"], u["number"], u["nocall"], strict=True)
    for ci, u_icao, u_airline, u_number, u_nocall in rows:
        c = _COUNTRIES[ci]
        icao24.append(f"{c.icao_start + int(u_icao * (c.icao_end - c.icao_start + 1)):06x}")
        airline = c.airlines[int(u_airline * len(c.airlines))]
        callsign.append(None if u_nocall < NULL_CALLSIGN_RATE else f"{airline}{1 + int(u_number * 9999)}")
        lon.append(c.lon)
        lat.append(c.lat)
    if aircraft is not None:
        icao24 = _distinct_icao24(icao24)
    return pl.DataFrame(
        {
            "icao24": icao24,
            "callsign": callsign,
            "origin_country": [_COUNTRIES[ci].name for ci in country_idx],
            "home_lon": lon,
            "home_lat": lat,
        },
        schema_overrides={"callsign": pl.String},
    ).with_columns(
        (pl.col("home_lon") + _POSITION_SPREAD_DEG * u.select(_normal("p1", "p2")).to_series()),
        (pl.col("home_lat") + _POSITION_SPREAD_DEG * u.select(_normal("p1", "p2", sine=True)).to_series()),
    )


def _distinct_icao24(drawn: list[str]) -> list[str]:
    """`drawn` with every repeated address replaced by a free one, so N aircraft have N
    distinct icao24. A country's ICAO block keeps the first aircraft drawn at an address;
    the rest get addresses outside every listed block, in order (a large fleet overflows
    a small country's block: 4,096 addresses for Ireland)."""
    numbers = pl.Series("n", drawn).str.to_integer(base=16)
    repeated = numbers.is_duplicated() & ~numbers.is_first_distinct()
    if not repeated.any():
        return drawn
    allocated = pl.lit(False)
    for c in _COUNTRIES:
        allocated = allocated | pl.col("n").is_between(c.icao_start, c.icao_end)
    needed = int(repeated.sum())
    free = (pl.int_range(1, 1 << 24, eager=True).alias("n").to_frame()
            .filter(~allocated).head(needed)["n"])
    if free.len() < needed:
        raise ValueError(f"aircraft: at most {len(set(drawn)) + free.len()} distinct icao24 fit in 24 bits here")
    spare = numbers.to_frame().with_row_index().filter(repeated)["index"]
    numbers = numbers.scatter(spare, free)
    return [f"{n:06x}" for n in numbers]


_ROW_UNIFORMS = (
    "ac",
    "t",
    "late",
    "delay",
    "round",
    "tsnull",
    "country",
    "ground",
    "gnull",
    "mode",
    "alt1",
    "alt2",
    "altsel",
    "altx",
    "vel1",
    "vel2",
    "velsel",
    "velx",
    "pos1",
    "pos2",
    "track",
)


def _event_time_us(base_us: int, interval_us: int) -> pl.Expr:
    """Event time in µs: on the commit clock, some late, some on a minute, a few null.

    Commit i covers [base, base + interval). ~3% of rows are delayed by up to 10 min and
    ~0.1% by 10-60 min, so they are late for the seed queries' watermarks; ~1% are
    truncated to the minute so rows sit exactly on window boundaries.
    """
    on_time = pl.lit(base_us, pl.Int64) + (pl.col("t") * interval_us).floor().cast(pl.Int64)
    delay = (
        pl.when(pl.col("late") < LATE_RATE)
        .then((pl.col("delay") * LATE_MAX_US).ceil())
        .when(pl.col("late") < LATE_RATE + VERY_LATE_RATE)
        .then(LATE_MAX_US + (pl.col("delay") * (VERY_LATE_MAX_US - LATE_MAX_US)).ceil())
        .otherwise(0.0)
        .cast(pl.Int64)
    )
    t = on_time - delay
    t = pl.when(pl.col("round") < MINUTE_ROUNDED_RATE).then(t - t.mod(_MINUTE_US)).otherwise(t)
    return pl.when(pl.col("tsnull") < NULL_TIMESTAMP_RATE).then(None).otherwise(t)


def _on_ground_truth() -> pl.Expr:
    """Whether the aircraft is really on the ground (before `on_ground` nulls)."""
    return pl.col("ground") < ON_GROUND_RATE


def _altitude() -> pl.Expr:
    """Altitude in metres: ground ~airport elevation, cruise ~10.5 km, climb anywhere.

    Normal values stay inside [-100, 12000] on purpose; everything outside (and the
    exact thresholds) is injected through `ALTITUDE_BANDS` at known rates.
    """
    climbing = pl.col("mode") < CLIMB_RATE
    cruise = (10_500.0 + 700.0 * _normal("alt1", "alt2")).clip(8_000.0, 11_900.0)
    climb = 300.0 + pl.col("alt1") * 10_700.0
    ground = pl.col("alt2") * 400.0
    normal = pl.when(_on_ground_truth()).then(ground).when(climbing).then(climb).otherwise(cruise)
    return _banded(
        "altsel",
        ALTITUDE_BANDS,
        {
            "null": pl.lit(None, pl.Float64),
            "nan": pl.lit(float("nan")),
            "high": 12_000.5 + pl.col("altx") * 8_000.0,
            "low": -100.5 - pl.col("altx") * 400.0,
            "at_high": pl.lit(12_000.0),
            "at_low": pl.lit(-100.0),
        },
        normal,
    )


def _velocity() -> pl.Expr:
    """Ground speed in km/h: taxi speeds (a quarter exactly 0) on the ground, ~820 cruising."""
    climbing = pl.col("mode") < CLIMB_RATE
    cruise = (820.0 + 60.0 * _normal("vel1", "vel2")).clip(250.0, 990.0)
    climb = 300.0 + pl.col("vel1") * 500.0
    ground = pl.when(pl.col("vel2") < 0.25).then(0.0).otherwise(pl.col("vel1") * 60.0)
    normal = pl.when(_on_ground_truth()).then(ground).when(climbing).then(climb).otherwise(cruise)
    return _banded(
        "velsel",
        VELOCITY_BANDS,
        {
            "null": pl.lit(None, pl.Float64),
            "nan": pl.lit(float("nan")),
            "high": 1_000.5 + pl.col("velx") * 500.0,
            "low": -0.5 - pl.col("velx") * 50.0,
            "at_high": pl.lit(1_000.0),
            "at_zero": pl.lit(0.0),
        },
        normal,
    )


def _velocity_null() -> pl.Expr:
    """OpenSky reports velocity, track and vertical rate from one message: null together."""
    return pl.col("velsel") < VELOCITY_BANDS[0][1]


def _vertical_rate() -> pl.Expr:
    """Vertical rate in m/s (OpenSky's unit): 0 on the ground, small in cruise, ± in climb."""
    z = _normal("vel1", "vel2", sine=True)
    rate = (
        pl.when(_on_ground_truth())
        .then(0.0)
        .when(pl.col("mode") < CLIMB_RATE)
        .then(8.0 * z)
        .otherwise(0.5 * z)
    )
    return pl.when(_velocity_null()).then(None).otherwise(rate)


def _origin_country() -> pl.Expr:
    """The aircraft's country, with a few null and a few empty-string keys (distinct groups)."""
    sel = pl.col("country")
    return (
        pl.when(sel < NULL_COUNTRY_RATE)
        .then(pl.lit(None, pl.String))
        .when(sel < NULL_COUNTRY_RATE + EMPTY_COUNTRY_RATE)
        .then(pl.lit(""))
        .otherwise(pl.col("origin_country"))
    )


def _commit_frame(fleet: pl.DataFrame, rng: random.Random, rows: int, base_us: int, interval_us: int) -> pl.DataFrame:
    """The rows of one non-empty commit, in the Silver schema."""
    u = _uniforms(rng, rows, _ROW_UNIFORMS)
    aircraft = (u["ac"] * fleet.height).floor().cast(pl.Int64).clip(0, fleet.height - 1)
    df = pl.concat([fleet[aircraft], u], how="horizontal")
    # Lazy on purpose: the lazy optimiser shares the repeated sub-expressions (the
    # normals, the on-ground test) that an eager `select` would evaluate again each time.
    return df.lazy().select(
        pl.col("icao24"),
        pl.col("callsign"),
        _origin_country().alias("origin_country"),
        _event_time_us(base_us, interval_us).cast(pl.Datetime("us", "UTC")).alias("event_timestamp"),
        (pl.col("home_lon") + _TRACK_NOISE_DEG * _normal("pos1", "pos2")).clip(-180.0, 180.0).alias("longitude"),
        (pl.col("home_lat") + _TRACK_NOISE_DEG * _normal("pos1", "pos2", sine=True)).clip(-90.0, 90.0).alias("latitude"),
        _altitude().alias("altitude_meters"),
        _velocity().alias("velocity_kmh"),
        pl.when(pl.col("gnull") < NULL_ON_GROUND_RATE).then(None).otherwise(_on_ground_truth()).alias("on_ground"),
        _vertical_rate().alias("vertical_rate"),
        pl.when(_velocity_null()).then(None).otherwise(pl.col("track") * 360.0).alias("true_track"),
    ).cast(dict(SILVER_SCHEMA)).collect()


def _check_args(commits: int, rows_per_commit: int, commit_interval_s: float) -> None:
    """Reject arguments that would silently produce a meaningless history."""
    if commits < 0:
        raise ValueError(f"commits must be >= 0, got {commits}")
    if rows_per_commit < 0:
        raise ValueError(f"rows_per_commit must be >= 0, got {rows_per_commit}")
    if not commit_interval_s > 0:
        raise ValueError(f"commit_interval_s must be > 0, got {commit_interval_s}")


def synth_commit_frames(
    commits: int,
    rows_per_commit: int,
    seed: int = 0,
    *,
    start: datetime | None = None,
    commit_interval_s: float = 10.0,
    aircraft: int | None = None,
) -> Iterator[pl.DataFrame]:
    """Yield one Silver frame per commit; an empty commit is a 0-row frame (never None).

    In memory, so tests can build a commit history (and feed the engine directly)
    without touching Delta. Commit i's rows are timed on the commit clock
    `start + i * commit_interval_s`; about 3% of commits are empty, as ingestion
    batches that found nothing are. Frame i depends only on (seed, i).
    """
    _check_args(commits, rows_per_commit, commit_interval_s)
    start_us = _to_us(start if start is not None else DEFAULT_START)
    interval_us = round(commit_interval_s * _US_PER_S)
    if aircraft is not None and aircraft < 1:
        raise ValueError(f"aircraft must be >= 1, got {aircraft}")
    fleet = _build_fleet(seed, aircraft)
    for i in range(commits):
        rng = _rng(seed, f"commit:{i}")
        if rng.random() < EMPTY_COMMIT_RATE or rows_per_commit == 0:
            yield empty_silver_frame()
        else:
            yield _commit_frame(fleet, rng, rows_per_commit, start_us + i * interval_us, interval_us)


def generate_silver(
    out: str,
    commits: int,
    rows_per_commit: int,
    seed: int = 0,
    *,
    start: datetime | None = None,
    commit_interval_s: float = 10.0,
    storage_options: dict[str, str] | None = None,
    aircraft: int | None = None,
    on_commit: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write `commits` Delta append commits of synthetic Silver to `out` (path or s3://).

    One commit per frame, empty ones included: an empty `write_deltalake` append is a
    real Delta version (commitInfo only, no `add`), which is exactly the "commit with no
    rows" case the watermark rule must handle. The first write creates the table with
    the full schema even when its frame is empty, because the frame carries the schema.
    If `out` already holds a table the commits are appended after its last version.
    `on_commit(commits_written, rows_written)` is called after each commit (a progress bar).
    """
    from deltalake import (
        write_deltalake,  # deferred: only writers need the Rust binding
    )

    rows = empty = written = 0
    lows: list[datetime] = []
    highs: list[datetime] = []
    for frame in synth_commit_frames(
        commits, rows_per_commit, seed, start=start, commit_interval_s=commit_interval_s, aircraft=aircraft
    ):
        write_deltalake(out, frame.to_arrow(), mode="append", storage_options=storage_options)
        rows += frame.height
        empty += frame.height == 0
        ts = frame.get_column("event_timestamp").drop_nulls()
        if ts.len():
            lows.append(ts.min())  # type: ignore[arg-type]
            highs.append(ts.max())  # type: ignore[arg-type]
        written += 1
        if on_commit is not None:
            on_commit(written, rows)
    return SynthSummary(
        versions_written=commits,
        rows_written=rows,
        empty_commits=empty,
        first_event_time=min(lows, default=None),
        last_event_time=max(highs, default=None),
    )
