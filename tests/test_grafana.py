"""The Grafana dashboard (deploy/grafana/goldstream.json) only queries metrics that
`/metrics` really exports: a renamed or dropped metric would leave a panel silently empty."""

from __future__ import annotations

import json
import re

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from goldstream.observability import Metrics
from testsupport import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "goldstream.json"
METRIC = re.compile(r"\b((?:goldstream|process)_[a-z_]+)\b")


def _exported() -> set[str]:
    """Every sample name a scrape of a pipeline's registry holds, once a query is tracked."""
    metrics = Metrics()
    metrics.ensure("q", lambda: None)
    text = generate_latest(metrics.registry).decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    queried = {m for e in exprs for m in METRIC.findall(e)}
    assert queried, "the dashboard queries no goldstream metric"
    missing = queried - _exported()
    assert not missing, f"the dashboard queries metrics /metrics does not export: {sorted(missing)}"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("input", "lag", "state", "late", "duration", "error"):
        assert topic in titles, f"no panel about {topic}"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"]), "no hard-wired datasource"
