"""The README is the front door: every command in it runs, in order, on a fresh copy of the
checkout in a fresh venv, as a newcomer would type it; its TOML is the shipped file's; it
stays short and its links resolve.

Two commands run in a cheaper form with the same meaning: `goldstream demo` gets options
that keep it to seconds (synthetic data, 30 commits), and `pytest` collects the suite
(with the addopts a plain `pytest` uses) instead of running it inside itself.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from testsupport import ROOT

README = ROOT / "README.md"
DEMO_OPTIONS = ["--data", "synthetic", "--max-commits", "30", "--commit-every", "0.05", "--plain"]


def bash_commands(text: str) -> list[str]:
    """The commands of the README's ```bash blocks, in order (comments stripped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def source_files() -> list[str]:
    """The files of a fresh clone: git's list, or (an exported tree) every file but caches."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        return [n for n in listed.stdout.split("\0") if n and (ROOT / n).is_file()]
    skip = {".git", "site", "goldstream-demo", "__pycache__", ".pytest_cache", "build", ".ci-venv"}
    return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts) and ".egg-info" not in str(p)]


def test_readme_is_short_and_its_links_resolve() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_readme_queries_are_the_shipped_ones() -> None:
    """The TOML form from config.example.toml, its SQL twin from examples/seed.toml."""
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 2
    for block, shipped in zip(blocks, ["config.example.toml", "examples/seed.toml"]):
        assert block in (ROOT / shipped).read_text(), f"the README's query differs from {shipped}"


def test_readme_commands_in_order_on_a_fresh_checkout(tmp_path: Path) -> None:
    commands = bash_commands(README.read_text())
    assert commands == ["pip install .", "goldstream demo", "pip install -e '.[dev]'", "pytest"]
    checkout = tmp_path / "goldstream"
    for name in source_files():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, checkout / name)
    # A venv that sees this environment's installed dependencies (no downloads; a .pth line
    # adds their directories, so it works from a venv too, as in .ci/run) but not this checkout.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / "bin"
    own = subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLDSTREAM_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    python = str(bin_dir / "python")

    def run(argv: list[str], timeout: float = 600) -> str:
        proc = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n" \
                                     f"{proc.stderr[-3000:]}"
        return proc.stdout

    for command in commands:
        argv = shlex.split(command)
        if argv[0] == "pip":  # the venv's pip, offline: the dependencies are installed already
            run([python, "-m", "pip", *argv[1:], "--no-deps", "--no-build-isolation", "--no-index", "--quiet"])
            installed = run([python, "-c", "import goldstream; print(goldstream.__file__)"])
            assert installed.startswith(str(tmp_path)), f"{command} did not install the fresh checkout: {installed}"
        elif argv[0] == "goldstream":
            assert (bin_dir / "goldstream").is_file(), "`pip install .` installs the goldstream command"
            out = run([str(bin_dir / "goldstream"), *argv[1:], *DEMO_OPTIONS])
            assert re.search(r"status page: http://127\.0\.0\.1:\d+/", out), out
            assert "goldstream demo finished" in out
            shown = run([str(bin_dir / "goldstream"), "show", "--config", "goldstream-demo/config.toml"])
            assert "country_stats" in shown
        else:
            out = run([python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"])
            assert re.search(r"\d+ tests? collected", out) or re.search(r"^\d+ tests? collected", out, re.M), out
