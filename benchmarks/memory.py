"""Peak memory of the shipped defaults, the figures the Kubernetes memory request and limit
are sized from (deploy/kubernetes/deployment.yaml cites them):

    python benchmarks/memory.py --out benchmarks/results

(a) `goldstream replay` with config.example.toml over a Silver whose single commit holds
    `max_rows_per_batch` rows (5,000,000 by default): the largest batch of one commit the
    defaults allow (a larger commit is still one batch, read in the same chunks of
    `max_rows_per_chunk` rows, so its peak is not expected to grow with it);
(b) `goldstream replay` of 50 queries (the two seed queries, 25 copies each under their
    own names) over the throughput benchmark's Silver (300 commits x 20,000 rows).

Each is run once, as a child process on local disk; peak RSS is that child's
os.wait4 rusage. Linux starts a child's peak at its parent's RSS at fork time, so the
inputs are generated in a separate process and this one stays small (~100 MiB, below
every figure measured). It writes <out>/memory.json and <out>/memory.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.inputs import SilverSpec, ensure_silver  # noqa: E402
from benchmarks.measure import Measured, check, run  # noqa: E402
from benchmarks.run import CONFIG, machine  # noqa: E402
from testsupport.config import example_doc, seed_queries  # noqa: E402
from testsupport.process import cli_env, goldstream_argv  # noqa: E402

# One C call of the generator cannot draw more than ~1 M rows, so the big commit is
# built from pieces of this size and written by a single Delta append.
PIECE_ROWS = 1_000_000


def main() -> int:
    args = _parse()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    defaults = example_doc()
    big_rows = args.big_commit_rows or defaults["source"]["max_rows_per_batch"]
    results: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine()}

    big = args.workdir / "silver_one_big_commit"
    _in_own_process(_one_commit_silver, big, big_rows)
    m = _replay(CONFIG, big, args.workdir / "gold_one_big_commit")
    results["one_big_commit"] = {"silver_rows": big_rows, "silver_commits": 1, "queries": 2, **_figures(m)}
    _say(f"one {big_rows:,}-row commit: peak RSS {m.peak_rss_mb:.0f} MiB in {m.wall_s:.1f} s")

    spec = SilverSpec("silver_throughput", args.commits, args.rows_per_commit, seed=1)
    _in_own_process(ensure_silver, args.workdir, spec)
    silver = ensure_silver(args.workdir, spec)  # reused: only reads its marker
    m = _replay(CONFIG, silver.path, args.workdir / "gold_many_queries", _many_queries(args.queries))
    results["many_queries"] = {"silver_rows": silver.rows, "silver_commits": silver.versions,
                               "queries": args.queries, **_figures(m)}
    _say(f"{args.queries} queries: peak RSS {m.peak_rss_mb:.0f} MiB in {m.wall_s:.1f} s")

    # The floor of both figures above: a child's peak starts at this process's RSS.
    results["measuring_process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    table = render(results)
    print(table)
    (args.out / "memory.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.out / "memory.md").write_text(table + "\n")
    return 0


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work")
    p.add_argument("--big-commit-rows", type=int, default=0, help="default: the shipped max_rows_per_batch")
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--commits", type=int, default=300)
    p.add_argument("--rows-per-commit", type=int, default=20_000)
    return p.parse_args()


def _say(text: str) -> None:
    print(f"[memory] {text}", file=sys.stderr, flush=True)


def _in_own_process(fn: Callable[..., Any], *args: Any) -> None:
    """Run fn(*args) in a fresh interpreter, so its memory never inflates a later child's peak."""
    proc = multiprocessing.get_context("spawn").Process(target=fn, args=args)
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{fn.__name__}{args} failed with exit code {proc.exitcode}")


def _one_commit_silver(path: Path, rows: int) -> None:
    """A Silver table of exactly one commit of `rows` rows (regenerated every run)."""
    import polars as pl

    from goldstream.demo.synth import synth_commit_frames
    from testsupport.silver import append_commits

    shutil.rmtree(path, ignore_errors=True)
    pieces: list[pl.DataFrame] = []
    have = 0
    for frame in synth_commit_frames(rows // PIECE_ROWS + 10, PIECE_ROWS, seed=3):
        if have >= rows:
            break
        pieces.append(frame.head(rows - have))
        have += pieces[-1].height
    append_commits(path, [pl.concat(pieces)])


def _many_queries(count: int) -> dict[str, str]:
    """GOLDSTREAM_QUERIES: the seed queries repeated under their own names, `count` in all."""
    seeds = list(seed_queries().values())
    queries = [{**seeds[i % len(seeds)], "name": f"{seeds[i % len(seeds)]['name']}_{i:02d}"} for i in range(count)]
    return {"GOLDSTREAM_QUERIES": json.dumps(queries)}


def _replay(config: Path, silver: Path, gold: Path, env: dict[str, str] | None = None) -> Measured:
    shutil.rmtree(gold, ignore_errors=True)
    return check(run(goldstream_argv("replay", "--config", str(config), "--silver", str(silver),
                                     "--gold-root", str(gold), "--json"), env=cli_env(**(env or {}))), "goldstream replay")


def _figures(m: Measured) -> dict[str, Any]:
    """ru_maxrss is in KiB, so measure's `peak_rss_mb` is MiB: the unit of a pod's `Mi`."""
    return {"peak_rss_mib": round(m.peak_rss_mb, 1), "wall_s": round(m.wall_s, 2), "cpu_s": round(m.cpu_s, 2),
            "argv": m.argv}


def render(r: dict[str, Any]) -> str:
    mach, a, b = r["machine"], r["one_big_commit"], r["many_queries"]
    return "\n".join([
        f"Machine: {mach['nproc']} cores ({mach['cpu']}), Python {mach['python']}, Polars {mach['polars']}, "
        f"deltalake {mach['deltalake']}",
        f"Command: {r['command']}",
        "",
        "| measure | peak RSS (MiB) | wall | CPU |",
        "|---|---|---|---|",
        f"| (a) `replay`, both seed queries, one Silver commit of {a['silver_rows']:,} rows (max_rows_per_batch) "
        f"| **{a['peak_rss_mib']:.0f} MiB** | {a['wall_s']:.1f} s | {a['cpu_s']:.1f} s |",
        f"| (b) `replay`, {b['queries']} queries, {b['silver_commits']} commits ({b['silver_rows']:,} rows) "
        f"| **{b['peak_rss_mib']:.0f} MiB** | {b['wall_s']:.1f} s | {b['cpu_s']:.1f} s |",
        "",
        f"Peak RSS of the measuring process (the floor of both figures): {r['measuring_process_peak_rss_mib']:.0f} MiB",
    ])


if __name__ == "__main__":
    sys.exit(main())
