"""Offsets that never expire: the table property that would hide them.

A Delta `txn` whose lastUpdated is older than the table's
`delta.setTransactionRetentionDuration` is hidden by readers and dropped by the next
checkpoint. A query idle (or stopped) longer than that would find no offsets and either
refuse to start or, worse, start again from scratch. Without the property `txn`s never
expire, so goldstream sets none when it creates a table; a table that has one shorter
than a century gets it raised to a century (`NEVER`), which also brings back offsets
that were only hidden, not yet dropped by a checkpoint.
"""

from __future__ import annotations

import re
from datetime import timedelta

PROPERTY = "delta.setTransactionRetentionDuration"
NEVER = "interval 36500 days"
_NEVER = timedelta(days=36500)
_UNITS = {"nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1, "minute": 60, "hour": 3600,
          "day": 86400, "week": 7 * 86400}
_INTERVAL = re.compile(r"^\s*(?:interval\s+)?(\d+)\s*([a-z]+?)s?\s*$", re.IGNORECASE)


def expiring(configuration: dict[str, str]) -> str | None:
    """The property's value if it could expire offsets within a century (an unreadable
    value counts as expiring), else None."""
    value = configuration.get(PROPERTY)
    if value is None:
        return None
    m = _INTERVAL.match(value)
    unit = _UNITS.get(m.group(2).lower()) if m else None
    if m is None or unit is None:
        return value
    return value if timedelta(seconds=int(m.group(1)) * unit) < _NEVER else None
