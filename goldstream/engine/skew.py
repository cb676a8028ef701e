"""Opt-in guard against event times in the far future (`max_event_time_skew`).

One row stamped years ahead (a broken device clock, a unit error) moves Spark's
watermark years ahead and makes every later row late. With a skew bound, a row whose
event time is more than the bound ahead of the moment its Silver commit was written is
refused instead: counted as late, sent to the late sink, and it neither counts in a
window nor moves the watermark. This is a documented departure from Spark.

The reference is the commit's own timestamp (`COMMIT_MS`, taken from the Delta log),
not the wall clock of the reading process: a replay or a restart years later decides
exactly as the live stream did, so Gold stays a pure function of Silver's history.
A commit without commitInfo gets its log file's modification time (the protocol's
fallback) when it is read. The rule itself is `WindowedAggregation._is_future`, applied
inside the batch's one group-by over the rows.
"""

from __future__ import annotations

COMMIT_MS = "__commit_ms"  # Silver commit timestamp (ms since the epoch), one per row
MISSED_WINDOW_END = "__missed_window_end"

