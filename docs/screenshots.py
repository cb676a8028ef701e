"""Retake the documentation's pictures from a live demo, never by hand:

    python docs/screenshots.py                  # docs/status-page.png and docs/show-plot.png
    python docs/screenshots.py --data opensky   # on the real OpenSky sample (downloads it once)

It runs `goldstream demo` with its status page on a free port, waits until both seed
queries have closed windows and the charts hold some history, photographs the page with
Debian's headless Chromium (no browser download) at 1400 px wide, lets the demo finish,
then draws `goldstream show --plot` of `country_stats` from the demo's Gold.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BATCHES_BEFORE_SHOT = 25  # progress records per query before the picture: the charts show a history


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    sys.exit("no chromium on PATH: apt-get install chromium")


def status(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def batches(port: int, query: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/progress?query={query}", timeout=5) as resp:
            return len(json.loads(resp.read())["progress"])
    except OSError:
        return 0


def take(out: Path, data: str, commits: int, history: int = BATCHES_BEFORE_SHOT, timeout_s: float = 300) -> list[Path]:
    """Both pictures into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="goldstream-shots-") as tmp:
        workdir = Path(tmp) / "demo"
        demo = subprocess.Popen([sys.executable, "-m", "goldstream", "demo", "--workdir", str(workdir), "--data", data,
                                 "--max-commits", str(commits), "--commit-every", "0.15", "--http-port", str(port),
                                 "--plain"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                overview = status(port)
                if overview and all(q["latestWindows"] for q in overview["queries"]) and all(
                        batches(port, q["name"]) >= history for q in overview["queries"]):
                    break
                if demo.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the demo ended or took too long before the page had windows:\n"
                                     f"{demo.stdout.read() if demo.stdout else ''}")
                time.sleep(0.5)
            page = out / "status-page.png"
            shot = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                   "--virtual-time-budget=8000", "--window-size=1400,1800", f"--screenshot={page}",
                                   f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=120)
            if shot.returncode != 0:
                raise SystemExit(f"chromium failed: {shot.stderr[-2000:]}")
            demo.wait(timeout=timeout_s)
        finally:
            if demo.poll() is None:
                demo.terminate()
                demo.wait(timeout=30)
        plot = out / "show-plot.png"
        subprocess.run([sys.executable, "-m", "goldstream", "show", "--config", str(workdir / "config.toml"),
                        "--query", "country_stats", "--plot", str(plot), "--top", "6"], check=True,
                       capture_output=True, text=True)
    return [page, plot]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DOCS, help="directory of the pictures (default docs/)")
    parser.add_argument("--data", choices=["synthetic", "opensky"], default="synthetic",
                        help="the demo's data (synthetic: offline and reproducible)")
    parser.add_argument("--commits", type=int, default=120, help="Silver commits the demo streams")
    args = parser.parse_args()
    for path in take(args.out, args.data, args.commits):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
