"""How the tool meets its neighbours: pre-commit, editors, --version and shell completion.

Each runs the installed console script in a subprocess, as the neighbour would.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reconciler import __version__

ROOT = Path(__file__).resolve().parent.parent
RECONCILER = Path(sys.executable).parent / "reconciler"
SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/environment.schema.json"


def _without_credentials() -> dict[str, str]:
    """The environment of a developer's git commit: none of the CI secrets."""
    names = re.findall(r"\$\{(\w+)\}", "".join(p.read_text() for p in _environment_files()))
    return {k: v for k, v in os.environ.items() if k not in names}


def _environment_files() -> list[Path]:
    return sorted((ROOT / "environments").glob("*.yaml"))


def test_pre_commit_hook_validates_without_secrets() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "reconciler-validate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    assert hook["args"] == ["--allow-missing-secrets"]
    files = re.compile(hook["files"])
    assert files.search("environments/acme-staging.yaml")
    assert files.search("environments/_base.yml")
    assert not files.search("schemas/environment.schema.json")
    assert not files.search("tests/fixtures/config/empty/env.yaml")

    # pre-commit runs `entry` followed by `args`, from the repository root.
    entry = shlex.split(hook["entry"])
    assert entry[0] == "reconciler"
    result = subprocess.run(
        [str(RECONCILER), *entry[1:], *hook["args"]],
        cwd=ROOT,
        env=_without_credentials(),
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"{len(_environment_files()) - 1} environments valid")


@pytest.mark.parametrize("path", _environment_files(), ids=lambda p: p.name)
def test_environment_files_name_their_schema_for_editors(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == SCHEMA_LINE
    schema = path.parent / first.split("$schema=", 1)[1]
    assert schema.resolve() == ROOT / "schemas" / "environment.schema.json"
    assert schema.is_file()


def test_version() -> None:
    result = subprocess.run([str(RECONCILER), "--version"], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, f"reconciler, version {__version__}\n")
    module = subprocess.run(
        [sys.executable, "-m", "reconciler", "--version"], capture_output=True, text=True
    )
    assert module.stdout == result.stdout


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ("bash", "complete -o nosort -F _reconciler_completion reconciler"),
        ("zsh", "compdef _reconciler_completion reconciler"),
        ("fish", "complete --no-files --command reconciler"),
    ],
)
def test_shell_completion_script(shell: str, expected: str) -> None:
    env = {**os.environ, "_RECONCILER_COMPLETE": f"{shell}_source"}
    result = subprocess.run([str(RECONCILER)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_shell_completion_completes_commands() -> None:
    env = {
        **os.environ,
        "_RECONCILER_COMPLETE": "bash_complete",
        "COMP_WORDS": "reconciler va",
        "COMP_CWORD": "1",
    }
    result = subprocess.run([str(RECONCILER)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["plain,validate", "plain,vars"]
