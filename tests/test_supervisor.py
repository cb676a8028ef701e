"""The supervisor's backoff across a storage outage: it grows over consecutive failures,
however many batches that only rebuild state succeed in between, and starts again only
after real progress (a Gold commit, or a Silver version processed beyond the previous
high-water mark). The Stream here is a stand-in holding only the positions the
supervisor reads; the storage failure is the error a failed PUT becomes."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field

import pytest

from goldstream.errors import TransientStorageError
from goldstream.retry import RetryPolicy
from goldstream.runner.supervisor import Supervisor


@dataclass
class Position:
    committed: int
    processed: int


@dataclass
class Positions:
    """What a Stream rebuilt from Gold knows: each query at its Gold offsets."""

    gold: list[int]
    runs: list[Position] = field(init=False)
    rebuilt: bool = False  # its first batch re-reads what Gold records: state only

    def __post_init__(self) -> None:
        self.runs = [Position(v, v) for v in self.gold]


class PutOnlyOutage:
    """Each poll of the daemon: a fresh Stream's first batch only rebuilds state (reads
    work) and succeeds; the next batch is live and its Gold commit PUT fails."""

    def __init__(self, gold: list[int]) -> None:
        self.gold = gold
        self.over = False

    def open(self, previous: Positions | None) -> Positions:
        return Positions(list(self.gold))

    def poll(self, stream: Positions) -> bool:
        if not stream.rebuilt:
            stream.rebuilt = True
            return True
        for run in stream.runs:
            run.processed += 1
        if not self.over:
            raise TransientStorageError("storage unavailable for s3://b/gold: SlowDown (PUT http://s3/b/gold)")
        for i, run in enumerate(stream.runs):  # the outage is over: the Gold commit lands
            run.committed = self.gold[i] = run.processed
        return True


def _attempts(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [int(m.group(1)) for r in caplog.records if (m := re.search(r"\(attempt (\d+)\)", r.getMessage()))]


def test_backoff_grows_across_rebuild_batches_until_real_progress(caplog: pytest.LogCaptureFixture) -> None:
    outage = PutOnlyOutage([10, 12])
    retries: list[None] = []
    supervisor = Supervisor(outage.open, RetryPolicy(give_up_after_s=None, initial_s=1e-4, max_s=1e-3),
                            threading.Event(), lambda: "Silver s3://b/silver / Gold s3://b/gold",
                            on_retry=lambda: retries.append(None))
    caplog.set_level(logging.WARNING)
    for _ in range(6):  # the daemon's polls during the outage
        supervisor.run(outage.poll)
    assert _attempts(caplog) == [1, 2, 3, 4, 5]  # the first poll opened the Stream and rebuilt
    assert len(retries) == 5  # goldstream_storage_retries_total

    outage.over = True
    assert supervisor.run(outage.poll) and outage.gold == [11, 13]  # real progress: Gold commits
    outage.over = False
    caplog.clear()
    for _ in range(2):
        supervisor.run(outage.poll)
    assert _attempts(caplog) == [1, 2]  # a new outage starts from the first delay
