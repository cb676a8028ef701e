"""What the SQL subset refuses is refused by `validate-config` (a real subprocess, exit 2),
naming the query, the line and column in the SQL, the construct and why, before anything
runs. Spark itself computes some of these differently or not at all on a stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testsupport import ROOT
from testsupport.process import goldstream

DIMS = ROOT / "tests" / "conformance" / "opensky_paris_30min_sql" / "dims" / "aircraft"
GROUP = "GROUP BY window(event_timestamp, '1 minute'), origin_country"
SELECT = "SELECT window.start AS ws, origin_country, count(*) AS n"

CASES = [
    ("stream_stream_join", f"{SELECT}\nFROM silver s\n  JOIN silver t ON s.icao24 = t.icao24\n{GROUP}",
     "line 3, column 8: a stream-stream join", "join dimension tables only"),
    ("order_by", f"{SELECT}\nFROM silver\n{GROUP}\nORDER BY n", "line 4, column 10: ORDER BY is not supported",
     "a stream has no order"),
    ("limit", f"{SELECT}\nFROM silver\n{GROUP}\nLIMIT 10", "LIMIT is not supported", "depends on arrival order"),
    ("distinct", f"SELECT DISTINCT origin_country AS c, count(*) AS n\nFROM silver\n{GROUP}",
     "SELECT DISTINCT over a whole query is not supported", "count(DISTINCT x) inside a window is"),
    ("udf", f"{SELECT}, avg(my_udf(velocity_kmh)) AS v\nFROM silver\n{GROUP}",
     "line 1, column 63: unknown function my_udf()", "goldstream runs no UDFs"),
    ("no_window", "SELECT origin_country, count(*) AS n\nFROM silver\nGROUP BY origin_country",
     "GROUP BY needs exactly one window(...) or session_window(...)", ""),
    ("aggregate_without_group", "SELECT count(*) AS n\nFROM silver",
     "line 1, column 8: an aggregate with no window", "a streaming aggregation in append mode needs an event-time"),
    ("non_equality_join", f"{SELECT}\nFROM silver s JOIN aircraft a ON s.icao24 < a.icao24\n{GROUP}",
     "line 2, column 34: `s.icao24 < a.icao24`: a join condition must be equalities", "non-equality join"),
    ("window_as_key", f"{SELECT}\nFROM silver\n{GROUP}, window.end",
     "line 3, column 63: `window.end`: the window column used as a key", "already part of every group"),
    ("unnamed_expression", "SELECT window.start AS ws, count(*) + 1\nFROM silver\n" + GROUP,
     "line 1, column 28: `COUNT(*) + 1` needs a name", "AS <name>"),
    ("ungrouped_column", f"{SELECT}, callsign\nFROM silver\n{GROUP}",
     "line 1, column 59: column 'callsign' is neither in GROUP BY nor inside an aggregate", ""),
    ("unknown_table", f"{SELECT}\nFROM silver s JOIN owners o ON s.icao24 = o.icao24\n{GROUP}",
     "joins table 'owners', which [tables] does not name", "add owners ="),
]


@pytest.mark.parametrize(("name", "sql", "where_what", "why"), CASES, ids=[c[0] for c in CASES])
def test_validate_config_refuses_with_place_construct_and_reason(tmp_path: Path, name: str, sql: str,
                                                                 where_what: str, why: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[tables]\naircraft = "{DIMS}"\n\n[[queries]]\nname = "{name}"\n'
                      f'watermark_delay = "2 minutes"\nsql = {json.dumps(sql)}\n')
    proc = goldstream("validate-config", str(config), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"query '{name}'" in proc.stderr
    assert where_what in proc.stderr, proc.stderr
    assert why in proc.stderr
    assert "Traceback" not in proc.stderr
