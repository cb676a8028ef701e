"""`show` for a person: on the conformance cases' Gold, tables fit a 100-column terminal
with whole headers, aligned numbers and one-line timestamps; `show --plot` draws a
query's Gold over time as a PNG or a self-contained HTML page holding the plotted values."""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path

import polars as pl
import pytest

from conformance_cases import conformance_cases
from goldstream.config import load_settings, with_overrides
from goldstream.errors import ConfigError
from goldstream.plot import plot_gold
from goldstream.runner import Pipeline
from goldstream.tables import span
from testsupport.gold import read_gold
from testsupport.process import goldstream

CASES = conformance_cases()


@pytest.fixture(scope="module")
def gold(tmp_path_factory: pytest.TempPathFactory, example_config: Path) -> dict[str, Path]:
    """Per conformance case, a config over its Silver and the Gold a replay wrote."""
    configs = {}
    for case in CASES:
        root = tmp_path_factory.mktemp(case.name)
        text = example_config.read_text()
        text = re.sub(r"^path = .*$", f'path = "{case / "silver"}"', text, count=1, flags=re.M)
        text = re.sub(r"^gold_root = .*$", f'gold_root = "{root / "gold"}"', text, count=1, flags=re.M)
        config = root / "config.toml"
        config.write_text(text)
        pipeline = Pipeline(load_settings(config))
        pipeline.replay()
        configs[case.name] = config
    return configs


def test_show_fits_a_100_column_terminal_with_whole_headers(gold: dict[str, Path]) -> None:
    for name, config in gold.items():
        out = goldstream("show", "--config", str(config), env={"COLUMNS": "100"}).stdout
        lines = out.splitlines()
        assert max(map(len, lines)) <= 100, f"{name}: a line is wider than the terminal"
        headers = {cell.strip() for ln in lines if ln.startswith("│") for cell in ln.strip("│").split("│")}
        settings = load_settings(config)
        for q in settings.queries:
            for column in [*q.keys, *(a.name for a in q.aggregates)]:
                assert column in headers, f"{name}: header {column!r} is cut or missing"
            assert re.search(rf"^== {q.name}: latest window\nwindow \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d – "
                             r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, top \d+ of \d+ by ", out, re.M), out
        stats = read_gold(Path(settings.gold_path(settings.queries[0])))
        top = stats.filter(pl.col("window_end") == pl.col("window_end").max())["flight_count"].max()
        assert re.search(rf"│ +{top:,} │", out), "counts right-aligned with thousands separators"


@pytest.fixture(scope="module")
def opensky(gold: dict[str, Path]) -> Path:
    return gold["opensky_paris_30min"]


def test_plot_png_is_a_picture_of_the_expected_size(opensky: Path, tmp_path: Path) -> None:
    png = tmp_path / "flights.png"
    out = goldstream("show", "--config", str(opensky), "--query", "country_stats", "--plot", str(png)).stdout
    assert out.startswith(f"wrote {png}: flight_count of query country_stats over ")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (1000, 500)


def test_plot_html_holds_the_top_keys_series(opensky: Path, tmp_path: Path) -> None:
    html_file = tmp_path / "anomalies.html"
    settings = load_settings(opensky).only("country_anomalies")
    plot_gold(settings, settings.queries[0], html_file, "total_observations", top=3)
    html = html_file.read_text()
    assert "<svg" in html and "http" not in html.split("<svg", 1)[0], "self-contained"
    data = json.loads(re.search(r'<script type="application/json" id="gold-series">(.*?)</script>', html, re.S)
                      .group(1))  # type: ignore[union-attr]
    gold_rows = read_gold(Path(settings.gold_path(settings.queries[0])))
    leaders = (gold_rows.group_by("origin_country").agg(pl.col("total_observations").sum())
               .sort("total_observations", descending=True).head(3))
    assert [s["key"] for s in data["series"]] == leaders["origin_country"].to_list()
    for s in data["series"]:
        mine = gold_rows.filter(pl.col("origin_country") == s["key"]).sort("window_end")
        assert [v for _, v in s["points"]] == mine["total_observations"].cast(pl.Float64).to_list()
        assert s["points"][0][0] == mine["window_end"][0].isoformat().replace("+00:00", "Z")
    assert all(f'id="series-{i}"' in html for i in range(3))


def test_plot_says_which_extra_it_needs_and_what_it_can_draw(opensky: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    settings = with_overrides(load_settings(opensky))
    q = settings.queries[0]
    with pytest.raises(ConfigError, match="--metric 'nope': query 'country_stats' has the aggregates flight_count, "):
        plot_gold(settings, q, tmp_path / "x.png", "nope", 5)
    with pytest.raises(ConfigError, match=r"give a file ending in \.png or \.html"):
        plot_gold(settings, q, tmp_path / "x.jpg", None, 5)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'goldstream\[plot\]'"):
        plot_gold(settings, q, tmp_path / "x.png", None, 5)


def test_status_is_one_table_with_lags_in_human_units(gold: dict[str, Path]) -> None:
    out = goldstream("status", "--config", str(gold["synthetic_small"]), env={"COLUMNS": "100"}).stdout
    assert max(map(len, out.splitlines())) <= 100
    for header in ("version lag", "event-time lag", "watermark", "open windows", "late rows", "last Gold commit"):
        assert f"│ {header} " in out, header
    for q in ("country_stats", "country_anomalies"):
        assert re.search(rf"│ {q} +│ +0 │ [\d,]+ d +│ \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} │ +[\d,]+ │", out), out


@pytest.mark.parametrize("seconds, said", [(4.25, "4.2 s"), (45, "45 s"), (192, "3 min 12 s"), (18_120, "5 h 2 min"),
                                           (1_881 * 86_400 + 5, "1,881 d"), (-192, "-3 min 12 s"), (None, "–")])
def test_lags_are_said_in_human_units(seconds: float | None, said: str) -> None:
    assert span(seconds) == said
