"""What the tests and the benchmarks both need, in one place: goldstream configs (TOML),
Silver tables written commit by commit, Gold's recorded offsets, and goldstream run as a
child process.

A top-level package (not under tests/) so that both `pytest` and `python benchmarks/run.py`
import it from the checkout's root; it is not part of the goldstream distribution.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
