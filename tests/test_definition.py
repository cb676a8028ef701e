"""A query's identity in Gold: its definition and fingerprint must never drift.

Every Gold table records the fingerprint of the query that wrote it (a `txn`) and the
definition itself (the table description); a restart compares both with the config. If
either were computed differently after a refactoring, every existing Gold table would
be refused as "written by a different definition". So the values for the seed queries
are pinned here.
"""

from __future__ import annotations

import json
from datetime import timedelta

from goldstream.config import load_settings
from goldstream.sink.definition import definition, fingerprint
from testsupport.config import EXAMPLE_CONFIG


def test_seed_query_identity_is_stable() -> None:
    queries = {q.name: q for q in load_settings(EXAMPLE_CONFIG).queries}
    stats = queries["country_stats"]
    assert json.dumps(definition(stats), sort_keys=True) == (
        '{"aggregates": [{"fn": "count", "name": "flight_count"}, {"column": "altitude_meters", "fn": "avg", '
        '"name": "avg_altitude"}, {"column": "velocity_kmh", "fn": "avg", "name": "avg_velocity"}, '
        '{"column": "on_ground", "equals": true, "fn": "count_if", "name": "ground_count"}, '
        '{"column": "on_ground", "equals": false, "fn": "count_if", "name": "airborne_count"}], '
        '"event_time": "event_timestamp", "keys": ["origin_country"], "watermark_delay_us": 120000000, '
        '"window": {"kind": "tumbling", "size_us": 60000000, "slide_us": 60000000}}'
    )
    assert fingerprint(stats) == 2113383537722610503
    assert fingerprint(queries["country_anomalies"]) == 3842652439676108244
    # the skew bound joins the definition only when set
    skewed = stats.model_copy(update={"max_event_time_skew": timedelta(hours=1)})
    assert fingerprint(skewed) == 4429306408641399779
