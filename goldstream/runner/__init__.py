"""Running the queries: the Pipeline (entry point), its Supervisor, Stream and query runs."""

from goldstream.runner.pipeline import Pipeline

__all__ = ["Pipeline"]
