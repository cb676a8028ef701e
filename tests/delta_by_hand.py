"""Delta commits that deltalake cannot write, written as the protocol describes them.

Renames and drops under column mapping, type widening (with its reader feature) and
Parquet files written by other engines (INT96, TIMESTAMP_MILLIS) are plain JSON actions
in `_delta_log/<version>.json` next to Parquet files: these helpers write exactly that.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq


def log_file(table: Path, version: int) -> Path:
    return table / "_delta_log" / f"{version:020d}.json"


def next_version(table: Path) -> int:
    return 1 + max(int(p.name[:20]) for p in (table / "_delta_log").glob("*.json"))


def write_commit(table: Path, actions: list[dict[str, Any]], operation: str) -> int:
    """Actions as the next commit (with a commitInfo); returns its version."""
    version = next_version(table)
    info = {"commitInfo": {"timestamp": int(time.time() * 1000), "operation": operation}}
    log_file(table, version).write_text("\n".join(json.dumps(a) for a in [info, *actions]) + "\n")
    return version


def last_metadata(table: Path) -> dict[str, Any]:
    md: dict[str, Any] | None = None
    for v in range(next_version(table)):
        path = log_file(table, v)
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip() and "metaData" in (action := json.loads(line)):
                    md = action["metaData"]
    assert md is not None
    return md


def change_schema(table: Path, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
                  operation: str, configuration: dict[str, str] | None = None,
                  protocol: dict[str, Any] | None = None) -> int:
    """A metadata-only commit: the table's fields edited by `edit` (a list of field dicts)."""
    md = last_metadata(table)
    schema = json.loads(md["schemaString"])
    schema["fields"] = edit(schema["fields"])
    md = {**md, "schemaString": json.dumps(schema), "configuration": {**md["configuration"], **(configuration or {})}}
    return write_commit(table, ([{"protocol": protocol}] if protocol else []) + [{"metaData": md}], operation)


def physical_names(table: Path) -> dict[str, str]:
    fields = json.loads(last_metadata(table)["schemaString"])["fields"]
    return {f["name"]: (f.get("metadata") or {}).get("delta.columnMapping.physicalName", f["name"]) for f in fields}


def append_parquet(table: Path, data: pa.Table, **parquet_options: Any) -> int:
    """One data file written by pyarrow (columns named as given: physical names under
    column mapping) and the commit adding it."""
    name = f"part-{uuid.uuid4()}.parquet"
    pq.write_table(data, table / name, **parquet_options)
    add = {"path": name, "partitionValues": {}, "size": (table / name).stat().st_size,
           "modificationTime": int(time.time() * 1000), "dataChange": True,
           "stats": json.dumps({"numRecords": data.num_rows})}
    return write_commit(table, [{"add": add}], "WRITE")
