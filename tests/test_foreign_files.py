"""goldstream touches only its own files.

Vacuum deletes a file its table's log never referenced only where the table's writers put
data files (part-*.parquet at the root or in the table's partition directories): a README,
reports/2023/q4.csv or a copy in a sub-folder under a Gold table stay, and `maintain
--dry-run` lists what it would delete. Locally through the CLI (files dated past the
retention), and on S3 (SeaweedFS) through the same maintenance in this process.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from test_maintenance import _tables, copy_of, fast_silver, frames, replay, replayed  # noqa: F401 (fixture)
from testsupport.config import seed_query_list, write_config
from testsupport.process import goldstream

ORPHAN = "part-00000-0b5e6c2a-crash-leftover-c000.snappy.parquet"  # written, never committed
FOREIGN = ["README", "reports/2023/q4.csv", "junk/part-00000-copy.snappy.parquet", "part-notes.txt",
           "country=x/readme.md"]


def plant(table: Path, paths: list[str], age_days: float = 10) -> None:
    """Files under a table, dated `age_days` ago (older than the vacuum retention)."""
    old = time.time() - age_days * 86400
    for rel in paths:
        path = table / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not goldstream's " + rel.encode())
        os.utime(path, (old, old))


def test_vacuum_deletes_only_the_tables_own_data_files(replayed: Path, tmp_path: Path) -> None:  # noqa: F811
    root, cfg = copy_of(replayed, tmp_path)
    gold = root / "gold" / "country_stats"
    plant(gold, [*FOREIGN, ORPHAN])
    dry = goldstream("maintain", "--config", str(cfg), "--query", "country_stats", "--dry-run")
    assert f"would delete {ORPHAN}" in dry.stdout, dry.stdout
    assert not [f for f in FOREIGN if f"would delete {f}" in dry.stdout], dry.stdout
    assert (gold / ORPHAN).exists(), "a dry run deletes nothing"
    proc = goldstream("maintain", "--config", str(cfg), "--query", "country_stats")
    assert not (gold / ORPHAN).exists(), "a crash leftover in the data layout is vacuumed"
    for rel in FOREIGN:
        assert (gold / rel).read_bytes() == b"not goldstream's " + rel.encode(), f"{rel} was touched"
    assert "left alone by vacuum" in proc.stdout + proc.stderr and "README" in proc.stdout + proc.stderr


@pytest.mark.s3
def test_vacuum_on_s3_leaves_foreign_objects(s3_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    prefix = f"s3://{s3_server.bucket}/foreign-{uuid.uuid4().hex[:8]}"
    fast_silver(tmp_path / "silver", frames(10))
    replay(write_config(tmp_path / "local.toml", tmp_path / "silver", tmp_path / "gold", max_commits_per_batch=1,
                        queries=seed_query_list()[:1]))
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.s3fs_kwargs())
    table = f"{prefix[5:]}/gold/country_stats"
    fs.put(str(tmp_path / "gold" / "country_stats") + "/", table, recursive=True)
    for rel in [*FOREIGN, ORPHAN]:
        fs.pipe(f"{table}/{rel}", b"not goldstream's")
    cfg = write_config(tmp_path / "c.toml", tmp_path / "silver", f"{prefix}/gold", queries=seed_query_list()[:1])
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    [m] = [t.maintenance for t in _tables(cfg) if t.kind == "gold"]
    assert m.vacuum(timedelta(0), dry_run=True) == [ORPHAN]
    assert fs.exists(f"{table}/{ORPHAN}")
    assert m.vacuum(timedelta(0)) == [ORPHAN]
    fs.invalidate_cache()
    assert not fs.exists(f"{table}/{ORPHAN}")
    assert all(fs.exists(f"{table}/{rel}") for rel in FOREIGN)


@pytest.mark.s3
def test_a_gold_path_holding_foreign_objects_on_s3_is_refused(s3_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import s3fs

    prefix = f"s3://{s3_server.bucket}/foreign-{uuid.uuid4().hex[:8]}"
    fast_silver(tmp_path / "silver", frames(4))
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.s3fs_kwargs())
    fs.pipe(f"{prefix[5:]}/reports/2023/q4.csv", b"not goldstream's")
    for late in (False, True):
        query = {"gold_path": f"{prefix}/reports"} if not late else {"late_sink": f"{prefix}/reports/"}
        cfg = write_config(tmp_path / "c.toml", tmp_path / "silver", f"{prefix}/gold",
                           queries=seed_query_list(country_stats=query)[:1])
        proc = goldstream("replay", "--config", str(cfg), env=s3_server.env(), check=False)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "no Delta table" in proc.stderr and "2023" in proc.stderr and "Traceback" not in proc.stderr
        fs.invalidate_cache()
        assert fs.find(prefix[5:]) == [f"{prefix[5:]}/reports/2023/q4.csv"], "nothing was written"
