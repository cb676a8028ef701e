"""`goldstream export spark`: the exported job computes goldstream's Gold on Spark.

Every conformance case runs through the job exported from config.example.toml on local
Spark (--io deltalake, available-now) and must give the rows Spark's own run gave, as
goldstream's conformance test compares them. One Spark session (one JVM) serves every
case: the job file is imported and its queries started side by side, one session view
per case (query names are unique per session); one `python job.py` run on a small,
partitioned Silver proves the command line. Also: the Delta connector's absence, the
refusals, replays that must not duplicate Gold, and the committed example job.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from conformance_cases import conformance_cases
from gold_compare import assert_gold_equal
from goldstream.config import load_settings
from goldstream.demo.synth import synth_commit_frames
from goldstream.export import ExportRefused, export_spark
from testsupport import ROOT
from testsupport.config import EXAMPLE_CONFIG, seed_queries, seed_query_list, write_config
from testsupport.gold import read_gold
from testsupport.process import goldstream
from testsupport.silver import append_commits

CASES = conformance_cases()
# Spark runs two micro-batches per Silver commit (its rows, then the empty batch that moves
# the watermark), ~1.6 s each on two cores: the three conformance cases (514 commits) take
# half an hour, past the suite's budget. They run when asked for.
PARITY = os.environ.get("GOLDSTREAM_SPARK_PARITY") == "1"
parity_run = pytest.mark.skipif(not PARITY, reason="full Spark runs of the conformance cases (~30 min on two "
                                "cores): set GOLDSTREAM_SPARK_PARITY=1 to run them")
EXAMPLE_JOB = ROOT / "examples" / "spark_job.py"
FLIGHTS_CONFIG = ROOT / "examples" / "flights.toml"
# local[2, 3]: two threads, and a task that fails (a Python worker that could not start on a
# busy machine) is retried up to 3 times, as on a cluster (local mode's default is never).
SPARK_CONF = ["--master", "local[2,3]", "--conf", "spark.sql.shuffle.partitions=2", "--conf", "spark.ui.enabled=false",
              "--conf", "spark.ui.showConsoleProgress=false"]


def example_job() -> str:
    return export_spark(load_settings(EXAMPLE_CONFIG), "config.example.toml")[0]


def sessions_job() -> str:
    """The session query of examples/flights.toml (its other query counts distinct values,
    which Spark streams cannot do exactly)."""
    return export_spark(load_settings(FLIGHTS_CONFIG).only("aircraft_flights"), "examples/flights.toml")[0]


def job_args(silver: Path, out: Path, *extra: str) -> list[str]:
    return ["--silver", str(silver), "--gold-root", str(out / "gold"), "--checkpoint-root", str(out / "checkpoints"),
            *extra]


def import_job(text: str, path: Path) -> types.ModuleType:
    """A job file imported as a module. Its classes are pickled by value, as when it runs
    as a script, so Spark's Python workers need not import it."""
    from pyspark import cloudpickle

    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    cloudpickle.register_pickle_by_value(module)
    return module


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    """The job exported from config.example.toml."""
    return import_job(example_job(), tmp_path_factory.mktemp("job") / "spark_job_example.py")


@pytest.fixture(scope="module")
def flights_job(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    return import_job(sessions_job(), tmp_path_factory.mktemp("job") / "spark_job_sessions.py")


@pytest.fixture(scope="module")
def spark(job: types.ModuleType):  # type: ignore[no-untyped-def]
    """The one local Spark for this module, made the way `python job.py` makes its own."""
    if shutil.which("java") is None:
        pytest.fail("Spark needs Java 17 and there is no `java` on PATH: install it (Debian/Ubuntu: "
                    "apt-get install openjdk-17-jre-headless; .ci/run does) or put a JDK 17's bin/ on PATH")
    session = job.spark_session(job.parse_args(job_args(Path("unused"), Path("unused"), *SPARK_CONF)))
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def case_view(spark):  # type: ignore[no-untyped-def]
    """A session of its own on the shared Spark, set as the job sets its session."""
    view = spark.newSession()
    view.conf.set("spark.sql.shuffle.partitions", "2")
    view.conf.set("spark.sql.session.timeZone", "UTC")
    return view


def jobs_for(case: Path, job: types.ModuleType, flights_job: types.ModuleType) -> list[types.ModuleType]:
    """The jobs whose queries the case has Spark's rows for."""
    expected = {f.stem for f in (case / "expected").glob("*.parquet")}
    return [j for j in (job, flights_job) if set(j.QUERIES) <= expected]


@pytest.fixture(scope="module")
def spark_gold(spark, job: types.ModuleType, flights_job: types.ModuleType,
               tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """A case run through the jobs, available-now (once per case): its output root."""
    roots: dict[str, Path] = {}

    def run(case: Path) -> Path:
        if case.name not in roots:
            root = tmp_path_factory.mktemp(case.name)
            args = job.parse_args(job_args(case / "silver", root, "--io", "deltalake", "--trigger", "available-now"))
            started = [start_running(each, case_view(spark), name, args)
                       for each in jobs_for(case, job, flights_job) for name in each.QUERIES]
            for query in started:
                query.awaitTermination()
            roots[case.name] = root
        return roots[case.name]

    return run


def start_running(job: types.ModuleType, view, query: str, args):  # type: ignore[no-untyped-def]
    """Start one query and wait for its first batch. Its Silver reader is a Python process
    that Spark gives 10 s to connect back, which a machine busy with other work can miss
    (Spark then says it failed to connect back, or the worker that it could not open its socket):
    queries start one at a time, and one whose reader missed it starts again from its
    checkpoint."""
    for _ in range(3):
        started = job.start_query(job.QUERIES[query](job.read_silver(view, args)), query, args)
        while started.isActive and started.lastProgress is None:
            time.sleep(0.1)
        missed = any(sign in str(started.exception()) for sign in ("failed to connect back", "CANNOT_OPEN_SOCKET"))
        if started.lastProgress is not None or not missed:
            return started
    return started


def run_to_end(job: types.ModuleType, view, args) -> None:  # type: ignore[no-untyped-def]
    """What `job.run` does (every query, available-now, to its end), each query started as
    `start_running` starts it: one whose Silver reader missed Spark's 10 s to connect back
    on a busy machine starts again from its checkpoint instead of failing the test."""
    for query in [start_running(job, view, name, args) for name in job.QUERIES]:
        query.awaitTermination()


@parity_run
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_job_equals_spark_conformance(case: Path, spark_gold: Callable[[Path], Path], job: types.ModuleType,
                                      flights_job: types.ModuleType) -> None:
    meta = json.loads((case / "case.json").read_text())
    queries = [q for j in jobs_for(case, job, flights_job) for q in j.QUERIES]
    assert set(queries) == set(meta["expected_rows"])
    root = spark_gold(case)
    for query in queries:
        actual = read_gold(root / "gold" / query)
        assert actual.height == meta["expected_rows"][query]
        assert_gold_equal(actual, pl.read_parquet(case / "expected" / f"{query}.parquet"))


def test_replayed_batches_leave_gold_unchanged(spark, job: types.ModuleType, tmp_path: Path) -> None:
    """Spark replays a batch whose end it did not record (a crash before its commit log
    entry): the replay finds its batch id in Gold's txn and writes nothing again."""
    silver = small_silver(tmp_path / "silver")
    args = job.parse_args(job_args(silver, tmp_path, "--io", "deltalake", "--trigger", "available-now"))
    run_to_end(job, case_view(spark), args)
    before = {q: read_gold(tmp_path / "gold" / q) for q in job.QUERIES}
    for query in job.QUERIES:
        last_written = DeltaTable(str(tmp_path / "gold" / query)).transaction_version(job.APP_IDS[query])
        checkpoint = tmp_path / "checkpoints" / query
        forget(checkpoint / "commits", last_written)  # it ran, its end was not recorded
        for log in ("offsets", "commits"):
            for batch in (checkpoint / log).iterdir():
                if batch.name.isdigit() and int(batch.name) > last_written:
                    forget(checkpoint / log, int(batch.name))
    run_to_end(job, case_view(spark), args)  # replays the forgotten batch, then finds nothing new
    for query, rows in before.items():
        assert rows.height > 0
        assert_gold_equal(read_gold(tmp_path / "gold" / query), rows)


def forget(log: Path, batch: int) -> None:
    """Remove a batch's entry from a checkpoint log, with its checksum file."""
    (log / str(batch)).unlink()
    (log / f".{batch}.crc").unlink(missing_ok=True)


def small_silver(path: Path) -> Path:
    """16 minutes of synthetic Silver in 4 commits, partitioned by a column whose values
    need URI encoding (the directory is origin_country=United%20Kingdom, its path in the
    log URI-encoded once more): both seed queries close windows in it."""
    renamed = {"France": "Côte d'Ivoire", "Germany": "United Kingdom"}
    frames = (f.with_columns(pl.col("origin_country").replace(renamed))
              for f in synth_commit_frames(4, 120, seed=3, commit_interval_s=240.0))
    append_commits(path, frames, partition_by=["origin_country"])
    assert "origin_country=United%2520Kingdom/" in (path / "_delta_log" / f"{0:020d}.json").read_text()
    return path


def test_gold_writer_skips_a_batch_gold_recorded(spark, job: types.ModuleType, tmp_path: Path) -> None:
    gold = tmp_path / "gold"
    writer = job.GoldWriter(str(gold), "app")
    batch = spark.createDataFrame([(1, "a"), (2, "b")], "n long, key string")
    writer(batch, 0)
    writer(batch, 1)
    writer(batch, 1)  # replayed
    writer(batch, 0)  # replayed, older
    assert read_gold(gold).height == 4


def test_missing_delta_connector_says_how_to_add_it(spark, job: types.ModuleType, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[0]
    assert job.main(job_args(case / "silver", tmp_path, "--io", "delta"), spark=case_view(spark)) == 2
    err = capsys.readouterr().err
    assert "Delta connector" in err and "--packages io.delta:delta-spark_2.13:" in err and "--io deltalake" in err
    assert not (tmp_path / "gold").exists() and not (tmp_path / "checkpoints").exists()


@parity_run
def test_job_command_line_on_partitioned_silver(tmp_path: Path) -> None:
    """`python job.py` makes its own Spark and reads a Silver partitioned by a column whose
    values need URI encoding (taken from the log, not the files): its Gold is goldstream's."""
    if shutil.which("java") is None:
        pytest.fail("Spark needs Java 17: install it (apt-get install openjdk-17-jre-headless)")
    silver = small_silver(tmp_path / "silver")
    job_file = tmp_path / "job.py"
    goldstream("export", "spark", "--config", str(EXAMPLE_CONFIG), "--out", str(job_file))
    out = tmp_path / "spark"
    proc = subprocess.run([sys.executable, str(job_file), *job_args(silver, out, "--io", "deltalake", "--trigger",
                                                                    "available-now", *SPARK_CONF)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    config = write_config(tmp_path / "goldstream.toml", silver, tmp_path / "goldstream")
    goldstream("replay", "--config", str(config))
    for query in ("country_stats", "country_anomalies"):
        expected = read_gold(tmp_path / "goldstream" / query)
        assert expected.height > 0
        assert_gold_equal(read_gold(out / "gold" / query), expected)


@pytest.mark.parametrize(("change", "field"), [
    ({"late_sink": "LATE"}, "late_sink"),
    ({"idle_timeout": "5m"}, "idle_timeout"),
    ({"max_event_time_skew": "1h"}, "max_event_time_skew"),
])
def test_goldstream_only_options_are_refused(tmp_path: Path, change: dict[str, str], field: str) -> None:
    value = {k: str(tmp_path / v) if k == "late_sink" else v for k, v in change.items()}
    config = write_config(tmp_path / "c.toml", queries=seed_query_list(country_anomalies=value))
    proc = goldstream("export", "spark", "--config", str(config), "--out", str(tmp_path / "job.py"), check=False)
    assert proc.returncode == 2
    assert f"query 'country_anomalies', field {field}:" in proc.stderr
    assert "country_stats" not in proc.stderr and not (tmp_path / "job.py").exists()


def test_source_skew_bound_is_refused_for_every_query(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", max_event_time_skew="1h")
    with pytest.raises(ExportRefused, match=r"query 'country_stats', field \[source\] max_event_time_skew: .*"
                                            r"Spark lets every row move it"):
        export_spark(load_settings(config), "c.toml")


def test_an_aggregate_without_spark_form_is_refused_or_approximated_on_request(tmp_path: Path) -> None:
    """Each function answers for its own Spark form: Spark streams have no exact distinct
    count, so the export refuses it unless --approx-distinct, and then says so."""
    distinct = {"name": "countries", "fn": "count_distinct", "column": "origin_country"}
    config = write_config(tmp_path / "c.toml", queries=seed_query_list(
        country_stats={"aggregates": [*seed_queries()["country_stats"]["aggregates"], distinct]}))
    proc = goldstream("export", "spark", "--config", str(config), check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert ("query 'country_stats', aggregate 'countries' (fn = 'count_distinct'): Spark Structured Streaming does "
            "not support count(DISTINCT ...)") in proc.stderr
    assert "its closest form is approx_count_distinct(`origin_country`)" in proc.stderr
    assert "--approx-distinct exports that closest form" in proc.stderr
    proc = goldstream("export", "spark", "--config", str(config), "--approx-distinct")
    assert 'F.expr("approx_count_distinct(`origin_country`)").alias("countries")' in proc.stdout
    note = "query 'country_stats', aggregate 'countries' (fn = 'count_distinct'): "
    assert f"note: {note}" in proc.stderr and f'\n    "{note}' in proc.stdout.split("NOTES = [")[1].split("]\n")[0]


def test_a_declared_difference_is_noted(tmp_path: Path) -> None:
    fastest = {"name": "fastest_altitude", "fn": "max_by", "column": "altitude_meters", "by": "velocity_kmh"}
    config = write_config(tmp_path / "c.toml", queries=seed_query_list(
        country_stats={"aggregates": [*seed_queries()["country_stats"]["aggregates"], fastest]}))
    job, notes = export_spark(load_settings(config), "c.toml")
    assert notes == ["query 'country_stats', aggregate 'fastest_altitude' (fn = 'max_by'): among rows sharing the "
                     "extreme `by`, Spark's pick depends on the order rows reach it; goldstream takes the greatest "
                     "(max_by) or least (min_by) value"]
    assert 'F.expr("max_by(`altitude_meters`, `velocity_kmh`)").alias("fastest_altitude")' in job


def test_filters_run_before_the_watermark(tmp_path: Path) -> None:
    """A query's filter and an aggregate's where reach the job as the condition parser's
    canonical rendering, the filter before withWatermark (rows failing it move no watermark)."""
    config = write_config(tmp_path / "c.toml", queries=seed_query_list(country_stats={
        "filter": "on_ground = false AND callsign IS NOT NULL",
        "aggregates": [{"name": "n", "fn": "count", "where": "velocity_kmh > 100"}]}))
    job = export_spark(load_settings(config), "c.toml")[0]
    assert 'silver.where("on_ground = FALSE AND NOT callsign IS NULL").withWatermark("event_timestamp"' in job
    assert 'F.expr("count(*) FILTER (WHERE velocity_kmh > 100)").alias("n")' in job
    assert '"callsign"' in job.split("SILVER_COLUMNS = ")[1].splitlines()[0]


def test_cli_prints_notes_on_stderr(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", max_rows_per_batch=1000)
    proc = goldstream("export", "spark", "--config", str(config))
    assert proc.stdout.startswith('"""goldstream queries as a Spark Structured Streaming job')
    assert "note: [source] max_rows_per_batch = 1000: the Delta source has no such limit" in proc.stderr
    assert '\n    "[source] max_rows_per_batch = 1000' in proc.stdout


def test_committed_example_job_is_current() -> None:
    assert EXAMPLE_JOB.read_text() == example_job(), (
        "examples/spark_job.py is stale: regenerate it with "
        "`goldstream export spark --config config.example.toml --out examples/spark_job.py`")
