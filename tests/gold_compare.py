"""Multiset comparison of Gold tables (goldstream's or the oracle's vs Spark's).

``assert_gold_equal(actual, expected)`` checks, in this order:

1. the same column names in the same order, and the same dtypes (Spark's: counts
   ``Int64``, averages/deviations/ratios ``Float64``), with the window columns
   ``Datetime('us', 'UTC')``;
2. the same number of rows, and the same multiset of row identities
   (window_start, window_end, keys) — on failure it lists identities missing from
   or extra in ``actual``;
3. row by row, after sorting both by identity then by every other column: integers,
   strings, booleans and timestamps exactly; floats with
   ``math.isclose(rel_tol=1e-9, abs_tol=0)``, null only equal to null, NaN only to NaN.

The failure message shows the first mismatching rows side by side.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import polars as pl

WINDOW_COLUMNS = ("window_start", "window_end")
MAX_SHOWN = 10


def _infer_keys(df: pl.DataFrame) -> list[str]:
    """Key columns: those right after the windows that are not numeric results."""
    keys = []
    for name in df.columns[2:]:
        dtype = df.schema[name]
        if dtype.is_numeric():
            break
        keys.append(name)
    return keys


def _float_equal(a: Any, b: Any, rel_tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0)


def _fmt_row(columns: list[str], row: tuple) -> str:
    return "{" + ", ".join(f"{c}={v!r}" for c, v in zip(columns, row)) + "}"


def assert_gold_equal(
    actual: pl.DataFrame,
    expected: pl.DataFrame,
    keys: list[str] | None = None,
    rel_tol: float = 1e-9,
    check_dtypes: bool = True,
) -> None:
    """Assert that two Gold tables hold the same multiset of rows (see module doc).

    ``keys`` are the grouping columns; by default the non-numeric columns following
    window_start/window_end in ``expected``.
    """
    problems: list[str] = []

    # 1. schema
    if actual.columns != expected.columns:
        raise AssertionError(
            "Gold columns differ:\n"
            f"  actual:   {actual.columns}\n"
            f"  expected: {expected.columns}"
        )
    if check_dtypes:
        diffs = [
            f"  {c}: actual {actual.schema[c]}, expected {expected.schema[c]}"
            for c in expected.columns
            if actual.schema[c] != expected.schema[c]
        ]
        if diffs:
            raise AssertionError("Gold dtypes differ:\n" + "\n".join(diffs))
        for c in WINDOW_COLUMNS:
            if c in expected.columns and expected.schema[c] != pl.Datetime("us", "UTC"):
                raise AssertionError(f"{c} should be Datetime('us', 'UTC'), is {expected.schema[c]}")

    if keys is None:
        keys = _infer_keys(expected)
    identity = [c for c in WINDOW_COLUMNS if c in expected.columns] + list(keys)
    rest = [c for c in expected.columns if c not in identity]

    # 2. row count and identities
    if actual.height != expected.height:
        problems.append(f"row count: actual {actual.height}, expected {expected.height}")
    actual_ids = Counter(actual.select(identity).rows())
    expected_ids = Counter(expected.select(identity).rows())
    missing = expected_ids - actual_ids
    extra = actual_ids - expected_ids
    if missing or extra:
        for title, ids in (("missing from actual", missing), ("extra in actual", extra)):
            if ids:
                shown = sorted(ids.items(), key=lambda kv: repr(kv[0]))[:MAX_SHOWN]
                lines = [f"  {_fmt_row(identity, k)}" + (f" x{n}" if n > 1 else "") for k, n in shown]
                problems.append(
                    f"{sum(ids.values())} row identities {title} (first {len(shown)}):\n" + "\n".join(lines)
                )
        raise AssertionError("Gold tables differ:\n" + "\n".join(problems))

    # 3. values, row by row in a common order
    order = identity + rest
    a_sorted = actual.sort(order, nulls_last=False, maintain_order=True)
    e_sorted = expected.sort(order, nulls_last=False, maintain_order=True)
    columns = expected.columns
    float_cols = {c for c in columns if expected.schema[c] in (pl.Float32(), pl.Float64())}
    mismatches = []
    n_bad = 0
    for i, (ra, re_) in enumerate(zip(a_sorted.rows(), e_sorted.rows())):
        bad = []
        for c, va, ve in zip(columns, ra, re_):
            ok = _float_equal(va, ve, rel_tol) if c in float_cols else (va == ve)
            if not ok:
                bad.append(c)
        if bad:
            n_bad += 1
            if len(mismatches) < MAX_SHOWN:
                ident = _fmt_row(identity, tuple(re_[columns.index(c)] for c in identity))
                detail = "\n".join(
                    f"      {c}: actual {ra[columns.index(c)]!r}, expected {re_[columns.index(c)]!r}"
                    + (
                        f" (rel diff {_rel_diff(ra[columns.index(c)], re_[columns.index(c)]):.3g})"
                        if c in float_cols
                        else ""
                    )
                    for c in bad
                )
                mismatches.append(f"  row {i} {ident}:\n{detail}")
    if n_bad:
        problems.append(
            f"{n_bad} of {expected.height} rows differ in value (rel_tol={rel_tol}); first {len(mismatches)}:\n"
            + "\n".join(mismatches)
        )
    if problems:
        raise AssertionError("Gold tables differ:\n" + "\n".join(problems))


def _rel_diff(a: Any, b: Any) -> float:
    if a is None or b is None:
        return math.inf
    try:
        if a == b:
            return 0.0
        return abs(a - b) / max(abs(a), abs(b))
    except (TypeError, ZeroDivisionError):
        return math.nan
