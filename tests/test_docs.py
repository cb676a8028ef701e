"""The documentation site: generated reference pages match the code, `mkdocs build
--strict` passes (no dead link or anchor, nothing stale), and nothing loads from a CDN."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

import gen_ref  # noqa: E402


def test_generated_reference_pages_are_current() -> None:
    assert gen_ref.stale_pages() == [], "run `python docs/gen_ref.py` and commit docs/reference/"


def test_reference_pages_hold_what_the_code_knows() -> None:
    from goldstream.config import SourceSpec
    from goldstream.functions.registry import FUNCTIONS

    config_page = gen_ref.configuration_page()
    for field in SourceSpec.model_fields:
        assert f"| `{field}` |" in config_page
    assert "`run` looks for new Silver commits this often." in config_page  # a field's docstring
    functions_page = gen_ref.functions_page()
    for fn in FUNCTIONS:
        assert f"| `{fn}` |" in functions_page
    assert "MaxBy(" not in functions_page  # a dataclass's generated signature is no description
    cli_page = gen_ref.cli_page()
    for command in ("replay", "run", "status", "show", "maintain", "validate-config", "export spark"):
        assert f"## `goldstream {command}`" in cli_page
    assert "(overrides [source] path)" in cli_page


def test_check_mode_names_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, make in gen_ref.PAGES.items():
        (tmp_path / name).write_text(make())
    (tmp_path / "cli.md").write_text("old\n")
    monkeypatch.setattr(gen_ref, "REFERENCE", tmp_path)
    assert gen_ref.stale_pages() == ["docs/reference/cli.md"]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    external = set()
    for page in site.rglob("*.html"):
        for m in re.finditer(r'<(?:script|link|img)[^>]*(?:src|href)="(https?://[^"]+)"', page.read_text()):
            external.add(m.group(1))
    assert external == set(), f"assets loaded from the internet: {sorted(external)}"
    assert (site / "reference" / "functions.html").is_file()


def test_screenshots_are_retaken_by_a_script(tmp_path: Path) -> None:
    """docs/screenshots.py photographs a live demo's status page and plots its Gold."""
    import struct

    import screenshots

    page, plot = screenshots.take(tmp_path, "synthetic", commits=60, history=5)
    for png, size in ((page, (1400, 1800)), (plot, (1000, 500))):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == size


def test_every_configuration_field_is_described() -> None:
    """The configuration reference is made from the field docstrings: a new field needs one."""
    from pydantic import BaseModel

    from goldstream import config

    missing = [f"{model.__name__}.{name}" for model in vars(config).values()
               if isinstance(model, type) and issubclass(model, BaseModel) and model.__module__ == config.__name__
               for name, field in model.model_fields.items() if not field.description]
    assert missing == [], f"fields without a docstring (the reference would show nothing): {missing}"
