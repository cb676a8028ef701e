"""The bound of a replay (`--to-version`, `--flush`), checked against Gold's positions.

A query's in-memory state can only be rebuilt from Silver versions up to the replay's
bound. When Gold already records a later version, rows of those later versions feed
windows that are still open: flushing at the bound would emit them incomplete, as final,
and move the watermark past them, so their missing rows could never be added. Such a
flush is refused before anything is written. Without `--flush` a bound below Gold's
position is harmless: that query has nothing to process.
"""

from __future__ import annotations

from dataclasses import dataclass

from goldstream.errors import ConfigError


@dataclass(frozen=True)
class ReplayBound:
    to_version: int | None  # None: Silver's latest version, which no Gold position can pass
    flush: bool

    def ahead(self, positions: dict[str, int]) -> dict[str, int]:
        """The queries whose Gold is already past the bound, with their positions."""
        if self.to_version is None:
            return {}
        return {name: v for name, v in positions.items() if v > self.to_version}

    def check(self, positions: dict[str, int]) -> None:
        """Refuse a flush that would close windows whose inputs were not all read."""
        ahead = self.ahead(positions)
        if not self.flush or not ahead:
            return
        which = "; ".join(f"query {name!r} is at Silver version {v}" for name, v in ahead.items())
        raise ConfigError(
            f"replay --to-version {self.to_version} --flush refused: {which}. Its state can only be rebuilt "
            f"up to version {self.to_version}, so --flush would emit windows that later versions already feed "
            "as if complete, and they would stay wrong. Nothing was written. To flush, give --to-version at or "
            "after Gold's version (or leave it out); without --flush, a replay to an earlier version does nothing."
        )
