"""A separate process that keeps appending synthetic commits to a Silver Delta table:

    python -m testsupport.silver_writer TABLE --seed S --rows R [--pace SECONDS] [--max-commits N]

(from the checkout's root). One delta-rs append per commit (frame i of
`synth_commit_frames`, empty ones included). SIGTERM stops it after the commit in
progress; it prints each version written, then the last one.
"""

from __future__ import annotations

import argparse
import signal
import time

from goldstream.demo.synth import synth_commit_frames
from testsupport.silver import DeltaAppender


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
    writer = DeltaAppender(args.table)
    for frame in synth_commit_frames(args.max_commits, args.rows, args.seed):
        if stop:
            break
        print(f"version {writer.append(frame)}", flush=True)
        if args.pace:
            time.sleep(args.pace)
    print(f"done {writer.version}", flush=True)


if __name__ == "__main__":
    main()
