"""`goldstream export spark` of SQL queries: each runs as its canonical SQL text (the
parser's rendering) through spark.sql over the watermarked stream, dimension tables as
Delta reads. What Spark receives is exactly what goldstream checked: comments are gone,
literals are Python string literals, so no config text reaches the job raw."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from goldstream.config import load_settings
from goldstream.export import export_spark
from testsupport import ROOT

HOSTILE = (
    "SELECT window.start AS ws, origin_country, count(*) AS n /* \"\"\" \n__import__('os').system('touch MARK') */\n"
    "FROM silver -- \"\"\" ); import os; os.system('touch MARK') \r"
    "WHERE origin_country <> 'a\"\"\"b\\'c' OR origin_country = \"x'\\\"\\\"\\\"y\"\n"
    "GROUP BY window(event_timestamp, '1 minute'), origin_country"
)


def spark_sql_arguments(job: str) -> list[str]:
    """The literal text of every spark.sql(...) call in the job."""
    return [node.args[0].value for node in ast.walk(ast.parse(job))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "sql"
            and node.args and isinstance(node.args[0], ast.Constant)]


def test_spark_receives_the_canonical_sql_and_nothing_else(tmp_path: Path) -> None:
    marker = tmp_path / "MARK"
    config = tmp_path / "c.toml"
    config.write_text('[[queries]]\nname = "q"\nwatermark_delay = "2 minutes"\nsql = '
                      + json.dumps(HOSTILE.replace("MARK", str(marker))) + "\n")
    settings = load_settings(config)
    job, _ = export_spark(settings, str(config))
    compile(job, "job.py", "exec")
    [sent] = spark_sql_arguments(job)
    assert sent == settings.queries[0].sql_query.canonical
    assert "touch" not in sent and "/*" not in sent and "--" not in sent
    assert "touch" not in job
    path = tmp_path / "job.py"
    path.write_text(job)
    proc = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()


def test_seed_and_join_queries_export_their_sql_with_watermark_and_tables() -> None:
    settings = load_settings(ROOT / "examples" / "flights.toml").only("maker_minutes")
    job, _ = export_spark(settings, "examples/flights.toml")
    assert '.withWatermark("event_timestamp", "2 minutes").createOrReplaceTempView("silver")' in job
    assert '_dimension(spark, "aircraft").createOrReplaceTempView("aircraft")' in job
    assert f'TABLES = {{"aircraft": {json.dumps(str(ROOT / "examples" / "dims" / "aircraft"))}}}' in job
    assert spark_sql_arguments(job) == [settings.queries[0].sql_query.canonical]


PARITY = os.environ.get("GOLDSTREAM_SPARK_PARITY") == "1"


@pytest.mark.skipif(not PARITY, reason="a full Spark run (minutes on two cores): GOLDSTREAM_SPARK_PARITY=1")
def test_exported_sql_job_equals_spark_conformance(tmp_path: Path) -> None:
    """The seed queries in SQL, exported and run by Spark over synthetic_small, give Spark's rows."""
    from pyspark.sql import SparkSession

    from gold_compare import assert_gold_equal
    from testsupport.gold import read_gold

    case = ROOT / "tests" / "conformance" / "synthetic_small"
    text, _ = export_spark(load_settings(ROOT / "examples" / "seed.toml"), "examples/seed.toml")
    (tmp_path / "job.py").write_text(text)
    namespace: dict[str, object] = {"__name__": "job"}
    exec(compile(text, str(tmp_path / "job.py"), "exec"), namespace)  # noqa: S102 - our own generated job
    spark = (SparkSession.builder.master("local[2]").config("spark.sql.shuffle.partitions", "2")
             .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC").getOrCreate())
    args = namespace["parse_args"](["--silver", str(case / "silver"), "--gold-root", str(tmp_path / "gold"),  # type: ignore[operator]
                                    "--checkpoint-root", str(tmp_path / "ck"), "--io", "deltalake",
                                    "--trigger", "available-now"])
    for name, build in namespace["QUERIES"].items():  # type: ignore[attr-defined]
        for _ in range(3):  # Spark's Python reader may miss its 10 s to connect back on a busy machine
            query = namespace["start_query"](build(namespace["read_silver"](spark, args)), name, args)  # type: ignore[operator]
            try:
                query.awaitTermination()
                break
            except Exception as err:  # noqa: BLE001
                if "connect back" not in str(err):
                    raise
    for name in namespace["QUERIES"]:  # type: ignore[attr-defined]
        assert_gold_equal(read_gold(tmp_path / "gold" / name), pl.read_parquet(case / "expected" / f"{name}.parquet"))
