"""The command line at its edges, through the real CLI: output files checked before any
tenant is read; no command, usage errors and Ctrl-C; stdout on a full disk or a closed pipe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.sandbox import SandboxApp, SandboxConfig

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
    assert "Error: " in result.stderr and "Traceback" not in result.output
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


# --- no command, usage errors, Ctrl-C ------------------------------------------------------------


def _run(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


def test_no_command_prints_the_help_on_stdout_and_succeeds() -> None:
    result = _run()

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: reconciler [OPTIONS] COMMAND [ARGS]...")
    assert "Commands:" in result.stdout and "apply" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "usage", "error"),
    [
        (["plan", "--bogus"], "reconciler plan [OPTIONS] [ENV]...", "No such option '--bogus'"),
        (["nosuch"], "reconciler [OPTIONS] COMMAND [ARGS]...", "No such command 'nosuch'."),
        (["drift", "--format", "xml"], "reconciler drift [OPTIONS] [ENV]...", "'xml' is not"),
    ],
)
def test_usage_errors_show_the_usage_and_exit_1_not_2(
    args: list[str], usage: str, error: str
) -> None:
    result = _run(*args)

    assert result.returncode == 1, "2 means changes pending in this tool"
    lines = result.stderr.splitlines()
    assert lines[0] == f"Usage: {usage}"
    assert lines[1].startswith("Try 'reconciler") and lines[1].endswith("--help' for help.")
    assert lines[-1].startswith("Error: ") and error in lines[-1]
    assert result.stdout == ""


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(latency_ms=300)], indirect=True)
def test_ctrl_c_exits_130_with_one_line(live_sandbox: Sandbox, directory: Path) -> None:
    sandbox, _ = live_sandbox
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--environments-dir", str(directory), "plan"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not sandbox.requests(TENANT) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sandbox.requests(TENANT), "the plan reached the sandbox"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()

    assert proc.returncode == 130, out + err
    assert err.strip() == "Error: interrupted."


# --- stdout that refuses writes --------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["plan"], ["drift", "--format", "json"], ["--help"]], ids=" ".join
)
def test_a_full_disk_on_stdout_is_one_line_and_exit_1(
    live_sandbox: Sandbox, directory: Path, args: list[str]
) -> None:
    with open("/dev/full", "w") as full:
        result = _run("--environments-dir", str(directory), *args, stdout=full)

    assert result.returncode == 1
    assert result.stderr == "Error: cannot write output: No space left on device.\n"


@pytest.mark.parametrize(
    "args", [["plan"], ["drift", "--format", "json"], ["--help"]], ids=" ".join
)
def test_a_reader_that_left_ends_the_run_quietly(
    live_sandbox: Sandbox, directory: Path, args: list[str]
) -> None:
    read, write = os.pipe()
    os.close(read)  # like `| head` that has already seen enough
    try:
        result = _run("--environments-dir", str(directory), *args, stdout=write)
    finally:
        os.close(write)

    assert result.returncode == 1
    assert result.stderr == "", "no traceback, no 'Exception ignored'"


# --- the environment around the HTTP client ----------------------------------------------------


def test_a_broken_proxy_variable_is_one_clear_error_without_its_password(
    live_sandbox: Sandbox, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx reads proxy variables while building the client; an unusable one used to end in a
    # ValueError traceback whose text held the proxy URL (and so any password in it).
    monkeypatch.setenv("ALL_PROXY", "bogus://proxyuser:proxy-password-1234@proxy.invalid:3128")

    result = _cli(directory, "plan")

    assert result.exit_code == 1, result.output
    assert "cannot set up the HTTP client" in result.stderr
    assert "ALL_PROXY" in result.stderr
    assert "proxy-password-1234" not in result.output + result.stderr
    assert "Traceback" not in result.output
    assert live_sandbox[0].requests(TENANT) == []
