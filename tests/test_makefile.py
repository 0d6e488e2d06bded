"""`make` does not rebuild `.venv` needlessly: a pyproject.toml that is only newer (a checkout,
a merge) refreshes the stamp; a changed one reinstalls into the existing virtualenv."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    # A stand-in interpreter that records how it was called.
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.log"}\n')
    python.chmod(0o755)
    return tmp_path


def _stamp(repo: Path) -> list[str]:
    # PYTHON=false: creating a virtualenv would fail the run.
    result = subprocess.run(
        ["make", "--no-print-directory", "PYTHON=false", ".venv/.installed"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    log = repo / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def _newer(path: Path, than: Path) -> None:
    earlier = path.stat().st_mtime - 10
    os.utime(than, (earlier, earlier))


def test_a_newer_but_unchanged_pyproject_installs_nothing(repo: Path) -> None:
    stamp = repo / ".venv" / ".installed"
    shutil.copy(repo / "pyproject.toml", stamp)
    _newer(repo / "pyproject.toml", stamp)
    assert _stamp(repo) == []
    assert stamp.stat().st_mtime >= (repo / "pyproject.toml").stat().st_mtime


def test_a_changed_pyproject_reinstalls_into_the_existing_venv(repo: Path) -> None:
    stamp = repo / ".venv" / ".installed"
    stamp.write_text("an older pyproject.toml\n")
    _newer(repo / "pyproject.toml", stamp)
    assert _stamp(repo) == ["-m pip install --quiet -e .[dev]"]
    assert stamp.read_text() == (repo / "pyproject.toml").read_text()
    assert _stamp(repo) == ["-m pip install --quiet -e .[dev]"]  # up to date now: no new call
