"""Where goldstream may create a table: only in a new or empty folder, never in someone's files.

A Gold or late table goldstream creates is goldstream's to maintain, and maintenance
vacuums what the table does not hold. A configured path that points at a folder already
holding other files (a README, reports/2023/q4.csv) but no Delta table is a slip: creating
a table there would mix goldstream's files with someone else's. It is refused at start,
before anything is written, as is a path that is a file. A folder holding a Delta table
is the sinks' to judge (whose table it is, by its log).
"""

from __future__ import annotations

from goldstream.errors import ConfigError
from goldstream.storage import Storage, fs_path

DELTA_LOG = "_delta_log"


def refuse_foreign_folder(uri: str, storage: Storage, what: str) -> None:
    """ConfigError naming `what` if `uri` is a file, or a non-empty folder without a Delta log.
    One listing: it runs at every start."""
    fs = storage.filesystem(uri)
    path = fs_path(uri).rstrip("/")
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return
    names = sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["name"].rstrip("/") != path)
    if not names:
        if any(e.get("type") == "file" for e in entries):
            raise ConfigError(f"{what} {uri} is a file, not a table's folder: give the path of a new or empty folder")
        return
    if DELTA_LOG in names:
        return
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise ConfigError(f"{what} {uri} is a folder that holds other files ({shown}) and no Delta table: goldstream "
                      "creates its tables only in a new or empty folder (its vacuum would otherwise share the "
                      "folder with files that are not its own). Give a path of its own, or move those files out")
