"""`goldstream demo`: generate a Silver table, replay both seed queries, show Gold.

(The live Rich view over real OpenSky data replaces this in the demo issue.)
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from goldstream.config import load_settings, with_overrides
from goldstream.runner import Pipeline
from goldstream.synth import generate_silver

EXAMPLE_CONFIG = Path(__file__).resolve().parent / "example_config.toml"


def run_demo(workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    silver, gold = workdir / "silver", workdir / "gold"
    if not (silver / "_delta_log").is_dir():
        generate_silver(str(silver), commits=60, rows_per_commit=2000, seed=7)
    settings = with_overrides(load_settings(EXAMPLE_CONFIG), silver=str(silver), gold_root=str(gold))
    pipeline = Pipeline(settings)
    pipeline.start()
    pipeline.replay()
    for row in pipeline.summary():
        print(f"{row['query']}: {row['rows_in']} rows in, {row['rows_late']} late, "
              f"{row['windows_emitted']} windows emitted, watermark {row['watermark']}")
    for q in settings.queries:
        df = pl.from_arrow(DeltaTable(settings.gold_path(q)).to_pyarrow_table())
        assert isinstance(df, pl.DataFrame)
        print(f"\n{q.name}: {df.height} rows in {settings.gold_path(q)}; latest windows:")
        with pl.Config(tbl_rows=10, tbl_cols=8):
            print(df.sort(["window_end", q.aggregates[0].name], descending=True).head(10))
