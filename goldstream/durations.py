"""Durations as operators write them ("5s", "1m30s", "500ms") and as goldstream counts them (µs).

Event times, watermarks and window bounds are integer microseconds everywhere in the engine;
these helpers are the only place that turns a configured duration into that unit and back, so
a message shows a duration the way the operator wrote it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_UNITS_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)")
_DURATION_HINT = "use a number with a unit us, ms, s, m, h or d (e.g. '5s', '1m30s', '500ms')"


def parse_duration(value: Any) -> timedelta:
    """Parse "5s", "1m30s", "500ms", "2h" (or a number of seconds) into a timedelta.

    A leading minus is parsed (not rejected as a typo) so that the field's own rule can
    say "must not be negative" instead of a vaguer "invalid duration"."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return timedelta(seconds=value)
        except (OverflowError, ValueError):  # inf, nan, more than timedelta holds
            raise ValueError(f"duration {value!r} is out of range: give a finite number of seconds "
                             f"(at most {timedelta.max.days} days) or {_DURATION_HINT}") from None
    if not isinstance(value, str):
        raise ValueError(f"expected a duration, got {value!r}: {_DURATION_HINT}")
    text = _spark_units(value.strip()).replace(" ", "")
    sign = -1 if text.startswith("-") else 1
    text = text.removeprefix("-")
    pos, total_us = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total_us += float(m.group(1)) * _UNITS_US[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HINT}")
    try:
        return timedelta(microseconds=sign * round(total_us))
    except OverflowError:
        raise ValueError(f"duration {value!r} is too large: the longest is {timedelta.max.days} days") from None


# Spark's interval words ("2 minutes", "10 seconds"), as withWatermark takes them.
_SPARK_WORDS = {"microsecond": "us", "millisecond": "ms", "second": "s", "minute": "m", "hour": "h", "day": "d"}
_SPARK_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(microsecond|millisecond|second|minute|hour|day)s?\b", re.IGNORECASE)


def _spark_units(text: str) -> str:
    """"2 minutes 30 seconds" -> "2m30s" (other text unchanged)."""
    body = re.sub(r"^interval\s+", "", text, flags=re.IGNORECASE)
    if not _SPARK_PART.search(body):
        return text
    return _SPARK_PART.sub(lambda m: m.group(1) + _SPARK_WORDS[m.group(2).lower()], body)


def format_duration(td: timedelta) -> str:
    """The shortest exact form in the largest unit: 60s -> "1m", 90s -> "90s"."""
    us = to_us(td)
    sign, us = ("-", -us) if us < 0 else ("", us)
    for unit in ("d", "h", "m", "s", "ms"):
        if us and us % _UNITS_US[unit] == 0:
            return f"{sign}{us // _UNITS_US[unit]}{unit}"
    return f"{sign}{us}us"


def to_us(td: timedelta) -> int:
    return int(td / timedelta(microseconds=1))
