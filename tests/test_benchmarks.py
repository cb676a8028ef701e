"""The benchmark (benchmarks/run.py) runs end to end from the checkout and its numbers
describe the right work: every Silver row reached both queries and the floor, the history
points and live latency samples are there. Tiny inputs (--quick): a smoke test of the
harness, not a measurement; nothing here asserts a duration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from testsupport import ROOT


def test_quick_benchmark_run_measures_every_section(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out),
                           "--workdir", str(work)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "results.json").read_text())

    t = r["throughput"]
    assert t["silver_commits"] == 12 and t["silver_rows"] > 0
    for q in ("country_stats", "country_anomalies"):
        s = t["gold_summary"][q]
        assert s["rows_in"] == t["silver_rows"] and s["windows_emitted"] > 0
        # the floor aggregated exactly the rows goldstream had an event time for
        assert t["floor_output"]["rows_aggregated"] == s["rows_in"] - s["rows_null_event_time"]
    assert t["rows_per_s"] > 0 and t["ratio"] > 0 and t["replay"]["peak_rss_mb_max"] > 0

    h = r["history"]
    assert h["silver_commits"] == 96 and "scaled down" in h["row_rate_note"]
    assert [p["history"] for p in h["points"]] == ["1 h", "6 h", "24 h"]
    assert h["points"][-1]["silver_version"] == 95 and all(p["rss_mb"] > 0 for p in h["points"])

    live = r["live"]
    assert live["silver_commits"] == 14 and live["samples"] > 0
    assert 0 < live["median_s"] <= live["p95_s"] <= live["max_s"]

    (f,) = r["aircraft"]
    assert f["aircraft"] == 2_000 and f["silver_commits"] == 6
    for q in ("aircraft_positions", "aircraft_anomalies"):
        s = f["gold_summary"][q]
        assert s["rows_in"] == f["silver_rows"] and s["windows_emitted"] > 0
        assert f["floor_output"]["rows_aggregated"] == s["rows_in"] - s["rows_null_event_time"]
    assert f["ratio"] > 0 and f["replay"]["peak_rss_mb_max"] > 0

    assert set(r["targets"]) == {"a_rows_per_s", "c_ratio", "a_peak_rss_mb", "d_rss_24h_over_1h", "e_latency_median_s",
                                 "f_ratio_2000", "f_peak_rss_mb_2000"}
    table = (out / "results.md").read_text()
    assert "| (a) `goldstream replay`" in table and "| (e) live latency" in table and r["machine"]["nproc"]
    assert "| (f) per-aircraft queries, 2,000 aircraft" in table

    # a second run reuses the generated inputs
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--skip-history",
                            "--skip-live", "--out", str(out), "--workdir", str(work)],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(reused)" in again.stderr
