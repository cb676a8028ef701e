"""The conformance cases: a Silver table and the Gold Spark wrote from it, per case."""

from __future__ import annotations

from pathlib import Path

from testsupport import ROOT

CONFORMANCE_DIRS = [ROOT / "tests" / "conformance", ROOT.parent / "shared" / "conformance"]


def conformance_cases() -> list[Path]:
    """Cases copied into tests/ plus any case found in ../shared/conformance (by name)."""
    cases: dict[str, Path] = {}
    for d in CONFORMANCE_DIRS:
        if d.is_dir():
            for c in sorted(d.iterdir()):
                if (c / "silver" / "_delta_log").is_dir() and (c / "expected").is_dir():
                    cases[c.name] = c
    return [cases[k] for k in sorted(cases)]
