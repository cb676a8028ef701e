"""Per-aircraft queries (a key per icao24: tens of thousands of keys in a few minutes)
give the brute-force reference's Gold, for tumbling and sliding windows alike.

State is held per pane and windows closing together are assembled a slice of panes at
a time; with this many keys a batch touches every pane of several windows, a window is
assembled from panes folded in different batches, and closing is sliced (CLOSE_ROWS is
lowered here so that slicing happens on CI-sized data).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gold_compare import assert_gold_equal
from reference import read_delta_commits, reference_gold_frame

from goldstream.config import load_settings, with_overrides
from goldstream.demo.synth import synth_commit_frames
from goldstream.engine import state
from goldstream.runner import Pipeline
from testsupport.gold import read_gold
from testsupport.silver import FastSilver

PER_AIRCRAFT = Path(__file__).resolve().parent.parent / "examples" / "per_aircraft.toml"


def test_per_aircraft_queries_equal_the_reference_with_many_keys(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    frames = list(synth_commit_frames(16, 4000, seed=5, aircraft=100_000, commit_interval_s=45.0))
    silver = tmp_path / "silver"
    table = FastSilver(silver, frames[0])
    for frame in frames[1:]:
        table.append(frame)
    keys = {k for f in frames for k in f["icao24"].drop_nulls()}
    assert len(keys) > 40_000

    monkeypatch.setattr(state, "CLOSE_ROWS", 20_000)
    settings = with_overrides(load_settings(PER_AIRCRAFT), silver=str(silver), gold_root=str(tmp_path / "gold"))
    # batches of 5 commits, read in chunks that split commits: panes are folded across batches
    source = settings.source.model_copy(update={"max_commits_per_batch": 5, "max_rows_per_chunk": 3000})
    pipeline = Pipeline(settings.model_copy(update={"source": source}))
    pipeline.start()
    pipeline.replay()

    commits = read_delta_commits(str(silver))
    for query in settings.queries:
        expected = reference_gold_frame(commits, query.model_dump(mode="json", exclude_none=True))
        assert expected.height > 10_000, query.name
        assert_gold_equal(read_gold(tmp_path / "gold" / query.name), expected)
