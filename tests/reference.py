"""Brute-force reference implementation ("oracle") of goldstream's Gold output.

Written straight from Spark's windowing and watermark rules (listed below), deliberately naive: plain Python, one commit at a
time, one row at a time, one window at a time.  It shares no code with the
``goldstream`` package and is only meant for small inputs (the ~115k-row conformance
cases take a few seconds).

Conventions
-----------
* Time is handled as **integer microseconds since the Unix epoch (UTC)** everywhere
  inside this module.  ``reference_gold`` returns ``window_start`` / ``window_end`` as
  such ints; ``reference_frame`` turns them into ``Datetime('us', 'UTC')`` columns,
  which is Spark's/Gold's schema.
* Input event times may be ``datetime`` (naive ones are taken as UTC) or ints
  (microseconds).  Polars frames are converted with ``to_dicts()``.

Semantics (Spark Structured Streaming, append mode, one Silver commit per
micro-batch followed by its no-data batch):

* watermark starts at 0 (the epoch);
* for each commit, in version order:
    - rows with a null event time are dropped;
    - each row is assigned to every window ``[k*slide, k*slide + size)`` that
      contains it (tumbling: ``slide = size``), aligned to the epoch;
    - a (row, window) pair is late and dropped when ``window_end <= watermark``,
      where ``watermark`` is the value *before* this commit;
    - then ``watermark = max(watermark, trunc_ms(max event time of the commit,
      late rows included) - delay)``; a commit without (non-null) rows changes
      nothing.  ``trunc_ms`` truncates towards zero like Java's ``micros / 1000``;
    - every window with ``end <= watermark`` holding at least one row and not yet
      emitted is emitted, once, with everything that reached it.
* ``flush=True`` emits the still-open windows after the last commit.

Aggregates follow Spark SQL (see ``_aggregate``).
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any
from urllib.parse import unquote, urlparse

import polars as pl

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
WINDOW_START = "window_start"
WINDOW_END = "window_end"

# --------------------------------------------------------------------------- durations

_UNIT_US = {
    "us": 1,
    "µs": 1,
    "micro": 1,
    "micros": 1,
    "microsecond": 1,
    "microseconds": 1,
    "ms": 1_000,
    "milli": 1_000,
    "millis": 1_000,
    "millisecond": 1_000,
    "milliseconds": 1_000,
    "s": 1_000_000,
    "sec": 1_000_000,
    "secs": 1_000_000,
    "second": 1_000_000,
    "seconds": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "mins": 60_000_000,
    "minute": 60_000_000,
    "minutes": 60_000_000,
    "h": 3_600_000_000,
    "hour": 3_600_000_000,
    "hours": 3_600_000_000,
    "d": 86_400_000_000,
    "day": 86_400_000_000,
    "days": 86_400_000_000,
    "w": 7 * 86_400_000_000,
    "week": 7 * 86_400_000_000,
    "weeks": 7 * 86_400_000_000,
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Zµ]+)\s*")


def duration_us(value: Any) -> int:
    """'1m' -> 60_000_000.  Accepts '500ms', '30s', '2h', '1m30s', '5 minutes', timedelta."""
    if isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if not isinstance(value, str):
        raise TypeError(f"duration must be a string like '1m' or a timedelta, got {value!r}")
    text = value.strip()
    pos = 0
    total = Fraction(0)
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot parse duration {value!r}")
        unit = m.group(2).lower() if m.group(2) != "µs" else "µs"
        if unit not in _UNIT_US:
            raise ValueError(f"unknown duration unit {m.group(2)!r} in {value!r}")
        total += Fraction(m.group(1)) * _UNIT_US[unit]
        pos = m.end()
    if pos == 0 or total.denominator != 1:
        raise ValueError(f"cannot parse duration {value!r} (not a whole number of µs)")
    return int(total)


# --------------------------------------------------------------------------- time

def to_us(value: Any) -> int | None:
    """An event time as int µs since the epoch (UTC), or None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"not a timestamp: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return (value - EPOCH) // timedelta(microseconds=1)
    raise TypeError(f"not a timestamp: {value!r}")


def us_to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def trunc_to_ms(us: int) -> int:
    """µs -> µs truncated to a whole millisecond, towards zero (Java's ``us / 1000``)."""
    ms = abs(us) // 1000
    return (ms if us >= 0 else -ms) * 1000


def windows_of(t: int, size: int, slide: int) -> list[tuple[int, int]]:
    """All epoch-aligned windows [k*slide, k*slide+size) that contain t, by start."""
    result = []
    k = t // slide  # floor division: the last window starting at or before t
    while k * slide + size > t:  # window still contains t
        result.append((k * slide, k * slide + size))
        k -= 1
    result.reverse()
    return result


# --------------------------------------------------------------------------- query

def _window_params(query: dict) -> tuple[int, int]:
    window = query["window"]
    kind = window.get("kind", "tumbling")
    size = duration_us(window["size"])
    if kind == "tumbling":
        slide = size
        if window.get("slide") is not None and duration_us(window["slide"]) != size:
            raise ValueError("a tumbling window's slide, if given, must equal its size")
    elif kind == "sliding":
        slide = duration_us(window["slide"])
    else:
        raise ValueError(f"unknown window kind {kind!r}")
    if size <= 0 or slide <= 0:
        raise ValueError("window size and slide must be positive")
    return size, slide


def output_columns(query: dict) -> list[str]:
    return [WINDOW_START, WINDOW_END, *query["keys"], *(a["name"] for a in query["aggregates"])]


def input_columns(query: dict) -> list[str]:
    """Silver columns the query reads (event time first; ``reads`` lists those that a
    test's ``filter_py``/``where_py`` read)."""
    cols = [query["event_time"], *query["keys"], *query.get("reads", [])]
    for agg in query["aggregates"]:
        for arg in ("column", "by"):
            if agg.get(arg) is not None:
                cols.append(agg[arg])
    seen: list[str] = []
    for c in cols:
        if c not in seen:
            seen.append(c)
    return seen


# --------------------------------------------------------------------------- Spark comparisons

def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _spark_gt(a: Any, b: Any) -> bool:
    """Spark's a > b for non-null values: NaN is greater than every number, NaN = NaN."""
    if _is_nan(a):
        return not _is_nan(b)
    if _is_nan(b):
        return False
    return a > b


def _spark_lt(a: Any, b: Any) -> bool:
    return _spark_gt(b, a)


def _spark_eq(a: Any, b: Any) -> bool:
    if _is_nan(a) or _is_nan(b):
        return _is_nan(a) and _is_nan(b)
    return a == b


# --------------------------------------------------------------------------- aggregates

def _condition(agg: dict, value: Any) -> bool:
    """count_if condition; a null value (null condition) counts as false."""
    if value is None:
        return False
    has_any = False
    result = False
    if "equals" in agg and agg["equals"] is not None:
        has_any = True
        result = result or _spark_eq(value, agg["equals"])
    if "above" in agg and agg["above"] is not None:
        has_any = True
        result = result or _spark_gt(value, agg["above"])
    if "below" in agg and agg["below"] is not None:
        has_any = True
        result = result or _spark_lt(value, agg["below"])
    if not has_any:
        raise ValueError(f"count_if {agg.get('name')!r} needs equals, above or below")
    return result


def _spark_sum_of_floats(values: list[float]) -> float:
    """Exact (correctly rounded) sum with IEEE special values as Spark gets them."""
    if any(_is_nan(v) for v in values):
        return math.nan
    pos_inf = any(v == math.inf for v in values)
    neg_inf = any(v == -math.inf for v in values)
    if pos_inf and neg_inf:
        return math.nan
    if pos_inf:
        return math.inf
    if neg_inf:
        return -math.inf
    return math.fsum(values)


def _avg(values: list) -> float | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return _spark_sum_of_floats([float(v) for v in values]) / len(values)


def _stddev_samp(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    n = len(values)
    if n < 2:
        return None  # Spark: null for n == 1 (and n == 0)
    if any(math.isnan(v) or math.isinf(v) for v in values):
        return math.nan  # NaN propagates; an infinity makes Spark's moments NaN too
    # Exact rational two-pass computation, rounded once at the end: the oracle.
    exact = [Fraction(v) for v in values]
    mean = sum(exact, Fraction(0)) / n
    sum_sq = sum(((x - mean) ** 2 for x in exact), Fraction(0))
    return math.sqrt(sum_sq / (n - 1))


def _max(values: list) -> Any:
    values = [v for v in values if v is not None]
    if not values:
        return None
    if any(_is_nan(v) for v in values):
        return math.nan  # NaN is greater than every number
    return max(values)


def _min(values: list) -> Any:
    values = [v for v in values if v is not None]
    if not values:
        return None
    numbers = [v for v in values if not _is_nan(v)]
    if not numbers:
        return math.nan  # only NaN values
    return min(numbers)


def _spark_order(v: Any) -> tuple:
    """Sort key of a non-null value in Spark's ordering: NaN above every number."""
    return (1, 0) if _is_nan(v) else (0, v)


def _distinct(values: list) -> int:
    """count(DISTINCT x): nulls not counted, NaNs one value, -0.0 equal to 0.0."""
    return len({_canonical_key(v) if not _is_nan(v) else "NaN" for v in values if v is not None})


def _percentile(values: list, p: float) -> float | None:
    """Spark's exact percentile: position p*(n-1) between its two sorted neighbours."""
    ordered = sorted((float(v) for v in values if v is not None), key=_spark_order)
    if not ordered:
        return None
    position = (len(ordered) - 1) * p
    lower, higher = math.floor(position), math.ceil(position)
    low, high = ordered[lower], ordered[higher]
    if lower == higher or low == high or (_is_nan(low) and _is_nan(high)):
        return low
    return low + (position - lower) * (high - low)  # Spark 4.3's formula


def _extreme_by(rows: list[dict], column: str, by: str, greatest: bool) -> Any:
    """max_by/min_by with goldstream's tie rule: among the rows sharing the extreme `by`,
    the greatest (max_by) or least (min_by) non-null value, null only if all are null."""
    ranked = [r for r in rows if r[by] is not None]
    if not ranked:
        return None
    pick = max if greatest else min
    extreme = pick((_spark_order(r[by]) for r in ranked))
    tied = [r[column] for r in ranked if _spark_order(r[by]) == extreme and r[column] is not None]
    if not tied:
        return None
    return pick(tied, key=_spark_order)


def _aggregate(query: dict, rows: list[dict]) -> dict[str, Any]:
    """All aggregates of one (window, key) group, in declared order. An aggregate's
    ``where_py`` (a function of a row: True, False or None) keeps the rows where it is True."""
    out: dict[str, Any] = {}
    all_rows = rows
    for agg in query["aggregates"]:
        fn = agg["fn"]
        name = agg["name"]
        col = agg.get("column")
        where = agg.get("where_py")
        rows = all_rows if where is None else [r for r in all_rows if where(r) is True]
        if fn == "count_if" and col is None:
            out[name] = len(rows)
        elif fn == "count_distinct":
            out[name] = _distinct([r[col] for r in rows])
        elif fn in ("percentile", "median"):
            out[name] = _percentile([r[col] for r in rows], agg.get("p", 0.5))
        elif fn in ("max_by", "min_by"):
            out[name] = _extreme_by(rows, col, agg["by"], fn == "max_by")
        elif fn == "count":
            if col is None:
                out[name] = len(rows)  # count(*)
            else:
                out[name] = sum(1 for r in rows if r[col] is not None)
        elif fn == "count_if":
            out[name] = sum(1 for r in rows if _condition(agg, r[col]))
        elif fn == "avg":
            out[name] = _avg([r[col] for r in rows])
        elif fn == "min":
            out[name] = _min([r[col] for r in rows])
        elif fn == "max":
            out[name] = _max([r[col] for r in rows])
        elif fn in ("stddev", "stddev_samp"):
            out[name] = _stddev_samp([r[col] for r in rows])
        elif fn == "ratio":
            out[name] = None  # computed below, once the others exist
        else:
            raise ValueError(f"unknown aggregate fn {fn!r}")
    for agg in query["aggregates"]:
        if agg["fn"] != "ratio":
            continue
        numerators = agg["numerator"]
        if isinstance(numerators, str):
            numerators = [numerators]
        parts = [out[n] for n in numerators]
        denominator = out[agg["denominator"]]
        if any(p is None for p in parts) or denominator is None or denominator == 0:
            out[agg["name"]] = None  # Spark: x / 0 and x / null are null
        else:
            out[agg["name"]] = float(sum(parts)) / float(denominator)
    return out


# --------------------------------------------------------------------------- the oracle

def _commit_rows(commit: list[dict] | pl.DataFrame | None, columns: list[str]) -> list[dict]:
    if commit is None:
        return []
    if isinstance(commit, pl.DataFrame):
        missing = [c for c in columns if c not in commit.columns]
        if missing:
            raise KeyError(f"commit frame lacks columns {missing}")
        return commit.select(columns).to_dicts()
    rows = []
    for r in commit:
        missing = [c for c in columns if c not in r]
        if missing:
            raise KeyError(f"row {r!r} lacks columns {missing}")
        rows.append({c: r[c] for c in columns})
    return rows


def _canonical_key(value: Any) -> Any:
    """Spark groups all NaNs together and -0.0 with 0.0."""
    if isinstance(value, float):
        if math.isnan(value):
            return _NAN_KEY
        if value == 0.0:
            return 0.0
    return value


_NAN_KEY = math.nan  # one object, so dict lookups match it by identity


def _sort_key(group: tuple) -> tuple:
    """Deterministic emission order: window, then keys with nulls first."""
    (start, end), keys = group
    return (end, start, tuple((v is not None, v) for v in keys))


def reference_gold(
    commits: list[list[dict] | pl.DataFrame | None],
    query: dict,
    flush: bool = False,
    stats: dict | None = None,
) -> list[dict]:
    """Gold rows the query emits for this Silver commit history (see module doc).

    Returns dicts with the output columns in order: window_start, window_end (int µs
    since the epoch, UTC), the keys, then the aggregates in declared order.  If
    ``stats`` is a dict, it is filled with counters (rows_in, null_event_time,
    late_pairs, watermark_us, open_windows).
    """
    event_time = query["event_time"]
    keys = list(query["keys"])
    size, slide = _window_params(query)
    delay = duration_us(query["watermark_delay"])
    columns = input_columns(query)

    watermark = 0  # µs; starts at the epoch
    groups: dict[tuple, list[dict]] = {}  # ((start, end), key tuple) -> rows
    emitted: set[tuple] = set()
    output: list[dict] = []
    counters = {"rows_in": 0, "null_event_time": 0, "late_pairs": 0, "filtered": 0}
    keep = query.get("filter_py")  # a row's filter: rows where it is not True are no input

    def emit(group: tuple) -> None:
        (start, end), key = group
        row = {WINDOW_START: start, WINDOW_END: end}
        for k, v in zip(keys, key):
            row[k] = v
        row.update(_aggregate(query, groups.pop(group)))
        output.append(row)
        emitted.add(group)

    for commit in commits:
        rows = _commit_rows(commit, columns)
        watermark_before = watermark
        max_event_time = None
        for row in rows:
            counters["rows_in"] += 1
            if keep is not None and keep(row) is not True:
                counters["filtered"] += 1
                continue
            t = to_us(row[event_time])
            if t is None:
                counters["null_event_time"] += 1
                continue
            if max_event_time is None or t > max_event_time:
                max_event_time = t
            key = tuple(_canonical_key(row[k]) for k in keys)
            for window in windows_of(t, size, slide):
                if window[1] <= watermark_before:
                    counters["late_pairs"] += 1
                    continue
                group = (window, key)
                assert group not in emitted, "a window received a row after it was emitted"
                groups.setdefault(group, []).append(row)
        if max_event_time is not None:
            watermark = max(watermark, trunc_to_ms(max_event_time) - delay)
        for group in sorted((g for g in groups if g[0][1] <= watermark), key=_sort_key):
            emit(group)

    if flush:
        for group in sorted(groups, key=_sort_key):
            emit(group)

    if stats is not None:
        stats.update(counters)
        stats["watermark_us"] = watermark
        stats["open_windows"] = len(groups)
    return output


def _sessions(rows: list[dict], event_time: str, gap: int) -> list[list[dict]]:
    """Rows of one key as sessions: connected runs of spans [t, t + gap] (touching counts)."""
    out: list[list[dict]] = []
    end = None
    for row in sorted(rows, key=lambda r: to_us(r[event_time])):
        t = to_us(row[event_time])
        if end is None or t > end:
            out.append([])
        out[-1].append(row)
        end = t + gap if end is None or t > end else max(end, t + gap)
    return out


def reference_sessions(commits: list[list[dict] | pl.DataFrame | None], query: dict, flush: bool = False,
                       stats: dict | None = None) -> list[dict]:
    """Gold rows of a session-window query (``window = {kind = "session", gap}``): per
    commit, a row is late when ``t + gap <= watermark before its commit``; the other rows
    join their key's open rows, which are regrouped into sessions from scratch; then every
    session whose end (last t + gap) is ``<= watermark`` is emitted and its rows dropped.
    window_start is the first event time, window_end the last + gap."""
    event_time = query["event_time"]
    keys = list(query["keys"])
    gap = duration_us(query["window"]["gap"])
    delay = duration_us(query["watermark_delay"])
    columns = input_columns(query)
    keep = query.get("filter_py")
    watermark = 0
    open_rows: dict[tuple, list[dict]] = {}
    output: list[dict] = []
    counters = {"rows_in": 0, "null_event_time": 0, "late_rows": 0, "filtered": 0}

    def emit(key: tuple, session: list[dict]) -> None:
        times = [to_us(r[event_time]) for r in session]
        row = {WINDOW_START: min(times), WINDOW_END: max(times) + gap, **dict(zip(keys, key))}
        row.update(_aggregate(query, session))
        output.append(row)

    def close(up_to: int | None) -> None:
        for key in list(open_rows):
            remaining = []
            for session in _sessions(open_rows[key], event_time, gap):
                if up_to is None or max(to_us(r[event_time]) for r in session) + gap <= up_to:
                    emit(key, session)
                else:
                    remaining.extend(session)
            open_rows[key] = remaining
            if not remaining:
                del open_rows[key]

    for commit in commits:
        max_event_time = None
        for row in _commit_rows(commit, columns):
            counters["rows_in"] += 1
            if keep is not None and keep(row) is not True:
                counters["filtered"] += 1
                continue
            t = to_us(row[event_time])
            if t is None:
                counters["null_event_time"] += 1
                continue
            max_event_time = t if max_event_time is None else max(max_event_time, t)
            if t + gap <= watermark:
                counters["late_rows"] += 1
                continue
            open_rows.setdefault(tuple(_canonical_key(row[k]) for k in keys), []).append(row)
        if max_event_time is not None:
            watermark = max(watermark, trunc_to_ms(max_event_time) - delay)
        close(watermark)
    if flush:
        close(None)
    if stats is not None:
        stats.update(counters)
        stats["watermark_us"] = watermark
    return output


def reference_frame(
    rows: list[dict], query: dict, schema: dict[str, pl.DataType] | pl.Schema | None = None
) -> pl.DataFrame:
    """Rows from ``reference_gold`` as a frame with Spark's Gold schema.

    Windows are ``Datetime('us', 'UTC')``, count/count_if ``Int64``, avg/stddev/ratio
    ``Float64``.  Keys and min/max take the input column's dtype from ``schema`` (the
    Silver schema) when given, else ``String`` for keys and ``Float64`` for min/max.
    """
    schema = dict(schema or {})
    out_schema: dict[str, pl.DataType] = {
        WINDOW_START: pl.Datetime("us", "UTC"),
        WINDOW_END: pl.Datetime("us", "UTC"),
    }
    for k in query["keys"]:
        out_schema[k] = schema.get(k, pl.String())
    for agg in query["aggregates"]:
        fn = agg["fn"]
        if fn in ("count", "count_if", "count_distinct"):
            out_schema[agg["name"]] = pl.Int64()
        elif fn in ("min", "max", "max_by", "min_by"):
            out_schema[agg["name"]] = schema.get(agg["column"], pl.Float64())
        else:
            out_schema[agg["name"]] = pl.Float64()

    def cell(name: str, value: Any) -> Any:
        if name in (WINDOW_START, WINDOW_END):
            return us_to_datetime(value)
        return value

    data = {name: [cell(name, r[name]) for r in rows] for name in out_schema}
    columns = [pl.Series(name, data[name], dtype=dtype, strict=True) for name, dtype in out_schema.items()]
    return pl.DataFrame(columns)


def reference_gold_frame(
    commits: list[list[dict] | pl.DataFrame | None], query: dict, flush: bool = False
) -> pl.DataFrame:
    """``reference_frame(reference_gold(...))``, taking key dtypes from the commits."""
    schema: dict[str, pl.DataType] = {}
    for c in commits:
        if isinstance(c, pl.DataFrame):
            schema = dict(c.schema)
            break
    return reference_frame(reference_gold(commits, query, flush=flush), query, schema)


# --------------------------------------------------------------------------- Delta log

_PRIMITIVE = {
    "string": pl.String(),
    "long": pl.Int64(),
    "integer": pl.Int32(),
    "short": pl.Int16(),
    "byte": pl.Int8(),
    "float": pl.Float32(),
    "double": pl.Float64(),
    "boolean": pl.Boolean(),
    "binary": pl.Binary(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us", "UTC"),
    "timestamp_ntz": pl.Datetime("us"),
}


def _delta_type(t: Any) -> pl.DataType | None:
    """Polars dtype of a Delta primitive type (None: leave the column as read)."""
    if isinstance(t, str):
        if t in _PRIMITIVE:
            return _PRIMITIVE[t]
        m = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", t)
        if m:
            return pl.Decimal(int(m.group(1)), int(m.group(2)))
    return None


def _partition_value(raw: str | None, dtype: pl.DataType | None) -> Any:
    """A Delta partition value (always a string in the log) as a Python value."""
    if raw is None:
        return None
    if dtype is None or dtype == pl.String():
        return raw
    if dtype == pl.Boolean():
        return raw.lower() == "true"
    if dtype in (pl.Int8(), pl.Int16(), pl.Int32(), pl.Int64()):
        return int(raw)
    if dtype in (pl.Float32(), pl.Float64()):
        return float(raw)
    if dtype == pl.Date():
        return date.fromisoformat(raw)
    if isinstance(dtype, pl.Datetime):
        text = raw.strip().replace("T", " ")
        if text.endswith("Z"):
            text = text[:-1]
        value = datetime.fromisoformat(text)
        if dtype.time_zone is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value
    return raw


def _resolve_path(table_path: str, path: str) -> str:
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ValueError(f"reference reader handles local tables only, got {path!r}")
    return os.path.join(table_path, unquote(path))


def read_delta_commits(table_path: str, skip_change_commits: bool = False) -> list[pl.DataFrame | None]:
    """A local Delta table's appends, version by version: index v holds version v.

    Each version's ``add`` actions with ``dataChange = true`` are read with Polars and
    concatenated (partition columns filled from ``partitionValues``, every column of the
    table schema as of that version present, cast to the Delta type); a version
    without such an add is ``None``.  A version that removes data (``remove`` with
    ``dataChange = true``, or an add carrying a deletion vector) raises ValueError,
    or becomes ``None`` with ``skip_change_commits=True``.  Only the JSON commit files
    are read (never checkpoints), so every version from 0 must still be in the log.
    """
    log_dir = os.path.join(table_path, "_delta_log")
    versions = sorted(int(name[:20]) for name in os.listdir(log_dir) if re.fullmatch(r"\d{20}\.json", name))
    if not versions:
        raise ValueError(f"no commit JSON in {log_dir}")
    if versions != list(range(versions[-1] + 1)):
        missing = sorted(set(range(versions[-1] + 1)) - set(versions))
        raise ValueError(f"{log_dir}: versions {missing[:10]}... are not in the log (cleaned up?)")

    schema_fields: list[dict] | None = None
    partition_columns: list[str] = []
    result: list[pl.DataFrame | None] = []
    for v in versions:
        actions = []
        with open(os.path.join(log_dir, f"{v:020d}.json"), encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    actions.append(json.loads(line))
        adds = []
        changes = False
        for action in actions:
            if "metaData" in action:
                meta = action["metaData"]
                schema_fields = json.loads(meta["schemaString"])["fields"]
                partition_columns = list(meta.get("partitionColumns") or [])
            elif "add" in action:
                add = action["add"]
                if add.get("deletionVector"):
                    changes = True
                if add.get("dataChange", True):
                    adds.append(add)
            elif "remove" in action:
                if action["remove"].get("dataChange", True):
                    changes = True
        if changes:
            if skip_change_commits:
                result.append(None)
                continue
            raise ValueError(f"version {v} of {table_path} removes or rewrites data: not an append")
        if not adds:
            result.append(None)
            continue
        if schema_fields is None:
            raise ValueError(f"version {v} adds files before any metaData action")
        types = {f["name"]: _delta_type(f["type"]) for f in schema_fields}
        frames = []
        for add in adds:
            df = pl.read_parquet(_resolve_path(table_path, add["path"]))
            values = add.get("partitionValues") or {}
            for col in partition_columns:
                value = _partition_value(values.get(col), types.get(col))
                df = df.with_columns(pl.Series(col, [value] * df.height, dtype=types.get(col)))
            columns = []
            for f in schema_fields:
                name, dtype = f["name"], types[f["name"]]
                if name in df.columns:
                    expr = pl.col(name)
                    columns.append(expr.cast(dtype) if dtype is not None else expr)
                else:
                    columns.append(pl.lit(None, dtype=dtype).alias(name))
            frames.append(df.select(columns))
        result.append(pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0])
    return result

