"""The CLI reads well at 100 columns: help renders every word (no markup eats `[source]`),
every command takes `--config`, summaries are sentences with thousands separators and
human units (never a repr), and `show --plot` breaks a key's line where it has no rows."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from goldstream.config import QuerySpec
from goldstream.plot import _figure, with_gaps
from goldstream.units import count, plural, size
from testsupport.process import goldstream

COMMANDS = ["replay", "run", "status", "show", "maintain", "copy-gold", "validate-config", "healthcheck",
            "export spark"]


def help_text(command: str) -> str:
    return goldstream(*command.split(), "--help", env={"COLUMNS": "100"}).stdout


def test_help_renders_every_word_and_fits_100_columns() -> None:
    replay, maintain = help_text("replay"), help_text("maintain")
    assert "Silver table URI (overrides [source] path)" in replay
    assert "Gold root URI (overrides [sink] gold_root)" in replay
    assert "([maintenance] settings;" in " ".join(maintain.split())
    for text in (replay, maintain):
        assert max(map(len, text.splitlines())) <= 100


def test_command_list_shows_whole_sentences() -> None:
    listing = goldstream("--help", env={"COLUMNS": "100"}).stdout.split("Commands:", 1)[1]
    lines = [ln for ln in listing.splitlines() if ln.strip()]
    assert len(lines) >= 11 and not [ln for ln in lines if ln.rstrip().endswith("...")], listing


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_reads_a_configuration_takes_config(command: str) -> None:
    assert re.search(r"^\s+-c, --config <path>", help_text(command), re.M), command


def test_validate_config_takes_config_and_keeps_the_positional_form(example_config: Path) -> None:
    by_option = goldstream("validate-config", "--config", str(example_config)).stdout
    positional = goldstream("validate-config", str(example_config)).stdout
    assert by_option == positional
    assert by_option.rstrip().endswith(f"{example_config}: OK (storage not contacted)")
    assert "at most 100 commits / 1,000 files / 1,000,000 rows per batch" in by_option
    for args in ([], ["--config", str(example_config), str(example_config)]):
        proc = goldstream("validate-config", *args, check=False)
        assert proc.returncode == 2 and "give it as --config FILE" in proc.stderr, proc.stderr


def test_generate_silver_says_what_it_wrote_in_a_sentence(tmp_path: Path) -> None:
    out = tmp_path / "silver"
    text = goldstream("generate-silver", "--out", str(out), "--commits", "3", "--rows-per-commit", "1500",
                      "--seed", "2").stdout.strip()
    assert "SynthSummary" not in text and "ZoneInfo" not in text
    assert re.fullmatch(rf"wrote 3 Silver commits( \(\d of them empty\))? with [\d,]+ rows to {re.escape(str(out))}: "
                        r"event time \d{4}-\d\d-\d\d \d\d:\d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, "
                        r"in [\d.]+ s", text), text
    rows = int(re.search(r"with ([\d,]+) rows", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert rows > 1000 and f"{rows:,}" in text


def test_units_read_alike() -> None:
    assert count(96417) == "96,417"
    assert size(3 * 1024) == "3.0 KiB" and size(512) == "512 B" and size(999) == "999 B" and size(1000) == "1.0 KiB"
    assert size(5_000_000) == "4.8 MiB" and size(0) == "0 B" and size(3 * 2**30) == "3.0 GiB"
    assert plural(1, "commit") == "1 commit" and plural(2000, "commit") == "2,000 commits"


def test_plot_breaks_a_line_where_a_key_has_no_rows() -> None:
    minute = timedelta(minutes=1)
    t0 = datetime(2024, 5, 31, 12, 1, tzinfo=timezone.utc)
    points = [(t0, 1.0), (t0 + minute, 2.0), (t0 + 4 * minute, 3.0), (t0 + 5 * minute, None)]
    assert with_gaps(points, minute) == [(t0, 1.0), (t0 + minute, 2.0), (t0 + 2 * minute, None),
                                         (t0 + 4 * minute, 3.0), (t0 + 5 * minute, None)]
    assert with_gaps(points, None) == points  # sessions: no grid
    q = QuerySpec.model_validate({"name": "q", "keys": ["k"], "window": {"kind": "tumbling", "size": "1m"},
                                  "watermark_delay": "0s", "aggregates": [{"name": "n", "fn": "count"}]})
    figure = _figure(q, "n", {"a": points[:3]})
    drawn = list(figure.axes[0].lines[0].get_ydata())
    assert len(drawn) == 4 and math.isnan(drawn[2]), "the line stops over the windows without rows"


def test_replay_summary_is_a_sentence_with_separators_and_the_filtered_rows(capsys: pytest.CaptureFixture[str]) -> None:
    from goldstream.cli import _print_summary

    row = {"query": "q", "commits_read": 1, "rows_in": 96417, "rows_filtered": 3761, "rows_late": 1200,
           "rows_null_event_time": 0, "windows_emitted": 2000, "gold": "./gold/q", "silver_version": 0,
           "watermark": "2024-05-31T23:59:59.988Z"}
    _print_summary([row, {**row, "rows_filtered": 0}], as_json=False)
    with_filter, without = capsys.readouterr().out.splitlines()
    assert with_filter == ("q: 1 commit read, 96,417 rows in, 3,761 filtered out, 1,200 late, 0 without event time, "
                           "2,000 windows emitted -> ./gold/q; Silver version 0, watermark 2024-05-31T23:59:59.988Z")
    assert "filtered" not in without
