"""A separate process that keeps appending synthetic commits to a Silver Delta table.

    python tests/silver_writer.py TABLE --seed S --rows R [--pace SECONDS] [--max-commits N]

One `write_deltalake` append per commit (frame i of `synth_commit_frames`, empty ones
included), against a loaded `DeltaTable` that is reloaded every 50 commits so commits stay
cheap. SIGTERM stops it after the commit in progress; it prints the last version written.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deltalake import DeltaTable, write_deltalake  # noqa: E402

from goldstream.demo.synth import synth_commit_frames  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--pace", type=float, default=0.0)
    ap.add_argument("--max-commits", type=int, default=5000)
    args = ap.parse_args()
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    dt: DeltaTable | None = None
    written = 0
    for frame in synth_commit_frames(args.max_commits, args.rows, args.seed):
        if stop:
            break
        if dt is None:
            write_deltalake(args.table, frame.to_arrow(), mode="append")
            dt = DeltaTable(args.table)
        else:
            write_deltalake(dt, frame.to_arrow(), mode="append")
        written += 1
        if written % 50 == 0:
            dt = DeltaTable(args.table)
        print(f"version {dt.version()}", flush=True)
        if args.pace:
            time.sleep(args.pace)
    print(f"done {dt.version() if dt is not None else -1}", flush=True)


if __name__ == "__main__":
    main()
