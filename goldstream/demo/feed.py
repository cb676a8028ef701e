"""What the demo streams: its data sets, the OpenSky loader and the Silver feeder thread.

Kept apart from the demo's main loop (`goldstream.demo.run`) and its view
(`goldstream.demo.view`), which both use these types, so neither imports the other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import polars as pl

if TYPE_CHECKING:
    from goldstream.runner import Pipeline

log = logging.getLogger(__name__)

DataChoice = Literal["auto", "opensky", "synthetic"]

DEFAULT_WORKDIR = Path("goldstream-demo")
COMMIT_SECONDS = 10.0  # event time per Silver commit
SYNTH_COMMITS = 1080  # 3 h, like the real sample
SYNTH_ROWS_PER_COMMIT = 300  # close to the real sample's ~263 rows per 10 s
SYNTH_SEED = 7
OPENSKY_PARQUET = "opensky-quickstart-silver-v1.parquet"  # bump when the conversion changes


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = DEFAULT_WORKDIR
    data: DataChoice = "auto"
    commit_every_s: float = 0.15
    poll_interval_s: float = 0.05
    duration_s: float | None = None
    max_commits: int | None = None
    cache_dir: Path | None = None
    live: bool | None = None  # None: a Rich live view on a terminal, plain lines otherwise
    http_port: int = 9108  # the status page (0: off); a busy port falls back to a free one


@dataclass
class DataSet:
    """A commit-by-commit Silver history to feed."""

    name: Literal["opensky", "synthetic"]
    title: str  # shown in the view's header
    frames: Iterator[pl.DataFrame]
    total_commits: int | None


# -- data ---------------------------------------------------------------------------------


def synthetic_dataset() -> DataSet:
    from goldstream.demo.synth import synth_commit_frames

    return DataSet("synthetic", f"synthetic OpenSky-like traffic (goldstream.demo.synth, seed {SYNTH_SEED}: late rows, nulls, anomalies)",
                   synth_commit_frames(SYNTH_COMMITS, SYNTH_ROWS_PER_COMMIT, SYNTH_SEED, commit_interval_s=COMMIT_SECONDS),
                   SYNTH_COMMITS)


def opensky_dataset(states: pl.DataFrame) -> DataSet:
    from goldstream.demo.opensky import opensky_commit_frames

    frames = list(opensky_commit_frames(states, COMMIT_SECONDS))
    ts = states.get_column("event_timestamp")
    span_h = (ts.max() - ts.min()).total_seconds() / 3600  # type: ignore[operator, union-attr]
    day = ts.min().strftime("%Y-%m-%d")  # type: ignore[union-attr]
    return DataSet("opensky", f"OpenSky: {states.height:,} real state vectors, {span_h:.0f} h over Paris on {day} "
                              "(traffic 2.13 sample)", iter(frames), len(frames))


class OpenSkyLoader:
    """Gets the real sample as Silver rows: from the Parquet cache if present, else by
    downloading the wheel (pip) and converting it, in a background thread so the stream
    can start meanwhile. `error` says why it failed (offline, no index, corrupt wheel)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.cache_file = cache_dir / OPENSKY_PARQUET
        self.states: pl.DataFrame | None = None
        self.error: str | None = None
        self.stage = "starting"
        self.done = threading.Event()
        self.t0 = time.monotonic()
        self.seconds: float | None = None

    def load_cached(self) -> bool:
        """Use the cached conversion if it is there and sound (fast: ~0.1 s)."""
        from goldstream.demo.synth import SILVER_SCHEMA

        if not self.cache_file.is_file():
            return False
        try:
            states = pl.read_parquet(self.cache_file)
        except Exception as err:  # noqa: BLE001 - a broken cache is rebuilt, never fatal
            log.warning("ignoring unreadable OpenSky cache %s: %s", self.cache_file, err)
            return False
        if states.schema != SILVER_SCHEMA or states.height == 0:
            return False
        self._finish(states)
        return True

    def start(self) -> None:
        threading.Thread(target=self._run, name="goldstream-demo-opensky", daemon=True).start()

    def _run(self) -> None:
        from goldstream.demo.opensky import (
            TRAFFIC_REQUIREMENT,
            fetch_traffic_wheel,
            load_opensky_states,
        )

        try:
            cached = self.cache_dir.is_dir() and any(self.cache_dir.glob("traffic-2.13-*.whl"))
            self.stage = "reading the traffic 2.13 wheel" if cached else f"downloading {TRAFFIC_REQUIREMENT} (28 MB) with pip"
            wheel = fetch_traffic_wheel(self.cache_dir)  # returns the cached wheel at once if there is one
            self.stage = "converting 284,505 state vectors to Silver"
            states = load_opensky_states(wheel)
            tmp = self.cache_file.with_suffix(".tmp")
            states.write_parquet(tmp)
            tmp.replace(self.cache_file)  # atomic: a killed demo never leaves half a cache
            self._finish(states)
        except Exception as err:  # noqa: BLE001 - any failure means: use synthetic data
            self.error = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            log.warning("real OpenSky data unavailable, using synthetic data: %s", err)
            self.done.set()

    def _finish(self, states: pl.DataFrame) -> None:
        self.states = states
        self.seconds = time.monotonic() - self.t0
        self.done.set()


# -- the Silver writer ----------------------------------------------------------------------


class SilverFeeder:
    """Appends one Delta commit per frame to Silver, paced in wall time, in its own thread."""

    def __init__(self, uri: Path, data: DataSet, every_s: float, limit: int | None) -> None:
        self.uri = uri
        self.data = data
        self.every_s = every_s
        self.limit = limit
        self.written = 0
        self.rows = 0
        self.exhausted = False
        self.error: BaseException | None = None
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def last_version(self) -> int:
        return self.written - 1

    @property
    def finished(self) -> bool:
        """No commit will come any more (data exhausted, limit reached, or stopped)."""
        return self.exhausted or (self.limit is not None and self.written >= self.limit)

    def write(self, n: int) -> None:
        """Write up to `n` commits now (the history that exists before the stream starts)."""
        for _ in range(n):
            if self.finished or not self._write_one():
                return

    def _write_one(self) -> bool:
        from deltalake import write_deltalake

        frame = next(self.data.frames, None)
        if frame is None:
            self.exhausted = True
            return False
        write_deltalake(str(self.uri), frame.to_arrow(), mode="append")
        self.written += 1
        self.rows += frame.height
        return True

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="goldstream-demo-feeder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        k = 0
        try:
            while not self.finished:
                k += 1
                if self.stop_event.wait(max(0.0, t0 + k * self.every_s - time.monotonic())):
                    return
                if not self._write_one():
                    return
        except BaseException as err:  # noqa: BLE001 - reported by the main loop
            self.error = err

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join()


# -- workspace ------------------------------------------------------------------------------


@dataclass
class Phase:
    """One data set streaming through its own Silver and Gold."""

    data: DataSet
    feeder: SilverFeeder
    pipeline: Pipeline
    config: Path
    final: bool
    started: float = field(default_factory=time.monotonic)

    def caught_up(self) -> bool:
        return self.feeder.finished and self.pipeline.cursor > self.feeder.last_version
