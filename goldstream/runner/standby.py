"""A second instance of the same queries: wait, do not crash-loop.

Fencing guarantees one writer per Gold table: an instance whose commit finds another
writer's offsets raises OwnershipLost and writes nothing. Exiting then would only make
the orchestrator restart it into the same loss forever, so `run` stands by instead: not
ready, polling every poll interval, watching the owner's Gold tables. When they have not
moved for `takeover_after` while Silver got new versions, the owner is taken for gone
and this instance resumes from Gold's offsets like a restart. If the owner was alive
after all, fencing decides again at the next commit: one of the two stands by, and no
row is written twice.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from deltalake import DeltaTable

from goldstream.storage import Storage

log = logging.getLogger(__name__)


class Standby:
    """Decides when a standing-by instance takes over: `observe` once per poll."""

    def __init__(self, gold_uris: list[str], storage: Storage, silver_latest: Callable[[], int | None],
                 takeover_after_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self._uris = gold_uris
        self._storage = storage
        self._silver_latest = silver_latest
        self.takeover_after_s = takeover_after_s
        self._now = now
        self._tables: dict[str, DeltaTable] = {}
        self._gold: tuple[int, ...] | None = None  # each Gold table's version when last seen to move
        self._still_since = now()
        self._silver_then: int | None = None  # Silver's latest version when Gold last moved

    def observe(self) -> bool:
        """Look at Gold and Silver once; True when the owner looks gone: its Gold tables
        have not moved for `takeover_after_s` while Silver has versions it did not take."""
        gold, silver = self._gold_versions(), self._silver_latest()
        if gold != self._gold:
            self._gold, self._still_since, self._silver_then = gold, self._now(), silver
            return False
        still_s = self._now() - self._still_since
        grew = silver is not None and (self._silver_then is None or silver > self._silver_then)
        if still_s >= self.takeover_after_s and grew:
            log.warning("taking over: the Gold tables (%s) have not moved for %.0fs while Silver went from version "
                        "%s to %s; resuming every query from its Gold offsets", ", ".join(self._uris), still_s,
                        self._silver_then, silver)
            return True
        return False

    def _gold_versions(self) -> tuple[int, ...]:
        versions = []
        for uri in self._uris:
            dt = self._tables.get(uri)
            if dt is None:
                dt = self._tables[uri] = DeltaTable(uri, storage_options=self._storage.delta_options(uri))
            else:
                dt.update_incremental()
            versions.append(dt.version())
        return tuple(versions)
