"""The configured queries as a job for a distributed engine: `goldstream export spark`.

Scale-out is Spark's job, not goldstream's: the export turns the same configuration into
a self-contained PySpark Structured Streaming job computing the same Gold rows, refusing
what Spark cannot express the same way (rules.py) and writing the job (spark_job.py).
"""

from __future__ import annotations

from goldstream.config import Settings
from goldstream.export.rules import ExportRefused, plan_export
from goldstream.export.spark_job import render_job

__all__ = ["ExportRefused", "export_spark"]


def export_spark(settings: Settings, config_name: str, approximate: bool = False) -> tuple[str, list[str]]:
    """The job's text and the notes on what it does differently (ExportRefused if Spark
    cannot compute these queries the same way)."""
    plan = plan_export(settings, approximate)
    return render_job(plan, config_name), plan.notes
