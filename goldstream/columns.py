"""Column names shared across the flow: one vocabulary for source, engine and sinks.

The source tags every Silver row with bookkeeping columns that the engine reads and the
late table keeps; naming them here lets each package depend on this module instead of on
another package's internals. The double underscore keeps them apart from Silver's own
columns.
"""

VERSION = "__version"  # Silver commit version of a row
COMMIT_MS = "__commit_ms"  # that commit's timestamp (ms since the epoch), for the skew bound
MISSED_WINDOW_END = "__missed_window_end"  # end of the last window a late row missed

# Gold: every query's rows start with the window bounds.
WINDOW_START = "window_start"
WINDOW_END = "window_end"

# The late table: a dropped row, its Silver version and the last window it missed.
LATE_VERSION = "silver_version"
LATE_MISSED_WINDOW_END = "missed_window_end"
