"""`goldstream demo`: real OpenSky traffic fed to Silver as a live stream, both seed
queries running on the real Pipeline, and their Gold windows on screen.

What happens:

1. A workspace (default `./goldstream-demo`) gets a Silver table per data set, a Gold
   root, a `config.toml` (the packaged example config pointed at them, so
   `goldstream show/status/replay --config goldstream-demo/config.toml` work afterwards)
   and `demo.log` (the JSON progress records).
2. Data: the `quickstart` sample of the `traffic==2.13` wheel (real ADS-B state vectors
   over Paris, see `goldstream.demo.opensky`). Converting it takes seconds and the first
   download more, so the converted rows are cached as Parquet next to the wheel and,
   while they are not ready, the stream starts on synthetic data (`goldstream.demo.synth`)
   and switches to the real data as soon as it is: windows are on screen within a few
   seconds even on a fresh install. If the wheel cannot be had (offline, no index) the
   demo stays on synthetic data and says why.
3. A writer thread appends one Silver commit per 10 s of event time — what an ingestion
   job with a 10 s trigger commits — every `commit_every` seconds of wall time
   (time compressed ~70×); the first `HISTORY_COMMITS` are written before the stream
   starts, so the first 1-minute windows close at once.
4. The main thread runs the Pipeline (`step()` + a short poll, as `run_forever` does) and
   refreshes the view (`goldstream.demo.view`) between batches; Ctrl+C stops cleanly.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from goldstream.demo.feed import (
    COMMIT_SECONDS,
    DataSet,
    DemoOptions,
    OpenSkyLoader,
    Phase,
    SilverFeeder,
    opensky_dataset,
    synthetic_dataset,
)
from goldstream.errors import ConfigError, SourceError

log = logging.getLogger(__name__)

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "example_config.toml"
MARKER = ".goldstream-demo"
HISTORY_COMMITS = 20  # > 3 min: the first country_stats windows (1 min + 2 min delay) close at once



def prepare_workdir(workdir: Path) -> None:
    """Create the workspace, or clear the tables of a previous demo run in it (only ours)."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"demo workspace {workdir} is a file; choose another --workdir")
    if workdir.is_dir() and any(workdir.iterdir()) and not (workdir / MARKER).exists():
        raise ConfigError(
            f"{workdir} exists and was not created by `goldstream demo`; refusing to delete anything "
            "in it. Choose another --workdir (or remove that directory)."
        )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("created by `goldstream demo`; its tables are replaced on the next run\n")
    for sub in ("opensky", "synthetic"):
        shutil.rmtree(workdir / sub, ignore_errors=True)


def write_config(workdir: Path, silver: Path, gold: Path, poll_interval_s: float) -> Path:
    """The packaged example config, pointed at this workspace (absolute paths)."""
    text = EXAMPLE_CONFIG.read_text()
    edits = {
        "path": json.dumps(str(silver.resolve())),
        "gold_root": json.dumps(str(gold.resolve())),
        "poll_interval": json.dumps(f"{round(poll_interval_s * 1000)}ms"),
    }
    for key, value in edits.items():
        text, n = re.subn(rf"^{key}\s*=\s*\S+", f"{key} = {value}", text, count=1, flags=re.M)
        if n != 1:
            raise ConfigError(f"{EXAMPLE_CONFIG} has no `{key} = ...` line to point at the demo workspace")
    path = workdir / "config.toml"
    path.write_text("# Written by `goldstream demo`: the seed queries over this workspace.\n" + text)
    return path


def _log_to_file(path: Path) -> None:
    """Progress records go to demo.log (JSON lines), not over the live view."""
    from goldstream.observability import JsonFormatter

    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


# -- the demo -------------------------------------------------------------------------------


def process_start_monotonic() -> float:
    """When this process started, on the `time.monotonic()` clock (Linux: from /proc), so
    "first windows after N s" counts the interpreter and import time a user waits too."""
    import os

    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime_s = float(fh.read().split()[0])
        age = uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
        if 0 <= age < 3600:
            return time.monotonic() - age
    except (OSError, ValueError, IndexError):
        pass
    return time.monotonic()


class Demo:
    """The demo's main loop: phases of data, the writer thread, the Pipeline, the view."""

    def __init__(self, opts: DemoOptions) -> None:
        from goldstream.demo.opensky import default_cache_dir
        from goldstream.demo.view import DemoView

        self.opts = opts
        self.t0 = process_start_monotonic()
        self.stop_event = threading.Event()
        self.loader = OpenSkyLoader(opts.cache_dir or default_cache_dir())
        live = sys.stdout.isatty() if opts.live is None else opts.live
        self.view = DemoView(opts, self.t0, live=live)
        self.phase: Phase | None = None
        self.server: Any = None  # the status page's server, once started
        self.warmup: tuple[str, float] | None = None  # (title of the warm-up data, seconds) once replaced

    # -- lifecycle --

    def run(self) -> int:
        prepare_workdir(self.opts.workdir)
        _log_to_file(self.opts.workdir / "demo.log")
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with self.view:
                self._loop()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            if self.phase is not None:
                self.phase.feeder.stop()
            if self.server is not None:
                self.server.shutdown()
                self.server.server_close()
        self.view.print_summary(self.phase, self.warmup, self.loader, interrupted=self.stop_event.is_set())
        return 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_event.is_set():  # second Ctrl+C: the user insists
            raise KeyboardInterrupt
        log.info("received %s: stopping the demo", signal.Signals(signum).name)
        self.stop_event.set()

    def _loop(self) -> None:
        data = self._first_dataset()
        if data is None:
            return
        self.phase = self._start_phase(data, final=data.name == "opensky" or self.opts.data == "synthetic")
        deadline = None if self.opts.duration_s is None else self.t0 + self.opts.duration_s
        while not self.stop_event.is_set():
            phase = self.phase
            if not phase.final and self.loader.done.is_set():
                phase = self._after_loader(phase)
            did = phase.pipeline.step()
            self.view.update(phase, self.loader)
            if phase.feeder.error is not None:
                err = phase.feeder.error
                raise SourceError(f"writing the demo's Silver commit {phase.feeder.written} to "
                                  f"{phase.feeder.uri} failed: {err}") from err
            if phase.final and phase.caught_up():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if not did:
                self.stop_event.wait(self.opts.poll_interval_s)

    def _first_dataset(self) -> DataSet | None:
        """Real data if it is at hand; else synthetic (warm-up, or for good)."""
        if self.opts.data == "synthetic":
            return synthetic_dataset()
        if self.loader.load_cached():  # ~0.2 s
            return opensky_dataset(self.loader.states)  # type: ignore[arg-type]
        self.loader.start()
        if self.opts.data == "auto":
            return synthetic_dataset()  # warm-up while the real data is prepared
        while not self.loader.done.wait(0.1):  # --data opensky: wait, showing what happens
            self.view.waiting(self.loader)
            if self.stop_event.is_set():
                return None
        if self.loader.states is not None:
            return opensky_dataset(self.loader.states)
        self.view.note(f"real OpenSky data unavailable ({self.loader.error}); using synthetic data")
        return synthetic_dataset()

    def _after_loader(self, phase: Phase) -> Phase:
        """The real data is ready (switch to it) or failed (the warm-up becomes the demo)."""
        if self.loader.states is None:
            self.view.note(f"real OpenSky data unavailable ({self.loader.error}); staying on synthetic data")
            phase.final = True
            phase.feeder.limit = self.opts.max_commits
            return phase
        phase.feeder.stop()
        self.warmup = (phase.data.title, time.monotonic() - phase.started)
        self.view.note(f"real OpenSky data ready after {self.loader.seconds:.1f}s: switching from the synthetic warm-up")
        self.phase = self._start_phase(opensky_dataset(self.loader.states), final=True)
        return self.phase

    def _start_phase(self, data: DataSet, final: bool) -> Phase:
        from goldstream.config import load_settings
        from goldstream.runner import Pipeline

        root = self.opts.workdir / data.name
        silver, gold = root / "silver", root / "gold"
        limit = self.opts.max_commits if final else None
        feeder = SilverFeeder(silver, data, self.opts.commit_every_s, limit)
        self.view.preparing(f"writing the first {HISTORY_COMMITS} Silver commits of {data.name} data "
                            f"({HISTORY_COMMITS * COMMIT_SECONDS / 60:.0f} min of traffic), then streaming…")
        feeder.write(HISTORY_COMMITS)  # Silver exists (with some history) before the Pipeline opens it
        config = write_config(self.opts.workdir, silver, gold, self.opts.poll_interval_s)
        pipeline = Pipeline(load_settings(config))
        phase = Phase(data, feeder, pipeline, config, final)
        self.view.begin(phase)
        pipeline.progress.add_listener(self.view.on_progress)
        self._serve_status_page(pipeline)
        pipeline.start()
        feeder.start()
        log.info("demo streaming %s into %s", data.title, silver)
        return phase


    def _serve_status_page(self, pipeline: Any) -> None:
        """The status page of this phase's pipeline on 127.0.0.1 (the same port across the
        switch to real data), its URL said once; a busy port falls back to a free one."""
        if not self.opts.http_port:
            return
        from goldstream.server import stale_after_s, start_http_server
        from goldstream.web.app import attach

        port = self.opts.http_port
        if self.server is not None:
            port = self.server.server_address[1]
            self.server.shutdown()
            self.server.server_close()

        def serve(on: int) -> Any:
            return start_http_server(pipeline.status, pipeline.progress.metrics.registry,
                                     stale_after_s(pipeline.settings), on, "127.0.0.1",
                                     page=attach(pipeline.settings, pipeline.progress, pipeline.status))

        first = self.server is None
        try:
            self.server = serve(port)
        except ConfigError:
            self.server = serve(0)
            if first:
                self.view.note(f"port {port} is busy: serving the status page on a free port")
        if first:
            self.view.note(f"status page: http://127.0.0.1:{self.server.server_address[1]}/")


def run_demo(opts: DemoOptions) -> int:
    """Run the demo until the data ends, `duration_s`/`max_commits` is reached, or Ctrl+C."""
    return Demo(opts).run()
