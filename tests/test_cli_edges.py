"""The command line at its edges, through the real CLI: output files checked before any
tenant is read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.sandbox import SandboxApp

WriteEnv = Callable[..., Path]
Sandbox = tuple[SandboxApp, str]
TENANT = "acme-staging"
# Any managed setting will do: these tests are about the files around a run.
BODY = "external_oms:\n  enabled: true\n"


def _cli(directory: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--environments-dir", str(directory), *args])


# --- output files are checked before planning -------------------------------------------------


@pytest.fixture
def directory(live_sandbox: Sandbox, write_env: WriteEnv) -> Path:
    return write_env(TENANT, TENANT, live_sandbox[1], BODY).parent


def _refused_before_reading(result: Result, sandbox: SandboxApp, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    for text in expected:
        assert text in result.stderr
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.output
    assert sandbox.requests(TENANT) == [], "refused before reading the tenant"


def test_plan_out_into_a_missing_directory(
    live_sandbox: Sandbox, directory: Path, tmp_path: Path
) -> None:
    out = tmp_path / "missing" / "plan.json"

    result = _cli(directory, "plan", "--out", str(out))

    _refused_before_reading(
        result,
        live_sandbox[0],
        f"cannot write the plan file {out}: {out.parent} does not exist.",
    )


def test_plan_out_under_a_file(live_sandbox: Sandbox, directory: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "plan.json"

    result = _cli(directory, "plan", "--out", str(out))

    _refused_before_reading(result, live_sandbox[0], f"{tmp_path / 'file'} is not a directory")


def test_plan_out_onto_a_directory_through_a_symlink(
    live_sandbox: Sandbox, directory: Path, tmp_path: Path
) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "plans")

    result = _cli(directory, "plan", "--out", str(tmp_path / "link"))

    _refused_before_reading(result, live_sandbox[0], "link' is a directory")


def test_apply_journal_under_a_file(live_sandbox: Sandbox, directory: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    journal = tmp_path / "file" / "deeper" / "j.jsonl"

    result = _cli(directory, "apply", "--auto-approve", "--journal", str(journal))

    _refused_before_reading(
        result,
        live_sandbox[0],
        f"cannot write the apply journal {journal}: {tmp_path / 'file'} is not a directory.",
    )


def test_apply_journal_in_missing_directories_is_fine(
    live_sandbox: Sandbox, directory: Path, tmp_path: Path
) -> None:
    journal = tmp_path / "new" / "dirs" / "j.jsonl"

    result = _cli(directory, "apply", "--auto-approve", "--journal", str(journal))

    assert result.exit_code == 0, result.output
    assert journal.stat().st_size > 0
