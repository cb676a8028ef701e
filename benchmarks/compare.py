"""Replay throughput of two commits of goldstream, side by side on the same Silver:

    python benchmarks/compare.py OLD_REV NEW_REV --repeat 5

A refactoring must not slow the replay down. Each revision is checked out (read-only,
`git worktree add --detach`) under --workdir, and `goldstream replay` of the seed queries
runs over the benchmark's throughput Silver, alternating old and new --repeat times each,
so background load hits both alike. It prints the median wall and CPU time of each and the
ratio new/old; both must emit the same Gold rows (row counts are compared).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.inputs import SilverSpec, ensure_silver  # noqa: E402
from benchmarks.measure import Measured, check, run  # noqa: E402
from testsupport.process import cli_env, goldstream_argv  # noqa: E402


def checkout(rev: str, workdir: Path) -> Path:
    """A detached worktree of `rev` (reused when it is already there at that commit)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    path = workdir / f"rev-{sha[:12]}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), sha], check=True,
                       capture_output=True)
    return path


def replay(tree: Path, silver: Path, gold: Path) -> tuple[Measured, dict[str, int]]:
    shutil.rmtree(gold, ignore_errors=True)
    m = check(run(goldstream_argv("replay", "--config", str(tree / "config.example.toml"), "--silver", str(silver),
                                  "--gold-root", str(gold), "--json"), env=cli_env(PYTHONPATH=str(tree))),
              f"replay at {tree.name}")
    summary = json.loads(m.stdout_tail[-1])["summary"]
    return m, {s["query"]: s["windows_emitted"] for s in summary}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work")
    p.add_argument("--commits", type=int, default=300)
    p.add_argument("--rows-per-commit", type=int, default=20_000)
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    silver = ensure_silver(args.workdir, SilverSpec("silver_throughput", args.commits, args.rows_per_commit, seed=1))
    trees = {"old": checkout(args.old, args.workdir), "new": checkout(args.new, args.workdir)}
    walls: dict[str, list[float]] = {"old": [], "new": []}
    cpus: dict[str, list[float]] = {"old": [], "new": []}
    windows: dict[str, dict[str, int]] = {}
    for i in range(args.repeat):
        for which, tree in trees.items():
            m, windows[which] = replay(tree, silver.path, args.workdir / f"gold_compare_{which}")
            walls[which].append(m.wall_s)
            cpus[which].append(m.cpu_s)
            print(f"run {i + 1}/{args.repeat} {which} ({tree.name}): {m.wall_s:.2f} s wall, {m.cpu_s:.2f} s CPU",
                  flush=True)
    if windows["old"] != windows["new"]:
        raise SystemExit(f"the two revisions emitted different windows: {windows}")
    med = {w: statistics.median(walls[w]) for w in walls}
    cpu = {w: statistics.median(cpus[w]) for w in cpus}
    print(f"\n{silver.rows:,} rows, {silver.versions} commits, median of {args.repeat} alternating runs:")
    for w in ("old", "new"):
        print(f"  {w:>3} {trees[w].name}: {med[w]:.2f} s wall ({silver.rows / med[w] / 1e6:.2f} M rows/s), "
              f"{cpu[w]:.2f} s CPU")
    print(f"  new/old: wall {med['new'] / med['old']:.3f}, CPU {cpu['new'] / cpu['old']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
