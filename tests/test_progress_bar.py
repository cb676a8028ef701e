"""`replay` on a terminal shows a progress bar (Silver versions done of total, rows/s,
event time reached) in place of the per-batch lines; with its output piped it prints
exactly what it printed before: JSON progress records on stdout, the summary last."""

from __future__ import annotations

import re
from pathlib import Path

from goldstream.demo.synth import synth_commit_frames
from terminal import run_on_terminal
from testsupport.config import write_config
from testsupport.process import goldstream, progress_record
from testsupport.silver import fast_silver

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_replay_shows_a_bar_on_a_terminal_and_log_lines_otherwise(tmp_path: Path) -> None:
    silver = tmp_path / "silver"
    table = fast_silver(silver, list(synth_commit_frames(30, 40, seed=3)))
    cfg = write_config(tmp_path / "c.toml", silver, tmp_path / "gold", max_commits_per_batch=2)

    seen = ANSI.sub("", run_on_terminal("replay", "--config", str(cfg), size=(30, 140))).replace("\r", "\n")
    bars = re.findall(r"replay .* (\d+)/(\d+) versions [\d,]+ rows/s event time 2024-06-01 \d\d:\d\d:\d\d", seen)
    assert bars and bars[-1] == (str(table.version + 1),) * 2, seen
    assert re.search(rf"^country_anomalies: {table.version + 1} commits read, [\d,]+ rows in", seen, re.M), seen
    assert not re.search(r"batch (?:[2-9]|1\d):", seen), "per-batch lines are what the bar stands for"

    piped = goldstream("replay", "--config", str(cfg), "--gold-root", str(tmp_path / "gold2"), "--json")
    records = [r for r in map(progress_record, piped.stdout.splitlines()) if r is not None]
    assert len(records) == 2 * ((table.version + 2) // 2)  # one per batch (2 commits) per query, as before
    assert piped.stdout.splitlines()[-1].startswith('{"summary": ')
    assert "versions" not in piped.stderr
