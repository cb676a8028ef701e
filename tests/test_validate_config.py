"""`goldstream validate-config`: the file plus GOLDSTREAM_* overrides, checked without
touching storage; every error names the field, the value and the rule (exit 2)."""

from __future__ import annotations

import re
from pathlib import Path

from testsupport.process import goldstream


def test_example_config_is_valid(example_config: Path) -> None:
    proc = goldstream("validate-config", str(example_config))
    out = proc.stdout
    assert out.rstrip().endswith(f"{example_config}: OK (storage not contacted)")
    assert "query country_stats: tumbling window 1m, watermark delay 2m, keys ['origin_country'], 5 aggregates" in out
    assert "query country_anomalies: sliding window 5m every 1m, watermark delay 6m" in out
    assert "environment overrides" not in out


def test_each_error_names_field_value_and_rule(example_config: Path, tmp_path: Path) -> None:
    text = example_config.read_text()
    for old, new in [('size = "1m" }', 'size = "1x" }'), ("max_commits_per_batch = 100", "max_commits_per_batch = 0"),
                     ('slide = "1m"', 'slide = "2m"'), ('fn = "stddev", column = "velocity_kmh"',
                                                        'fn = "mode", column = "velocity_kmh"')]:
        assert old in text
        text = text.replace(old, new, 1)
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    proc = goldstream("validate-config", str(bad), check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    err = proc.stderr
    assert err.startswith(f"error: invalid configuration in {bad}:")
    assert re.search(r"- queries\.0\.window\.size: invalid duration '1x': use a number with a unit .* \(value: '1x'\)",
                     err), err
    assert "- source.max_commits_per_batch: Input should be greater than or equal to 1 (value: 0)" in err
    assert "- queries.1.window: window size 5m must be a multiple of slide 2m" in err
    assert re.search(r"- queries\.1\.aggregates\.10\.fn: Input should be 'count', .* or 'ratio' \(value: 'mode'\)", err)
    assert "Traceback" not in err


def test_environment_overrides_are_checked_too(example_config: Path) -> None:
    env = {"GOLDSTREAM_SOURCE__POLL_INTERVAL": "fast", "GOLDSTREAM_LOG_LEVEL": "LOUD"}
    proc = goldstream("validate-config", str(example_config), env=env, check=False)
    assert proc.returncode == 2
    assert re.search(r"- source\.poll_interval: invalid duration 'fast'.*\(value: 'fast'\) \(set by environment "
                     r"variable GOLDSTREAM_SOURCE__POLL_INTERVAL\)", proc.stderr), proc.stderr
    assert "- log_level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' (value: 'LOUD') (set by environment " \
           "variable GOLDSTREAM_LOG_LEVEL)" in proc.stderr


def test_storage_is_not_contacted(example_config: Path, tmp_path: Path) -> None:
    """An unreachable endpoint and a missing local Gold root are fine: nothing is opened or created."""
    gold = tmp_path / "gold-not-created"
    env = {"GOLDSTREAM_SOURCE__PATH": "s3://no-such-bucket/silver", "GOLDSTREAM_STORAGE__ENDPOINT": "http://127.0.0.1:9",
           "GOLDSTREAM_SINK__GOLD_ROOT": str(gold), "GOLDSTREAM_SOURCE__POLL_INTERVAL": "250ms"}
    proc = goldstream("validate-config", str(example_config), env=env, timeout=60)
    assert "source s3://no-such-bucket/silver: starting at earliest, poll every 250ms" in proc.stdout
    assert f"-> {gold}/country_stats" in proc.stdout
    assert ("environment overrides: GOLDSTREAM_SINK__GOLD_ROOT, GOLDSTREAM_SOURCE__PATH, "
            "GOLDSTREAM_SOURCE__POLL_INTERVAL, GOLDSTREAM_STORAGE__ENDPOINT") in proc.stdout
    assert not gold.exists()


def test_unreadable_files_exit_2(tmp_path: Path) -> None:
    missing = goldstream("validate-config", str(tmp_path / "nope.toml"), check=False)
    assert missing.returncode == 2 and f"configuration file {tmp_path / 'nope.toml'} does not exist" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[source]\npoll_interval = \n")
    proc = goldstream("validate-config", str(broken), check=False)
    assert proc.returncode == 2 and f"cannot parse configuration {broken}" in proc.stderr
