"""Decimal Silver columns, read exactly and aggregated with Spark's result types.

A Silver table with decimal(9,2), decimal(18,6) and decimal(38,18) columns, written by
delta-rs (fixed-size binary in Parquet) and, for one commit, the way Spark writes small
decimals (INT32/INT64 physical types, pyarrow's `store_decimal_as_integer`). The real CLI
replays a query that keys on a decimal, filters on one and takes sum/avg/min/max/
count_distinct of each; Gold must equal a reference computed with Python's `decimal`
module under Spark's type rules (checked against Spark 4.3 itself, see docs/semantics.md):
min/max keep decimal(p,s), sum is decimal(min(38,p+10),s), avg is
decimal(min(38,p+4),min(38,s+4)) computed as Spark 4's DecimalDivideWithOverflowCheck
(38 significant digits HALF_UP, then HALF_UP to the result's scale).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from delta_by_hand import append_parquet, change_schema
from testsupport.config import write_config
from testsupport.process import goldstream

TYPES = {"d9": (9, 2), "d18": (18, 6), "d38": (38, 18)}
FILTER = "d38 > 0.5 OR d9 = 1.10"
T0 = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def _value(rng: random.Random, p: int, s: int) -> Decimal | None:
    if rng.random() < 0.1:
        return None
    digits = min(p, 20)  # sums stay far from 38 digits
    return Decimal(rng.randint(-(10 ** digits) + 1, 10 ** digits - 1)).scaleb(-s)


def _rows(commit: int, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(60):
        row = {"event_timestamp": T0 + dt.timedelta(seconds=commit * 60 + rng.randint(0, 59)),
               "origin_country": rng.choice(["FR", "DE", None])}
        row.update({c: _value(rng, p, s) for c, (p, s) in TYPES.items()})
        row["d9"] = rng.choice([Decimal("1.10"), Decimal("-3.75"), Decimal("0.01"), None, row["d9"]])
        rows.append(row)
    # exact comparisons: just above / at the filter's bound
    rows[0]["d38"], rows[1]["d38"] = Decimal("0.500000000000000001"), Decimal("0.5")
    return rows


def _arrow(rows: list[dict], types: dict[str, tuple[int, int]] = TYPES) -> pa.Table:
    return pa.table({
        "event_timestamp": pa.array([r["event_timestamp"] for r in rows], pa.timestamp("us", tz="UTC")),
        "origin_country": pa.array([r["origin_country"] for r in rows], pa.string()),
        **{c: pa.array([r[c] for r in rows], pa.decimal128(p, s)) for c, (p, s) in types.items()},
    })


def _silver(table: Path) -> list[dict]:
    rng = random.Random(7)
    every: list[dict] = []
    for commit in range(5):
        rows = _rows(commit, rng)
        if commit == 3:  # as Spark writes them: INT32 / INT64 physical decimals
            append_parquet(table, _arrow(rows), store_decimal_as_integer=True)
        else:
            write_deltalake(str(table), _arrow(rows), mode="append")
        every += rows
    return every


def _quantize(x: Decimal, scale: int) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


def _spark_average(total: Decimal, n: int, scale: int) -> Decimal:
    """Spark 4's DecimalDivideWithOverflowCheck: BigDecimal division to 38 significant
    digits (HALF_UP), then HALF_UP to the result's scale."""
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = 38, ROUND_HALF_UP
        quotient = total / n
    return _quantize(quotient, scale)


def _reference(rows: list[dict], types: dict[str, tuple[int, int]] = TYPES) -> dict[tuple, dict]:
    """Gold as Spark computes it, by brute force over the rows (every window flushed), the
    columns being of `types` (the table's current ones)."""
    def keep(r: dict) -> bool:
        return (r["d38"] is not None and r["d38"] > Decimal("0.5")) or r["d9"] == Decimal("1.10")

    groups: dict[tuple, list[dict]] = {}
    for r in filter(keep, rows):
        start = r["event_timestamp"].replace(second=0, microsecond=0)
        groups.setdefault((start, r["origin_country"], r["d9"]), []).append(r)
    out = {}
    with localcontext() as ctx:
        ctx.prec = 100
        for key, members in groups.items():
            res = {"n": len(members)}
            for c, (p, s) in types.items():
                values = [r[c] for r in members if r[c] is not None]
                total = sum(values, Decimal(0))
                res[f"sum_{c}"] = _quantize(total, s) if values else None
                res[f"avg_{c}"] = _spark_average(total, len(values), min(38, s + 4)) if values else None
                res[f"min_{c}"] = min(values) if values else None
                res[f"max_{c}"] = max(values) if values else None
                res[f"distinct_{c}"] = len(set(values))
            out[key] = res
    return out


def _query() -> dict:
    aggregates = [{"name": "n", "fn": "count"}]
    for c in TYPES:
        aggregates += [{"name": f"sum_{c}", "fn": "sum", "column": c}, {"name": f"avg_{c}", "fn": "avg", "column": c},
                       {"name": f"min_{c}", "fn": "min", "column": c}, {"name": f"max_{c}", "fn": "max", "column": c},
                       {"name": f"distinct_{c}", "fn": "count_distinct", "column": c}]
    return {"name": "money", "event_time": "event_timestamp", "keys": ["origin_country", "d9"],
            "window": {"kind": "tumbling", "size": "1m"}, "watermark_delay": "1m", "filter": FILTER,
            "aggregates": aggregates}


def _expected_types(columns: dict[str, tuple[int, int]] = TYPES) -> dict[str, pa.DataType]:
    types: dict[str, pa.DataType] = {"origin_country": pa.string(), "d9": pa.decimal128(9, 2), "n": pa.int64()}
    for c, (p, s) in columns.items():
        types.update({f"sum_{c}": pa.decimal128(min(38, p + 10), s),
                      f"avg_{c}": pa.decimal128(min(38, p + 4), min(38, s + 4)),
                      f"min_{c}": pa.decimal128(p, s), f"max_{c}": pa.decimal128(p, s),
                      f"distinct_{c}": pa.int64()})
    return types


def _assert_gold(gold: Path, rows: list[dict], types: dict[str, tuple[int, int]] = TYPES) -> None:
    table = DeltaTable(str(gold / "money")).to_pyarrow_table()
    expected_types = _expected_types(types)
    for name, dtype in expected_types.items():
        assert table.schema.field(name).type == dtype, name
    got = {(r["window_start"], r["origin_country"], r["d9"]): {k: v for k, v in r.items() if k in expected_types
                                                                and k not in ("origin_country", "d9")}
           for r in table.to_pylist()}
    expected = _reference(rows, types)
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        assert got[key] == values, key
    # the two writers' equal values are one key, and the filter compared exactly
    assert any(k[2] == Decimal("1.10") for k in got)


def test_decimal_columns_replay_exactly_with_sparks_types(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    rows = _silver(silver)
    config = write_config(tmp_path / "c.toml", silver, gold, [_query()])
    goldstream("replay", "--config", str(config), "--flush")
    _assert_gold(gold, rows)


def test_decimal_state_is_rebuilt_exactly_after_a_restart(tmp_path: Path) -> None:
    """Replay stopped at version 2, then resumed: the state rebuilt from Gold's offsets
    gives the same Gold, types and values, as one uninterrupted replay."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    rows = _silver(silver)
    config = write_config(tmp_path / "c.toml", silver, gold, [_query()])
    goldstream("replay", "--config", str(config), "--to-version", "2")
    goldstream("replay", "--config", str(config), "--flush")
    _assert_gold(gold, rows)


def _widen(table: Path, column: str, to: str) -> int:
    """A decimal column widened the way Delta's typeWidening records it."""
    def edit(fields: list[dict]) -> list[dict]:
        for f in fields:
            if f["name"] == column:
                f["metadata"] = {**f.get("metadata", {}), "delta.typeChanges": [{"fromType": f["type"], "toType": to}]}
                f["type"] = to
        return fields
    return change_schema(table, edit, "CHANGE COLUMN", configuration={"delta.enableTypeWidening": "true"},
                         protocol={"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["typeWidening"],
                                   "writerFeatures": ["typeWidening", "appendOnly", "invariants"]})


def test_a_decimal_widened_in_precision_is_read_exactly_at_the_wider_type(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    rng = random.Random(11)
    rows = []
    for commit in range(3):
        rows += _rows(commit, rng)
        write_deltalake(str(silver), _arrow(rows[-60:]), mode="append")
    _widen(silver, "d18", "decimal(24,6)")
    wider = {**TYPES, "d18": (24, 6)}
    later = _rows(3, rng)
    later[5]["d18"] = Decimal("123456789012345678.123456")  # needs the new precision
    append_parquet(silver, _arrow(later, wider))
    config = write_config(tmp_path / "c.toml", silver, gold, [_query()])
    goldstream("replay", "--config", str(config), "--flush")
    _assert_gold(gold, rows + later, wider)


def test_a_decimal_widened_in_scale_is_refused_at_start_before_any_table(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    write_deltalake(str(silver), _arrow(_rows(0, random.Random(2))), mode="append")
    _widen(silver, "d18", "decimal(20,8)")
    config = write_config(tmp_path / "c.toml", silver, gold, [_query()])
    proc = goldstream("replay", "--config", str(config), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out[-3000:]
    for words in ("column 'd18'", "decimal(20,8), widened from decimal(18,6)", "starting_version"):
        assert words in out, (words, out[-3000:])
    assert not gold.exists()


@pytest.mark.parametrize("stored", [pa.decimal128(12, 4), pa.string(), pa.float64()])
def test_a_decimal_file_of_another_type_is_a_schema_error_not_a_corrupt_file(stored: pa.DataType,
                                                                              tmp_path: Path) -> None:
    """A data file whose decimal column does not have the table's type (a writer that
    ignored the schema) is reported as a type problem naming the column, both types and
    the file; not as a corrupt file to restore."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    rng = random.Random(3)
    write_deltalake(str(silver), _arrow(_rows(0, rng)), mode="append")
    wrong = _arrow(_rows(1, rng))
    values = wrong["d9"].to_pylist()
    if not pa.types.is_decimal(stored):
        values = [None if v is None else (str(v) if pa.types.is_string(stored) else float(v)) for v in values]
    wrong = wrong.set_column(wrong.schema.get_field_index("d9"), "d9", pa.array(values, stored))
    version = append_parquet(silver, wrong)
    file_type = {"decimal128(12, 4)": "decimal(12,4)", "string": "string", "double": "double"}[str(stored)]
    config = write_config(tmp_path / "c.toml", silver, gold, [_query()])
    proc = goldstream("replay", "--config", str(config), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "corrupt" not in out and "Traceback" not in out
    for words in ("'d9'", f"stored as {file_type} in the file", "decimal(9,2)", f"Silver version {version}",
                  "schema"):
        assert words in out, (words, out[-3000:])


@pytest.mark.parametrize("column", ["d9", "d38"])
def test_spark_result_types_are_declared_before_reading(column: str) -> None:
    """The Gold types come from the aggregate classes, from Silver's Delta types alone."""
    from goldstream.config import QuerySpec
    from goldstream.sink.schema import gold_schema
    from goldstream.source.schema import polars_type

    p, s = TYPES[column]
    q = QuerySpec.model_validate({**_query(), "keys": ["origin_country"], "filter": None})
    schema = gold_schema(q, {"event_timestamp": polars_type("timestamp"), "origin_country": polars_type("string"),
                             **{c: polars_type(f"decimal({pp},{ss})") for c, (pp, ss) in TYPES.items()}})
    # gold_schema is a Polars schema since the startup merge (a512559)
    assert schema[f"sum_{column}"] == pl.Decimal(min(38, p + 10), s)
    assert schema[f"avg_{column}"] == pl.Decimal(min(38, p + 4), min(38, s + 4))
    assert schema[f"max_{column}"] == pl.Decimal(p, s)


def test_a_decimal_average_that_overflows_its_spark_type_stops_the_query(tmp_path: Path) -> None:
    """avg(decimal(38,18)) is decimal(38,22): 16 integer digits. Spark 4 (ANSI) fails the
    query on a larger average; so does goldstream, with a message, nothing committed."""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    rows = _rows(0, random.Random(5))
    for r in rows:
        r["d38"] = Decimal("5000000000000000000.5")  # 19 integer digits: their sum fits 38, their average not
    write_deltalake(str(silver), _arrow(rows), mode="append")
    query = {k: v for k, v in _query().items() if k != "filter"}
    query["aggregates"] = [{"name": "avg_d38", "fn": "avg", "column": "d38"}]
    config = write_config(tmp_path / "c.toml", silver, gold, [query])
    proc = goldstream("replay", "--config", str(config), "--flush", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out and "This error occurred" not in out, out[-3000:]
    assert "aggregate 'avg_d38' (avg of 'd38')" in out and "does not fit Spark's type decimal(38,22)" in out
    assert DeltaTable(str(gold / "money")).to_pyarrow_table().num_rows == 0


def test_a_decimal_sum_beyond_38_digits_stops_the_query(tmp_path: Path) -> None:
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    rows = _rows(0, random.Random(5))
    for r in rows:
        r["d38"] = Decimal("50000000000000000000.5")  # 20 integer digits: 60 of them need 22
    write_deltalake(str(silver), _arrow(rows), mode="append")
    query = {k: v for k, v in _query().items() if k != "filter"}
    query["aggregates"] = [{"name": "sum_d38", "fn": "sum", "column": "d38"}]
    config = write_config(tmp_path / "c.toml", silver, gold, [query])
    proc = goldstream("replay", "--config", str(config), "--flush", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out[-3000:]
    assert "versions 0-0: a sum of a decimal column" in out and "needs more than 38 digits" in out, out[-3000:]


def test_a_decimal_partition_column_is_a_key_read_exactly(tmp_path: Path) -> None:
    """Partition values are strings in the log ("1.10"): cast to the column's decimal type.
    (Positive values only: delta-rs 1.x cannot write a negative decimal partition value.)"""
    silver, gold = tmp_path / "silver", tmp_path / "gold"
    rng = random.Random(13)
    rows = []
    for commit in range(3):
        batch = _rows(commit, rng)
        for r in batch:
            r["d9"] = None if r["d9"] is None else abs(r["d9"])
        write_deltalake(str(silver), _arrow(batch), mode="append", partition_by=["d9"])
        rows += batch
    config = write_config(tmp_path / "c.toml", silver, gold, [_query()])
    goldstream("replay", "--config", str(config), "--flush")
    _assert_gold(gold, rows)
