"""The floor: the two seed queries as a one-shot Polars batch job over the same Parquet
files: no streaming, no state, no watermark or lateness, no Delta commit.

It is what a Polars user would write to get the same windows once: list the data files
from the Delta log, one lazy scan of the five needed columns, one group-by per Gold
table, both collected together (`collect_all`, so the scan is shared). The sliding
windows use 1-minute panes merged into their five windows (cheaper than exploding
every row into five windows), and the deviation comes from Σx, Σx², n (the textbook
fast way; goldstream uses a stable merge instead). Run as its own process, like
`goldstream replay`, so both timings include interpreter start and imports:

    python benchmarks/floor.py SILVER_PATH [--key COLUMN]   # one JSON line: row and window counts
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
import polars as pl  # noqa: E402  (import time is part of what is measured)

MINUTE_US = 60_000_000
KEY = "origin_country"  # --key: the queries' one key column (icao24 for the per-aircraft rows)


def data_files(table: Path) -> list[str]:
    """Data files of every append, in version order, from the table's JSON log."""
    files: list[str] = []
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            add = action.get("add")
            if add and add.get("dataChange", True):
                files.append(str(table / add["path"]))
    return files


def queries(files: list[str]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    rows = pl.scan_parquet(files).select(
        "event_timestamp", KEY, "altitude_meters", "velocity_kmh", "on_ground"
    ).filter(pl.col("event_timestamp").is_not_null())
    minute = pl.col("event_timestamp").dt.epoch("us") // MINUTE_US
    alt, vel = pl.col("altitude_meters"), pl.col("velocity_kmh")

    def window(k: pl.Expr, minutes: int) -> list[pl.Expr]:
        start = (k * MINUTE_US).cast(pl.Datetime("us", "UTC"))
        return [start.alias("window_start"), (start + pl.duration(minutes=minutes)).alias("window_end")]

    stats = rows.group_by(minute.alias("k"), KEY).agg(
        pl.len().alias("flight_count"),
        alt.mean().alias("avg_altitude"),
        vel.mean().alias("avg_velocity"),
        (pl.col("on_ground") == True).sum().alias("ground_count"),  # noqa: E712
        (pl.col("on_ground") == False).sum().alias("airborne_count"),  # noqa: E712
    ).select(*window(pl.col("k"), 1), pl.exclude("k"))

    panes = rows.group_by(minute.alias("p"), KEY).agg(
        pl.len().alias("n"),
        (alt.is_nan() | (alt > 12000) | (alt < -100)).sum().alias("aa"),
        (vel.is_nan() | (vel > 1000) | (vel < 0)).sum().alias("va"),
        alt.nan_max().alias("max_altitude"), alt.min().alias("min_altitude"), vel.nan_max().alias("max_velocity"),
        alt.sum().alias("sa"), alt.count().alias("na"), (alt * alt).sum().alias("qa"),
        vel.sum().alias("sv"), vel.count().alias("nv"), (vel * vel).sum().alias("qv"),
    )
    sums = ("n", "aa", "va", "sa", "na", "qa", "sv", "nv", "qv")
    anomalies = (
        panes.with_columns(pl.int_ranges(pl.col("p") - 4, pl.col("p") + 1).alias("k")).explode("k")
        .group_by("k", KEY)
        .agg(*[pl.col(c).sum() for c in sums], pl.col("max_altitude").nan_max(), pl.col("min_altitude").min(),
             pl.col("max_velocity").nan_max())
        .select(
            *window(pl.col("k"), 5), KEY,
            pl.col("n").alias("total_observations"), pl.col("aa").alias("altitude_anomalies"),
            pl.col("va").alias("velocity_anomalies"), ((pl.col("aa") + pl.col("va")) / pl.col("n")).alias("anomaly_rate"),
            "max_altitude", "min_altitude", "max_velocity",
            (pl.col("sa") / pl.col("na")).alias("avg_altitude"), (pl.col("sv") / pl.col("nv")).alias("avg_velocity"),
            ((pl.col("qa") - pl.col("sa") ** 2 / pl.col("na")) / (pl.col("na") - 1)).sqrt().alias("stddev_altitude"),
            ((pl.col("qv") - pl.col("sv") ** 2 / pl.col("nv")) / (pl.col("nv") - 1)).sqrt().alias("stddev_velocity"),
        )
    )
    return stats, anomalies


def main(table: Path) -> dict[str, object]:
    files = data_files(table)
    stats, anomalies = pl.collect_all(list(queries(files)))
    return {
        "files": len(files),
        "rows_aggregated": int(stats["flight_count"].sum()),
        "windows": {"country_stats": stats.height, "country_anomalies": anomalies.height},
        "seconds_in_process": round(time.perf_counter() - T0, 3),
    }


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[2] == "--key":
        KEY = sys.argv[3]
    print(json.dumps(main(Path(sys.argv[1]))))
