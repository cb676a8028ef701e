"""Live latency: `goldstream run` polling a Silver table that receives a commit every second.

The latency of a closed window is the time from the Silver commit that closed it (the
first commit after which the watermark reached the window's end) to the Gold commit
that holds it. Both instants are read off the two Delta logs: the modification time of
`_delta_log/<version>.json`, i.e. the moment each commit became visible to readers (one
clock: the same machine). Event time runs 10 s per commit (10x wall clock) so that
windows close every ~6 s and a short run yields a few dozen samples.

`live_at_scale` (issue 21, "Live at scale"; `python benchmarks/live.py --help`) runs the
per-aircraft queries (examples/per_aircraft.toml) with 1 M keys in state: Silver's first
commit holds one row for each of 1 M distinct icao24, then a 2,000-row commit arrives every
second (event time at the wall clock's pace, one second per commit, aircraft drawn from a
1 M fleet), `goldstream run` polling every second. Latency as above, and the daemon's RSS
sampled every 2 s from /proc.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from goldstream.config import load_settings
from goldstream.demo.synth import synth_commit_frames
from testsupport import ROOT
from testsupport.process import cli_env, end_offset, goldstream_argv, progress_record
from testsupport.silver import DeltaAppender
from benchmarks.measure import rss_mb


def live_latency(workdir: Path, seconds: int, rows_per_commit: int, poll_s: float, config: Path,
                 seed: int = 11) -> dict[str, Any]:
    silver, gold = workdir / "live_silver", workdir / "live_gold"
    shutil.rmtree(silver, ignore_errors=True)
    shutil.rmtree(gold, ignore_errors=True)
    delays = _watermark_delays_us(config)
    frames = list(synth_commit_frames(seconds + 1, rows_per_commit, seed, commit_interval_s=10.0))
    writer = DeltaAppender(silver)
    writer.append(frames[0])
    env = cli_env(GOLDSTREAM_SOURCE__POLL_INTERVAL=f"{int(poll_s * 1000)}ms")
    daemon = subprocess.Popen(
        goldstream_argv("run", "--config", str(config), "--silver", str(silver), "--gold-root", str(gold),
                        "--http-port", "0"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    reached: dict[str, int] = {}
    ready = threading.Event()
    lines: list[str] = []

    def follow() -> None:
        for line in daemon.stdout:  # type: ignore[union-attr]
            lines.append(line)
            del lines[:-20]
            progress = progress_record(line)
            if progress:
                reached[progress["name"]] = end_offset(progress)
                if len(reached) == len(delays):
                    ready.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        if not ready.wait(120):
            raise RuntimeError("goldstream run did not process the first commit:\n" + "".join(lines))
        start = time.time() + 0.5
        for i in range(1, seconds + 1):
            time.sleep(max(0.0, start + i - time.time()))
            writer.append(frames[i])
        deadline = time.time() + 60
        while min(reached.values()) < seconds and time.time() < deadline and daemon.poll() is None:
            time.sleep(0.1)
        caught_up = min(reached.values()) >= seconds
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = daemon.wait()
        reader.join(timeout=5)
    if not caught_up or code != 0:
        raise RuntimeError(f"goldstream run exited {code}, caught up: {caught_up}:\n" + "".join(lines))
    return _latencies(silver, gold, frames, seconds, poll_s, delays)


def _watermark_delays_us(config: Path) -> dict[str, int]:
    """Watermark delay of each query of the config, in µs (name -> delay)."""
    return {q.name: q.watermark_delay // timedelta(microseconds=1) for q in load_settings(config).queries}


def _visible_at(table: Path, version: int) -> float:
    return os.stat(table / "_delta_log" / f"{version:020d}.json").st_mtime


def _latencies(silver: Path, gold_root: Path, frames: list[pl.DataFrame], seconds: int,
               poll_s: float, delays: dict[str, int]) -> dict[str, Any]:
    silver_at = {v: _visible_at(silver, v) for v in range(seconds + 1)}
    max_event = [f["event_timestamp"].dt.epoch("us").max() if f.height else None for f in frames]
    samples: dict[str, list[float]] = {}
    for name, delay in delays.items():
        wm, after = 0, []
        for m in max_event:  # the engine's rule: per commit, ms-truncated, monotone
            if m is not None:
                wm = max(wm, (m // 1000) * 1000 - delay)
            after.append(wm)
        gold = gold_root / name
        per_commit: list[float] = []
        for log in sorted((gold / "_delta_log").glob("*.json")):
            version = int(log.stem)
            adds = [json.loads(x)["add"]["path"] for x in log.read_text().splitlines() if '"add"' in x]
            if not adds:
                continue
            ends = pl.concat([pl.read_parquet(gold / p, columns=["window_end"]) for p in adds])["window_end"]
            closers = {next(v for v, w in enumerate(after) if w >= end) for end in ends.dt.epoch("us").unique()}
            per_commit += [_visible_at(gold, version) - silver_at[v] for v in closers if v >= 1]
        samples[name] = per_commit
    every = [x for xs in samples.values() for x in xs]
    return {
        "poll_interval_s": poll_s,
        "silver_commits": seconds,
        "rows_per_commit": len(frames[1]) if len(frames) > 1 else 0,
        "samples": len(every),
        "median_s": statistics.median(every) if every else None,
        "p95_s": _quantile(every, 0.95),
        "max_s": max(every) if every else None,
        "per_query": {q: {"samples": len(xs), "median_s": statistics.median(xs) if xs else None,
                          "p95_s": _quantile(xs, 0.95)} for q, xs in samples.items()},
    }


def _quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[round(q * 100) - 1]


def live_at_scale(workdir: Path, seconds: int, rows_per_commit: int, poll_s: float, config: Path,
                  keys: int = 1_000_000, seed: int = 21) -> dict[str, Any]:
    """`goldstream run` on `config` with `keys` distinct keys taken in first, then one commit of
    `rows_per_commit` rows per second for `seconds` (event time one second per commit)."""
    silver, gold = workdir / "scale_silver", workdir / "scale_gold"
    shutil.rmtree(silver, ignore_errors=True)
    shutil.rmtree(gold, ignore_errors=True)
    delays = _watermark_delays_us(config)
    frames = list(synth_commit_frames(seconds + 1, rows_per_commit, seed, commit_interval_s=1.0, aircraft=keys))
    preload = next(synth_commit_frames(1, keys, seed + 1, commit_interval_s=1.0, aircraft=keys))
    frames[0] = preload.with_columns(icao24=pl.Series([f"{i:06x}" for i in range(preload.height)]))
    writer = DeltaAppender(silver)
    writer.append(frames[0])
    env = cli_env(GOLDSTREAM_SOURCE__POLL_INTERVAL=f"{int(poll_s * 1000)}ms")
    t_start = time.time()
    daemon = subprocess.Popen(
        goldstream_argv("run", "--config", str(config), "--silver", str(silver), "--gold-root", str(gold),
                        "--http-port", "0"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    reached: dict[str, int] = {}
    state_rows: list[tuple[float, int]] = []
    rss: list[tuple[float, float]] = []
    ready = threading.Event()
    done = threading.Event()
    lines: list[str] = []

    def follow() -> None:
        for line in daemon.stdout:  # type: ignore[union-attr]
            lines.append(line)
            del lines[:-20]
            progress = progress_record(line)
            if progress:
                reached[progress["name"]] = end_offset(progress)
                state_rows.append((time.time() - t_start, sum(
                    op["numRowsTotal"] for op in progress["stateOperators"])))
                if len(reached) == len(delays):
                    ready.set()

    def sample() -> None:
        while not done.wait(2.0):
            try:
                rss.append((time.time() - t_start, rss_mb(daemon.pid)[0]))
            except OSError:
                return

    reader = threading.Thread(target=follow, daemon=True)
    sampler = threading.Thread(target=sample, daemon=True)
    reader.start()
    sampler.start()
    try:
        while not ready.wait(1.0):
            if daemon.poll() is not None or time.time() - t_start > 900:
                raise RuntimeError("goldstream run did not process the first commit:\n" + "".join(lines))
        preloaded_s = time.time() - t_start
        start = time.time() + 0.5
        for i in range(1, seconds + 1):
            time.sleep(max(0.0, start + i - time.time()))
            writer.append(frames[i])
        deadline = time.time() + 120
        while min(reached.values()) < seconds and time.time() < deadline and daemon.poll() is None:
            time.sleep(0.1)
        caught_up = min(reached.values()) >= seconds
    finally:
        done.set()
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = daemon.wait()
        reader.join(timeout=5)
    if not caught_up or code != 0:
        raise RuntimeError(f"goldstream run exited {code}, caught up: {caught_up}:\n" + "".join(lines))
    out = _latencies(silver, gold, frames, seconds, poll_s, delays)
    live_rss = [r for t, r in rss if t >= preloaded_s]
    baseline = max((r for t, r in rss if preloaded_s <= t <= preloaded_s + 120), default=None)
    final = statistics.median(live_rss[-30:]) if live_rss else None
    out.update({
        "keys_preloaded": keys, "preload_s": round(preloaded_s, 1), "live_seconds": seconds,
        "rss_mb_after_preload_2min_max": baseline, "rss_mb_final_median_1min": final,
        "rss_mb_max": max(live_rss, default=None),
        "rss_growth": None if not baseline or final is None else final / baseline - 1,
        "rss_samples": [(round(t, 1), round(r, 1)) for t, r in rss],
        "state_rows": [(round(t, 1), n) for t, n in state_rows[::2]],
    })
    return out


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="Live at scale (issue 21): commit -> Gold latency and RSS of "
                                "`goldstream run` with 1 M keys in state")
    p.add_argument("--seconds", type=int, default=1800, help="live Silver commits, one per second")
    p.add_argument("--rows", type=int, default=2_000, help="rows per live commit")
    p.add_argument("--keys", type=int, default=1_000_000, help="distinct keys taken in first")
    p.add_argument("--poll", type=float, default=1.0)
    p.add_argument("--config", type=Path, default=ROOT / "examples" / "per_aircraft.toml")
    p.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    result = live_at_scale(args.workdir, args.seconds, args.rows, args.poll, args.config, args.keys)
    result["load_before"], result["load_after"] = load_before, os.getloadavg()
    result["command"] = "python benchmarks/live.py " + " ".join(
        f"--{k} {v}" for k, v in (("seconds", args.seconds), ("rows", args.rows), ("keys", args.keys),
                                  ("poll", args.poll)))
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    summary = {k: v for k, v in result.items() if k not in ("rss_samples", "state_rows")}
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
