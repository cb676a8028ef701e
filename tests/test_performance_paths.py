"""The fast paths keep Gold exact: the same rows as the plain path, whatever the batching.

- One group-by over the rows serves every query with the same row grouping (event time, keys,
  pane length); queries of other row groupings, and aggregates that share a name across
  queries, must not leak into each other.
- The reader scans all files of a batch at once and maps each row back to its commit
  through its file path: paths that need URI-decoding, several files per commit, empty
  files and empty commits, all in one batch, must land on the right versions (the
  watermark is per commit, so a wrong version changes which rows are late).
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from deltalake import write_deltalake

from gold_compare import assert_gold_equal
from goldstream.config import QuerySpec, load_settings, with_overrides
from goldstream.columns import VERSION
from goldstream.engine.state import WindowedAggregation, commit_partials
from goldstream.errors import SourceError
from goldstream.runner import Pipeline
from goldstream.source.reader import BatchScan
from goldstream.demo.synth import generate_silver, synth_commit_frames
from testsupport.config import EXAMPLE_CONFIG as EXAMPLE
from testsupport.gold import read_gold
from reference import read_delta_commits, reference_gold_frame

THIRD_QUERY = """
[[queries]]
name = "ground_stats"
event_time = "event_timestamp"
keys = ["on_ground", "origin_country"]
window = { kind = "sliding", size = "4m", slide = "2m" }
watermark_delay = "90s"
aggregates = [
    { name = "flight_count", fn = "count" },
    { name = "avg_altitude", fn = "avg", column = "velocity_kmh" },
    { name = "max_altitude", fn = "max", column = "velocity_kmh" },
    { name = "stddev_velocity", fn = "stddev", column = "altitude_meters" },
]
"""


def _replay(config: Path, silver: Path, gold: Path, **source: object) -> Pipeline:
    s = with_overrides(load_settings(config), silver=str(silver), gold_root=str(gold))
    p = Pipeline(s.model_copy(update={"source": s.source.model_copy(update=source)}))
    p.start()
    p.replay()
    return p


def _assert_gold_is_reference(config: Path, silver: Path, gold: Path) -> None:
    commits = read_delta_commits(str(silver))
    for q in load_settings(config).queries:
        expected = reference_gold_frame(commits, q.model_dump(mode="json", exclude_none=True))
        assert expected.height > 0, q.name
        assert_gold_equal(read_gold(gold / q.name), expected)


def test_queries_of_other_row_groupings_and_reused_aggregate_names_stay_apart(tmp_path: Path) -> None:
    config = tmp_path / "three.toml"
    config.write_text(EXAMPLE.read_text() + THIRD_QUERY)
    silver = tmp_path / "silver"
    generate_silver(str(silver), commits=30, rows_per_commit=400, seed=21)
    gold = tmp_path / "gold"
    _replay(config, silver, gold, max_commits_per_batch=7)
    _assert_gold_is_reference(config, silver, gold)


def test_commit_partials_share_one_group_by_per_row_grouping() -> None:
    """The seed queries share a row grouping; the third query has its own. Same answers as alone."""
    text = EXAMPLE.read_text() + THIRD_QUERY
    import tomllib

    queries = [QuerySpec.model_validate(q) for q in tomllib.loads(text)["queries"]]
    engines = [WindowedAggregation(q) for q in queries]
    assert engines[0].row_grouping() == engines[1].row_grouping() != engines[2].row_grouping()
    rows = pl.concat([f.with_columns(pl.lit(v, pl.Int64).alias(VERSION))
                      for v, f in enumerate(synth_commit_frames(6, 300, seed=4))]).lazy()
    together = [p.frame for p in commit_partials(engines, rows)]
    for engine, fine in zip(engines, together):
        (alone,) = [p.frame for p in commit_partials([engine], rows)]
        assert fine.columns == alone.columns
        # which panes keep the commit in their groups depends on the group's members: compare
        # the partials per (keys, pane)
        keys = [*engine.keys, "__pane"]
        fine, alone = (engine.aggs.merge(f, keys, pl.col("__rows").sum()) for f in (fine, alone))
        assert_frame_equal(fine.sort(keys, nulls_last=True), alone.sort(keys, nulls_last=True),
                           check_exact=False, rel_tol=1e-12, abs_tol=0.0)  # float sums: any order


def _raw_commit(table: Path, version: int, parts: list[tuple[str, pl.DataFrame]]) -> None:
    """A Delta append whose files sit at `relative path -> rows` (the log holds the
    URI-encoded path, as the protocol says); no parts: an empty commit."""
    actions = []
    for rel, frame in parts:
        target = table / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(target)
        actions.append({"add": {"path": quote(rel), "partitionValues": {}, "size": target.stat().st_size,
                                "modificationTime": int(time.time() * 1000), "dataChange": True,
                                "stats": json.dumps({"numRecords": frame.height})}})
    actions.append({"commitInfo": {"timestamp": int(time.time() * 1000), "operation": "WRITE"}})
    (table / "_delta_log" / f"{version:020d}.json").write_text("".join(json.dumps(a) + "\n" for a in actions))


def test_rows_of_oddly_named_files_land_on_their_commits(tmp_path: Path) -> None:
    frames = [f for f in synth_commit_frames(14, 300, seed=8) if f.height]
    silver = tmp_path / "silver"
    write_deltalake(str(silver), frames[0].to_arrow(), mode="append")
    odd = ["with space/a b.parquet", "percent%25and%20/ü=é.parquet", "p=1/x+y&z.parquet", "#hash.parquet"]
    version = 1
    for i, frame in enumerate(frames[1:], start=1):
        if i % 4 == 0:
            _raw_commit(silver, version, [])  # an empty commit
            version += 1
        half = frame.height // 2
        parts = [(f"v{version}/{odd[i % len(odd)]}", frame.head(half)),
                 (f"v{version}/{odd[(i + 1) % len(odd)]}", frame.clear()),  # an empty file
                 (f"v{version}/second {odd[(i + 2) % len(odd)]}", frame.tail(frame.height - half))]
        _raw_commit(silver, version, parts)
        version += 1
    gold = tmp_path / "gold"
    p = _replay(EXAMPLE, silver, gold)  # default batching: every commit in one batch
    assert p.runs[0].stats.commits_read == version
    _assert_gold_is_reference(EXAMPLE, silver, gold)
    # the same history through the per-file reader (one scan per file, versions as literals),
    # which a skew bound forces (it needs each row's commit time), in batches of 3 commits
    shutil.rmtree(gold)
    _replay(EXAMPLE, silver, gold, max_commits_per_batch=3, max_event_time_skew=timedelta(days=36500))
    _assert_gold_is_reference(EXAMPLE, silver, gold)


def test_a_file_path_polars_did_not_echo_is_an_error_not_a_lost_row() -> None:
    scan = BatchScan(pl.LazyFrame(), unit="__file",
                     files=pl.DataFrame({"__file": ["/t/a.parquet"], VERSION: [3]}), where="/t versions 3-3")
    grouped = pl.DataFrame({"__file": ["/t/a.parquet", "/t/b.parquet"], "n": [1, 2]})
    with pytest.raises(SourceError, match=r"/t versions 3-3.*'/t/b.parquet'.*nothing was committed"):
        scan.resolve(grouped)
    ok = scan.resolve(grouped.head(1))
    assert ok[VERSION].to_list() == [3] and "__file" not in ok.columns


def test_a_commit_larger_than_a_chunk_gives_the_gold_of_one_chunk(tmp_path: Path) -> None:
    """A batch is read in chunks of max_rows_per_chunk rows (files grouped, a larger file
    sliced into row ranges) whose partials are merged, and the watermark still moves per
    whole commit: Gold, late rows and the late table are those of one chunk per batch."""
    frames = [f for f in synth_commit_frames(40, 300, seed=12) if f.height]
    silver = tmp_path / "silver"
    huge = pl.concat(frames[:18])
    write_deltalake(str(silver), huge.clear().to_arrow(), mode="append")  # version 0: the schema
    # version 1: one huge commit of 18 minutes of rows in three files (one of them empty),
    # then commits of two files, some with rows behind the watermark
    _raw_commit(silver, 1, [("a.parquet", huge.head(2000)), ("b.parquet", huge.clear()),
                            ("c.parquet", huge.tail(huge.height - 2000))])
    for version, frame in enumerate(frames[18:], start=2):
        if version % 5 == 0:  # late: rows from the huge commit's minutes
            frame = pl.concat([frame, huge.sample(40, seed=version)])
        half = frame.height // 2
        _raw_commit(silver, version, [(f"v{version}-1.parquet", frame.head(half)),
                                      (f"v{version}-2.parquet", frame.tail(frame.height - half))])
    config = tmp_path / "late.toml"
    config.write_text(EXAMPLE.read_text().replace(
        'name = "country_stats"', f'name = "country_stats"\nlate_sink = "{tmp_path / "late"}"'))

    whole = _replay(config, silver, tmp_path / "whole", max_rows_per_chunk=10**9)
    late_whole = read_gold(tmp_path / "late")
    shutil.rmtree(tmp_path / "late")
    chunked = _replay(config, silver, tmp_path / "chunked", max_rows_per_chunk=97)
    huge_commit = chunked.source.next_batch(1, 1)
    assert huge_commit is not None and len(chunked.source.scans(huge_commit)) > huge.height // 97  # sliced
    assert chunked.runs[0].stats.rows_late == whole.runs[0].stats.rows_late > 0
    for q in load_settings(config).queries:
        assert_gold_equal(read_gold(tmp_path / "chunked" / q.name), read_gold(tmp_path / "whole" / q.name))
    late = read_gold(tmp_path / "late")
    assert late.height > 0
    assert_frame_equal(late.sort(late.columns, nulls_last=True), late_whole.sort(late.columns, nulls_last=True))
    _assert_gold_is_reference(config, silver, tmp_path / "chunked")
    # the per-file reader (a skew bound needs each row's commit time), in small chunks too
    _replay(config, silver, tmp_path / "per_file", max_rows_per_chunk=97,
            max_event_time_skew=timedelta(days=36500))
    _assert_gold_is_reference(config, silver, tmp_path / "per_file")
