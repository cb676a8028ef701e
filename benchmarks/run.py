"""goldstream benchmark: one command, from a clean checkout (nothing to install beyond
the project's dependencies; the working copy is put on PYTHONPATH for the children):

    python benchmarks/run.py --out benchmarks/results

It generates its inputs under --workdir (default benchmarks/.work; reused on later runs
while their parameters match, --fresh regenerates) and measures, in one run:

(a) `goldstream replay` of both seed queries (config.example.toml, default settings) over
    a 300-commit x 20,000-row synthetic Silver, as a child process: wall time, Silver
    rows/s, CPU time, peak RSS (os.wait4 rusage of that child);
(b) the floor: the same windows as a one-shot Polars batch job (benchmarks/floor.py)
    over the same Parquet files, also a child process;
(c) the ratio (a)/(b) of median wall times ((a) and (b) runs are interleaved, --repeat
    times each, so background load hits both alike);
(d) the RSS of one `goldstream replay` after 1 h, 6 h and 24 h of a 24-hour history at
    the OpenSky commit cadence (8,640 commits, one per 10 s of event time) but a
    scaled-down row rate (--history-rows-per-commit, default 500 = 50 rows/s, 2.5% of
    OpenSky's ~2,000 rows/s: 173 M rows would take hours to generate and replay on two
    cores), sampled from /proc when its progress records pass those versions;
(e) live latency: `goldstream run` polling (--poll, default 1 s) a Silver receiving a
    commit every second (--live-rows rows each): time from the Silver commit that
    closed a window to the Gold commit holding it, median and p95 (benchmarks/live.py);
(f) per-aircraft queries (examples/per_aircraft.toml: the seed queries keyed by icao24)
    over 120 commits x 50,000 rows with --aircraft distinct icao24 each (default 10 k,
    100 k and 1 M), `replay` beside the floor keyed by icao24, interleaved as in (c).

It prints a table and writes <out>/results.json and <out>/results.md. Targets (two cores;
issues 6 and 21): (a) >= 1.5 M rows/s; (a)/(b) <= 1.2; peak RSS <= 300 MB on (a) and flat
with history (24 h <= 1.2 x 1 h); latency median <= poll interval + 300 ms; (f) <= 1.5.
`--quick` shrinks every input (a smoke test, not a measurement).

Timings on a shared machine are noisy: the load average before and after is recorded,
and CPU seconds (less sensitive to other processes than wall time) are reported next to
wall times. To see where a replay spends its time (`pip install py-spy`; Polars' own
threads do not show, the main thread waiting on them does, with --idle):

    PYTHONPATH=. py-spy record --idle --nonblocking -o replay.svg -- \
        python -m goldstream replay --config config.example.toml \
        --silver benchmarks/.work/silver_throughput --gold-root /tmp/gold
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.inputs import (  # noqa: E402
    CHECKPOINT_EVERY,
    HISTORY_COMMITS,
    HISTORY_ROWS_PER_COMMIT,
    OPENSKY_ROWS_PER_S,
    Silver,
    SilverSpec,
    ensure_silver,
)
from benchmarks.live import live_latency  # noqa: E402
from benchmarks.measure import Measured, check, rss_mb, run  # noqa: E402
from testsupport.config import EXAMPLE_CONFIG as CONFIG  # noqa: E402
from testsupport.process import end_offset, goldstream_argv, progress_record  # noqa: E402
PER_AIRCRAFT = ROOT / "examples" / "per_aircraft.toml"
TARGETS = {"rows_per_s": 1.5e6, "ratio": 1.2, "peak_rss_mb": 300.0, "history_growth": 1.2, "latency_slack_s": 0.3,
           "aircraft_ratio": 1.5, "aircraft_rss_mb_1m": 1200.0, "aircraft_rss_mb_10k": 300.0}


def main() -> int:
    args = _parse()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                               "machine": machine(), "load_before": os.getloadavg()}

    silver = ensure_silver(args.workdir, SilverSpec("silver_throughput", args.commits, args.rows_per_commit, seed=1),
                           args.fresh)
    _say(f"throughput Silver: {silver.rows:,} rows in {silver.versions} commits"
         + (f" (generated in {silver.generated_s:.0f} s)" if silver.generated_s else " (reused)"))
    results["throughput"] = throughput(silver, args)
    if not args.skip_history:
        history = ensure_silver(args.workdir, SilverSpec("silver_history_24h", args.history_commits,
                                                         args.history_rows_per_commit, seed=2, writer="bulk",
                                                         checkpoint_every=CHECKPOINT_EVERY), args.fresh)
        _say(f"history Silver: {history.rows:,} rows in {history.versions} commits"
             + (f" (generated in {history.generated_s:.0f} s)" if history.generated_s else " (reused)"))
        results["history"] = history_rss(history, args)
    if not args.skip_aircraft:
        results["aircraft"] = [per_aircraft(args, n) for n in args.aircraft]
    if not args.skip_live:
        _say(f"live: {args.live_seconds} commits, one per second, polling every {args.poll} s")
        results["live"] = live_latency(args.workdir, args.live_seconds, args.live_rows, args.poll, CONFIG)
    results["load_after"] = os.getloadavg()
    results["elapsed_s"] = round(time.time() - started, 1)
    results["targets"] = verdicts(results, args.poll)
    table = render(results)
    print(table)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.out / "results.md").write_text(table + "\n")
    _say(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work")
    p.add_argument("--fresh", action="store_true", help="regenerate the Silver inputs")
    p.add_argument("--repeat", type=int, default=3, help="runs of (a) and of (b), interleaved")
    p.add_argument("--commits", type=int, default=300)
    p.add_argument("--rows-per-commit", type=int, default=20_000)
    p.add_argument("--history-commits", type=int, default=HISTORY_COMMITS)
    p.add_argument("--history-rows-per-commit", type=int, default=HISTORY_ROWS_PER_COMMIT)
    p.add_argument("--live-seconds", type=int, default=90, help="Silver commits written, one per second")
    p.add_argument("--live-rows", type=int, default=2_000, help="rows per live commit (OpenSky: ~2,000/s)")
    p.add_argument("--poll", type=float, default=1.0, help="poll interval of the live daemon, seconds")
    p.add_argument("--skip-history", action="store_true")
    p.add_argument("--skip-live", action="store_true")
    p.add_argument("--aircraft", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                   help="(f): distinct icao24 per Silver")
    p.add_argument("--aircraft-commits", type=int, default=120)
    p.add_argument("--aircraft-rows-per-commit", type=int, default=50_000)
    p.add_argument("--skip-aircraft", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny inputs: a smoke test of the benchmark itself")
    args = p.parse_args()
    if args.quick:
        args.commits, args.rows_per_commit, args.repeat = 12, 2_000, 1
        args.history_commits, args.history_rows_per_commit = 96, 50
        args.live_seconds, args.live_rows = 14, 200
        args.aircraft, args.aircraft_commits, args.aircraft_rows_per_commit = [2_000], 6, 2_000
    return args


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# -- (a), (b), (c) -------------------------------------------------------------------------


def throughput(silver: Silver, args: argparse.Namespace, config: Path = CONFIG,
               key: str = "origin_country") -> dict[str, Any]:
    """(a), (b), (c) for one Silver and configuration: `replay` and the floor, interleaved."""
    replays: list[Measured] = []
    floors: list[Measured] = []
    floor_out: dict[str, Any] = {}
    for i in range(args.repeat):
        gold = args.workdir / "gold_throughput"
        shutil.rmtree(gold, ignore_errors=True)
        m = check(run(goldstream_argv("replay", "--config", str(config), "--silver", str(silver.path),
                                      "--gold-root", str(gold), "--json")), "goldstream replay")
        summary = {s["query"]: s for s in json.loads(m.stdout_tail[-1])["summary"]}
        bad = {q: s["rows_in"] for q, s in summary.items() if s["rows_in"] != silver.rows}
        if bad:
            raise RuntimeError(f"replay took in {bad} rows, Silver has {silver.rows}")
        replays.append(m)
        f = check(run([sys.executable, str(ROOT / "benchmarks" / "floor.py"), str(silver.path), "--key", key]),
                  "floor")
        floor_out = json.loads(f.stdout_tail[-1])
        floors.append(f)
        _say(f"run {i + 1}/{args.repeat}: replay {m.wall_s:.2f} s ({m.cpu_s:.2f} s CPU, {m.peak_rss_mb:.0f} MB), "
             f"floor {f.wall_s:.2f} s ({f.cpu_s:.2f} s CPU, {f.peak_rss_mb:.0f} MB)")
    a, b = _stats(replays), _stats(floors)
    return {
        "silver_rows": silver.rows, "silver_commits": silver.versions,
        "rows_per_commit": silver.spec.rows_per_commit, "repeat": args.repeat,
        "replay": a, "floor": b, "floor_output": floor_out,
        "rows_per_s": silver.rows / a["wall_s_median"],
        "ratio": a["wall_s_median"] / b["wall_s_median"],
        "cpu_ratio": a["cpu_s_median"] / b["cpu_s_median"],
        "gold_summary": summary,
    }


def per_aircraft(args: argparse.Namespace, aircraft: int) -> dict[str, Any]:
    """(f): the per-aircraft example over a Silver of `aircraft` distinct icao24."""
    spec = SilverSpec(f"silver_aircraft_{aircraft}", args.aircraft_commits, args.aircraft_rows_per_commit, seed=3,
                      writer="bulk", aircraft=aircraft)
    silver = ensure_silver(args.workdir, spec, args.fresh)
    _say(f"per-aircraft Silver: {silver.rows:,} rows, {aircraft:,} aircraft")
    return {"aircraft": aircraft, **throughput(silver, args, PER_AIRCRAFT, "icao24")}


def _stats(ms: list[Measured]) -> dict[str, Any]:
    return {
        "wall_s_median": statistics.median(m.wall_s for m in ms),
        "wall_s_min": min(m.wall_s for m in ms),
        "cpu_s_median": statistics.median(m.cpu_s for m in ms),
        "peak_rss_mb_max": max(m.peak_rss_mb for m in ms),
        "runs": [{"wall_s": round(m.wall_s, 3), "cpu_s": round(m.cpu_s, 3), "peak_rss_mb": round(m.peak_rss_mb, 1)}
                 for m in ms],
        "argv": ms[0].argv,
    }


# -- (d) ----------------------------------------------------------------------------------------


def history_rss(silver: Silver, args: argparse.Namespace) -> dict[str, Any]:
    """One replay over the whole history; RSS sampled each time a progress record arrives."""
    samples: list[tuple[int, float, float]] = []  # (Silver version reached, RSS, peak RSS so far)

    def on_line(line: str, pid: int) -> None:
        progress = progress_record(line)
        if progress is None:
            return
        try:
            samples.append((end_offset(progress), *rss_mb(pid)))
        except OSError:  # the process just exited
            pass

    gold = args.workdir / "gold_history"
    shutil.rmtree(gold, ignore_errors=True)
    m = check(run(goldstream_argv("replay", "--config", str(CONFIG), "--silver", str(silver.path),
                                  "--gold-root", str(gold), "--json"), on_line=on_line), "history replay")
    per_hour = silver.versions / 24
    points = []
    for label, hours in (("1 h", 1), ("6 h", 6), ("24 h", 24)):
        target = min(round(hours * per_hour) - 1, silver.versions - 1)
        reached = next((v for v, _, _ in samples if v >= target), None)
        if reached is None:
            continue
        rss, peak = [(r, p) for v, r, p in samples if v == reached][-1]
        points.append({"history": label, "silver_version": reached, "rss_mb": round(rss, 1),
                       "peak_rss_mb_so_far": round(peak, 1)})
    rows_per_s_equiv = silver.spec.rows_per_commit / silver.spec.commit_interval_s
    return {
        "silver_commits": silver.versions, "silver_rows": silver.rows,
        "rows_per_commit": silver.spec.rows_per_commit,
        "row_rate_note": (f"scaled down: {rows_per_s_equiv:g} rows/s of event time "
                          f"({100 * rows_per_s_equiv / OPENSKY_ROWS_PER_S:g}% of OpenSky's ~{OPENSKY_ROWS_PER_S:,} "
                          f"rows/s); commit cadence kept (one commit per {silver.spec.commit_interval_s:g} s)"),
        "wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_rss_mb": m.peak_rss_mb,
        "rows_per_s": silver.rows / m.wall_s, "commits_per_s": silver.versions / m.wall_s,
        "points": points,
    }


# -- report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def sh(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import deltalake
    import polars

    return {"nproc": sh("nproc") or os.cpu_count(), "cpu": model, "free_h": sh("free", "-h"),
            "python": platform.python_version(), "polars": polars.__version__, "deltalake": deltalake.__version__,
            "platform": platform.platform()}


def verdicts(r: dict[str, Any], poll: float) -> dict[str, Any]:
    t = r["throughput"]
    out: dict[str, Any] = {
        "a_rows_per_s": {"value": t["rows_per_s"], "target": f">= {TARGETS['rows_per_s']:,.0f}",
                         "ok": t["rows_per_s"] >= TARGETS["rows_per_s"]},
        "c_ratio": {"value": t["ratio"], "target": f"<= {TARGETS['ratio']}", "ok": t["ratio"] <= TARGETS["ratio"]},
        "a_peak_rss_mb": {"value": t["replay"]["peak_rss_mb_max"], "target": f"<= {TARGETS['peak_rss_mb']:g}",
                          "ok": t["replay"]["peak_rss_mb_max"] <= TARGETS["peak_rss_mb"]},
    }
    for f in r.get("aircraft", []):
        n, rss = f["aircraft"], f["replay"]["peak_rss_mb_max"]
        out[f"f_ratio_{n}"] = {"value": f["ratio"], "target": f"<= {TARGETS['aircraft_ratio']}",
                               "ok": f["ratio"] <= TARGETS["aircraft_ratio"]}
        limit = TARGETS["aircraft_rss_mb_1m"] if n >= 1_000_000 else TARGETS["aircraft_rss_mb_10k"] if n <= 10_000 else None
        if limit is not None:
            out[f"f_peak_rss_mb_{n}"] = {"value": rss, "target": f"<= {limit:g}", "ok": rss <= limit}
    pts = {p["history"]: p for p in r.get("history", {}).get("points", [])}
    if "1 h" in pts and "24 h" in pts:
        growth = pts["24 h"]["rss_mb"] / pts["1 h"]["rss_mb"]
        out["d_rss_24h_over_1h"] = {"value": growth, "target": f"<= {TARGETS['history_growth']}",
                                    "ok": growth <= TARGETS["history_growth"]}
    live = r.get("live")
    if live and live.get("median_s") is not None:
        out["e_latency_median_s"] = {"value": live["median_s"], "target": f"<= {poll + TARGETS['latency_slack_s']:g}",
                                     "ok": live["median_s"] <= poll + TARGETS["latency_slack_s"]}
    return out


def render(r: dict[str, Any]) -> str:
    t, mach = r["throughput"], r["machine"]
    a, b = t["replay"], t["floor"]
    lines = [
        f"Machine: {mach['nproc']} cores ({mach['cpu']}), Python {mach['python']}, Polars {mach['polars']}, "
        f"deltalake {mach['deltalake']}; load average before/after: "
        f"{'/'.join(f'{x:.1f}' for x in r['load_before'])} / {'/'.join(f'{x:.1f}' for x in r['load_after'])}",
        f"Command: {r['command']}",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| (a) `goldstream replay`, both queries, {t['silver_commits']} commits x {t['rows_per_commit']:,} rows "
        f"({t['silver_rows']:,} rows), median of {t['repeat']} | {a['wall_s_median']:.2f} s wall "
        f"(min {a['wall_s_min']:.2f}), {a['cpu_s_median']:.2f} s CPU, **{t['rows_per_s'] / 1e6:.2f} M rows/s**, "
        f"peak RSS {a['peak_rss_mb_max']:.0f} MB | >= 1.5 M rows/s, <= 300 MB |",
        f"| (b) floor: one-shot Polars batch query, same files | {b['wall_s_median']:.2f} s wall "
        f"(min {b['wall_s_min']:.2f}), {b['cpu_s_median']:.2f} s CPU, peak RSS {b['peak_rss_mb_max']:.0f} MB | |",
        f"| (c) ratio (a)/(b), wall (CPU) | **{t['ratio']:.2f}** ({t['cpu_ratio']:.2f}) | <= {TARGETS['ratio']} |",
    ]
    h = r.get("history")
    if h:
        pts = ", ".join(f"{p['history']} (v{p['silver_version']}): {p['rss_mb']:.0f} MB" for p in h["points"])
        lines.append(f"| (d) RSS of one replay after 1 h / 6 h / 24 h of history ({h['silver_commits']:,} commits, "
                     f"{h['rows_per_commit']} rows each: {h['row_rate_note']}) | {pts}; peak {h['peak_rss_mb']:.0f} MB; "
                     f"{h['wall_s']:.0f} s, {h['commits_per_s']:.0f} commits/s | 24 h <= 1.2 x 1 h |")
    for f in r.get("aircraft", []):
        fa, fb = f["replay"], f["floor"]
        lines.append(f"| (f) per-aircraft queries, {f['aircraft']:,} aircraft, {f['silver_rows']:,} rows: replay / floor, "
                     f"median of {f['repeat']} | {fa['wall_s_median']:.1f} s / {fb['wall_s_median']:.1f} s = "
                     f"**{f['ratio']:.2f}** (CPU {f['cpu_ratio']:.2f}); peak RSS {fa['peak_rss_mb_max']:.0f} MB "
                     f"(floor {fb['peak_rss_mb_max']:.0f} MB) | <= 1.5; <= 1.2 GB at 1 M, <= 300 MB at 10 k |")
    live = r.get("live")
    if live:
        lines.append(f"| (e) live latency, Silver commit -> Gold commit, poll {live['poll_interval_s']:g} s, "
                     f"{live['silver_commits']} commits of {live['rows_per_commit']:,} rows, {live['samples']} windows-closing "
                     f"commits | median **{live['median_s']:.2f} s**, p95 {live['p95_s']:.2f} s, max {live['max_s']:.2f} s "
                     f"| median <= poll + 0.3 s |")
    lines.append("")
    lines.append("Targets: " + ", ".join(f"{k} {'OK' if v['ok'] else 'MISSED'} ({v['value']:.3g} vs {v['target']})"
                                         for k, v in r["targets"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
