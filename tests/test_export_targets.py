"""The exported Spark job writes where it is told, never into goldstream's live tables.

`--gold-root` (or `--gold-path QUERY=URI`) decides every query's Gold table: a query's
configured `gold_path` is goldstream's own, live table, and the job refuses it, however
it is spelled (another spelling, a symlink, a copy found by goldstream's Delta txn), as it
refuses a location inside Silver or another query's table: exit 2 before Spark starts,
nothing written. The job run on Spark writes under --gold-root and leaves goldstream's
Gold as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from gold_compare import assert_gold_equal
from test_export_spark import SPARK_CONF, small_silver
from testsupport.config import seed_query_list, write_config
from testsupport.gold import read_gold
from testsupport.process import goldstream


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silver, goldstream's Gold (country_stats at a configured gold_path, country_anomalies
    under the gold root) replayed by goldstream, and the job exported from that config."""
    root = tmp_path_factory.mktemp("live")
    silver = small_silver(root / "silver")
    queries = seed_query_list(country_stats={"gold_path": str(root / "stats_gold")})
    config = write_config(root / "live.toml", silver, root / "gold", queries)
    goldstream("replay", "--config", str(config))
    proc = goldstream("export", "spark", "--config", str(config), "--out", str(root / "job.py"))
    assert "its gold_path" in proc.stderr and "refuses that path" in proc.stderr
    (root / "gold_link").symlink_to(root / "gold")
    shutil.copytree(root / "stats_gold", root / "stats_copy")
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            st = (Path(dirpath) / name).stat()
            out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def run_job(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(root / "job.py"), "--silver", str(root / "silver"),
                           "--checkpoint-root", str(root / "checkpoints"), "--io", "deltalake",
                           "--trigger", "available-now", *args], capture_output=True, text=True, cwd=root,
                          timeout=timeout)


@pytest.mark.parametrize(("args", "words"), [
    (["--gold-root", "{root}/gold"], ("country_anomalies", "goldstream's live Gold table")),
    (["--gold-root", "{root}/gold_link/"], ("country_anomalies", "goldstream's live Gold table")),
    (["--gold-root", "{root}/new", "--gold-path", "country_stats={root}/stats_gold"],
     ("country_stats", "goldstream's live Gold table", "live.toml")),
    (["--gold-root", "{root}/new", "--gold-path", "country_stats=file://{root}//./stats_gold/"],
     ("country_stats", "goldstream's live Gold table")),
    (["--gold-root", "{root}/new", "--gold-path", "country_stats={root}/stats_gold/sub"],
     ("country_stats", "lies inside", "goldstream's live Gold table")),
    (["--gold-root", "{root}/new", "--gold-path", "country_stats={root}"], ("holds", "goldstream's live")),
    (["--gold-root", "{root}/silver/out"], ("lies inside", "Silver")),
    (["--gold-root", "{root}/new", "--gold-path", "country_stats={root}/new/country_anomalies"],
     ("country_anomalies", "is", "country_stats")),
    (["--gold-root", "{root}/new", "--gold-path", "country_stats={root}/stats_copy"],
     ("holds commits of goldstream's", "goldstream-country_stats")),
    (["--gold-root", "{root}/new", "--gold-path", "nope={root}/x"], ("--gold-path", "country_stats")),
])
def test_job_refuses_goldstream_tables_before_starting(live: Path, args: list[str], words: tuple[str, ...]) -> None:
    before = snapshot(live)
    proc = run_job(live, *(a.format(root=live) for a in args))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr[-3000:]
    assert snapshot(live) == before
    assert not (live / "checkpoints").exists() and not (live / "new").exists()


def test_job_writes_under_gold_root_whatever_gold_path_says(live: Path) -> None:
    if shutil.which("java") is None:
        pytest.fail("Spark needs Java 17: install it (apt-get install openjdk-17-jre-headless)")
    live_versions = {p: DeltaTable(str(live / p)).version() for p in ("stats_gold", "gold/country_anomalies")}
    out = live / "spark"
    for _ in range(3):  # a machine busy with other work can miss Spark's 10 s for its Python reader to
        proc = run_job(live, "--gold-root", str(out), *SPARK_CONF, timeout=900)  # connect: resume
        if "failed to connect back" not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert {p: DeltaTable(str(live / p)).version() for p in live_versions} == live_versions
    assert_gold_equal(read_gold(out / "country_stats"), read_gold(live / "stats_gold"))
    assert_gold_equal(read_gold(out / "country_anomalies"), read_gold(live / "gold" / "country_anomalies"))
