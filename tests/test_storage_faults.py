"""A full disk and a damaged Delta log end in a message that says what and where, never
a traceback; nothing partial is committed, and once the operator has acted the query
resumes to exactly the Gold of an uninterrupted run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest

from conformance_cases import conformance_cases
from gold_compare import assert_gold_equal
from testsupport.config import QUERIES, write_config
from testsupport.gold import read_gold
from testsupport.process import goldstream

CASE = next(c for c in conformance_cases() if c.name == "synthetic_small")
RUST_BACKTRACE_LINE = "at ./"  # a frame of a Rust backtrace, as delta-rs appends them


def _assert_message(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out[-3000:]
    assert "Traceback" not in out and RUST_BACKTRACE_LINE not in out, out[-3000:]
    for word in words:
        assert word.lower() in out.lower(), f"{word!r} not in:\n{out[-3000:]}"


@pytest.fixture
def tiny_volume(tmp_path: Path):
    """A 48 KiB tmpfs: room for the Gold tables' first commits, not for their windows."""
    mount = tmp_path / "volume"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_while_writing_gold_is_a_message_and_resumes_exactly(tmp_path: Path, tiny_volume: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", CASE / "silver", tiny_volume / "gold")
    full = goldstream("replay", "--config", str(cfg), check=False)
    _assert_message(full, 2, "no space left", str(tiny_volume / "gold"), "free space", "nothing partial")

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_volume)], check=True)
    goldstream("replay", "--config", str(cfg))
    for q in QUERIES:
        assert_gold_equal(read_gold(tiny_volume / "gold" / q), pl.read_parquet(CASE / "expected" / f"{q}.parquet"))


@pytest.mark.parametrize("damage", ["truncated", "not json"])
def test_damaged_gold_commit_is_a_message_naming_the_file(tmp_path: Path, damage: str) -> None:
    cfg = write_config(tmp_path / "c.toml", CASE / "silver", tmp_path / "gold")
    goldstream("replay", "--config", str(cfg), "--to-version", "30")
    log = tmp_path / "gold" / "country_stats" / "_delta_log"
    last = sorted(log.glob("*.json"))[-1]
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 3] if damage == "truncated" else b"\x00garbage\n")
    before = sorted(p.name for p in log.iterdir())

    for command in ("replay", "status"):
        proc = goldstream(command, "--config", str(cfg), check=False)
        _assert_message(proc, 2, "country_stats", "_delta_log", "restore")
    assert sorted(p.name for p in log.iterdir()) == before, "nothing may be written to a damaged table"

    last.write_bytes(good)  # the operator restored the file
    goldstream("replay", "--config", str(cfg))
    for q in QUERIES:
        assert_gold_equal(read_gold(tmp_path / "gold" / q), pl.read_parquet(CASE / "expected" / f"{q}.parquet"))
