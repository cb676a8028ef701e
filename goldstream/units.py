"""Numbers as a person reads them in the CLI's sentences and tables: counts with thousands
separators, sizes in binary units (one decimal), so `96,417 rows` and `3.0 KiB` read alike
everywhere. Durations are durations.py's."""

from __future__ import annotations

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def count(n: int) -> str:
    """`96417` → `96,417`."""
    return f"{n:,}"


def size(n_bytes: float) -> str:
    """`3072` → `3.0 KiB`, `512` → `512 B`, `5_000_000` → `4.8 MiB`: the next unit from 1,000
    on (no `1000 B` beside `2.0 KiB`), so a number has at most three digits before its
    point and a small size is never `0.0 MiB`. The status page formats bytes the same way."""
    value = float(n_bytes)
    unit = 0
    while abs(value) >= 1000 and unit < len(_SIZE_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{int(value)} B"
    return f"{value:,.1f} {_SIZE_UNITS[unit]}"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`1 commit`, `2,000 commits`."""
    return f"{count(n)} {noun if n == 1 else (nouns or noun + 's')}"
