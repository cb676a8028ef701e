"""A command's fixed cost beside the floor (issue 21, "a fixed cost near the floor's"):

    python benchmarks/startup.py [--repeat 9] [--workdir DIR] [--out FILE.json]

Each measure is a whole child process, run --repeat times, the measures interleaved (so
background load hits all alike); medians of wall time, and of CPU time (user + system of
the child, less sensitive to the other processes of a shared machine):

- `python -c pass`: the interpreter alone;
- the floor, `python -c 'import polars, deltalake'`: what every command that reads a
  Delta table pays at least;
- `goldstream --help`;
- `goldstream validate-config config.example.toml`;
- `replay` of a 2-commit Silver (2 x 2,000 rows, both seed queries) into a fresh Gold;
- `replay` of the same Silver again: nothing new (Gold already holds it).

Targets: the two replays <= floor + 0.3 s; --help <= 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from goldstream.demo.synth import generate_silver  # noqa: E402

CONFIG = ROOT / "config.example.toml"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one child process run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "goldstream-startup")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    silver, gold = args.workdir / "silver", args.workdir / "gold"
    generate_silver(str(silver), 2, 2000, seed=5)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    py, gs = [sys.executable], [sys.executable, "-m", "goldstream"]
    replay = [*gs, "replay", "--config", str(CONFIG), "--silver", str(silver), "--gold-root", str(gold)]
    measures: dict[str, list[str]] = {
        "python -c pass": [*py, "-c", "pass"],
        "floor: import polars, deltalake": [*py, "-c", "import polars, deltalake"],
        "goldstream --help": [*gs, "--help"],
        "goldstream validate-config": [*gs, "validate-config", str(CONFIG)],
        "replay, 2-commit Silver, fresh Gold": replay,
        "replay, nothing new": replay,
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in measures}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        for name, argv in measures.items():
            if name.endswith("fresh Gold"):
                shutil.rmtree(gold, ignore_errors=True)
            runs[name].append(timed(argv, env))
    out: dict[str, Any] = {"repeat": args.repeat, "load_before": load_before, "load_after": os.getloadavg(),
                           "measures": {}}
    floor = statistics.median(w for w, _ in runs["floor: import polars, deltalake"])
    for name, xs in runs.items():
        wall, cpu = statistics.median(w for w, _ in xs), statistics.median(c for _, c in xs)
        out["measures"][name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                                 "wall_above_floor_s": round(wall - floor, 3),
                                 "walls": [round(w, 3) for w, _ in xs]}
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print("| command | median wall | above the floor | median CPU |\n|---|---|---|---|")
    for name, m in out["measures"].items():
        print(f"| {name} | {m['wall_s']:.3f} s | {m['wall_above_floor_s']:+.3f} s | {m['cpu_s']:.3f} s |")


if __name__ == "__main__":
    main()
