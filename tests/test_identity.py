"""Table identity: every spelling of one location compares equal, and nesting is seen,
for local paths (through symlinks, read both the kernel's way and the lexical way) and S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldstream.identity import check_apart, identities


def test_spellings_of_one_local_table_share_an_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real" / "t").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    canonical = identities(str(tmp_path / "real" / "t"))
    for spelling in [f"{tmp_path}/real/./t", f"{tmp_path}//real/t/", f"{tmp_path}/real/x/../t", "real/t",
                     f"file://{tmp_path}/real/t", f"{tmp_path}/link/t", "./link/t/"]:
        assert set(identities(spelling)) & set(canonical), spelling


def test_symlink_then_dotdot_is_read_both_ways(tmp_path: Path) -> None:
    """`link/..` is the link's parent for fsspec (lexical) and the target's parent for the
    kernel: a table there clashes with a table at either place."""
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "link").symlink_to(tmp_path / "a" / "deep")
    tricky = f"{tmp_path}/b/link/../t"
    for other in (f"{tmp_path}/b/t", f"{tmp_path}/a/t"):
        with pytest.raises(ValueError, match="same table"):
            check_apart([("the Silver table", other), ("the late sink of query 'q'", tricky)])


@pytest.mark.parametrize("a, b, clash", [
    ("s3://bucket/silver", "s3a://bucket//silver/", "same table"),
    ("s3://bucket/x/../silver", "s3://bucket/./silver", "same table"),
    ("s3://bucket", "s3://bucket/gold/q", "lies inside"),
    ("s3://bucket/data", "s3://bucket/data/q/", "lies inside"),
])
def test_s3_spellings_and_nesting(a: str, b: str, clash: str) -> None:
    with pytest.raises(ValueError, match=clash):
        check_apart([("the Silver table", a), ("the Gold table of query 'q'", b)])


@pytest.mark.parametrize("a, b", [
    ("s3://bucket/silver", "s3://other/silver"),
    ("s3://bucket/silver", "s3://bucket/silver2"),
    ("s3://bucket/silver", "/bucket/silver"),
    ("/data/silver", "/data/silver_gold"),
])
def test_distinct_tables_pass(a: str, b: str) -> None:
    check_apart([("the Silver table", a), ("the Gold table of query 'q'", b)])
