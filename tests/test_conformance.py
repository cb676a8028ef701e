"""Gold must equal what Spark produced, row for row, for every conformance case.

Cases are copied into tests/conformance so the suite is self-contained; any case that
appears in ../shared/conformance is run as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from gold_compare import assert_gold_equal
from conformance_cases import conformance_cases
from testsupport.config import QUERIES
from testsupport.gold import read_gold
from testsupport.process import goldstream

CASES = conformance_cases()


def test_cases_are_present() -> None:
    names = {c.name for c in CASES}
    assert {"synthetic_small", "opensky_paris_30min"} <= names


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_replay_equals_spark(case: Path, tmp_path: Path, example_config: Path) -> None:
    gold_root = tmp_path / "gold"
    proc = goldstream("replay", "--config", str(example_config), "--silver", str(case / "silver"),
                      "--gold-root", str(gold_root), "--json")
    summary = {s["query"]: s for s in json.loads(proc.stdout.splitlines()[-1])["summary"]}
    meta = json.loads((case / "case.json").read_text())
    for q in QUERIES:
        expected = pl.read_parquet(case / "expected" / f"{q}.parquet")
        actual = read_gold(gold_root / q)
        assert actual.height == meta["expected_rows"][q]
        assert_gold_equal(actual, expected)
        assert summary[q]["rows_in"] == meta["rows"]
        assert summary[q]["windows_emitted"] == meta["expected_rows"][q]
        assert summary[q]["silver_version"] == meta["silver_versions"] - 1
