"""`reconciler apply` through the real CLI against the sandbox on 127.0.0.1: confirmation,
exit codes, per-step output, the default journal, --keep-going, and the prompt on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from apply_helpers import FORWARD, OFF, ON, seed, writes
from click.testing import Result
from env_helpers import OFF_YAML, ON_YAML, STOCK_CONFIRMED_YAML, WriteEnv, run_cli

from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH

Sandbox = tuple[SandboxApp, str]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default journal goes under ./.reconciler: keep it out of the checkout.
    monkeypatch.chdir(tmp_path)


def _apply(directory: Path, *args: str) -> Result:
    return run_cli(directory, "apply", *args)


def _no_secret(result: Result) -> None:
    for secret in (DEFAULT_WEBHOOK_API_KEY, "sandbox-secret"):
        assert secret not in result.output


def test_refuses_without_a_terminal_unless_auto_approve(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-staging", "acme-staging", base, ON_YAML).parent

    result = _apply(directory)

    assert result.exit_code == 1
    assert "1. external_oms: update" in result.stdout, "the plan is shown first"
    assert "refusing to apply without confirmation" in result.stderr
    assert "--auto-approve" in result.stderr and "apply --plan" in result.stderr
    assert writes(sandbox, "acme-staging") == []
    assert not (tmp_path / ".reconciler").exists(), "no journal for a run that wrote nothing"


def test_auto_approve_applies_step_by_step_and_keeps_a_journal(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-staging", "acme-staging", base, ON_YAML).parent

    result = _apply(directory, "--auto-approve")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "[acme-staging] 1/5 external_oms: update … applied (request id " in out
    assert "[acme-staging] 2/5 availability_webhook: create … applied (request id " in out
    assert "[acme-staging] 3/5 external_atp: gate webhook_probe passed: 200 in " in out
    assert "[acme-staging] 4/5 external_order_webhook: create … applied (request id " in out
    assert "[acme-staging] 5/5 associate_app: update … applied (request id " in out
    assert "[acme-staging] converged" in out
    assert out.rstrip().endswith("Apply complete: 5 steps in 1 environment, all converged.")
    assert writes(sandbox, "acme-staging") == FORWARD
    _no_secret(result)
    (journal,) = (tmp_path / ".reconciler" / "journal").glob("apply-*-*.jsonl")
    assert f"Journal: {journal.relative_to(tmp_path)}" in out

    again = _apply(directory)  # nothing to confirm: no terminal needed
    assert again.exit_code == 0, again.output
    assert "Nothing to do" in again.stdout
    assert len(writes(sandbox, "acme-staging")) == 5


def test_blocked_environments_exit_3_and_are_not_applied(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    seed(sandbox, "acme-eu", ON)
    directory = write_env("acme-eu", "acme-eu", base, OFF_YAML).parent

    for args in ((), ("--keep-going",)):
        result = _apply(directory, "--auto-approve", *args)

        assert result.exit_code == 3, result.output
        assert "nothing applied: acme-eu is blocked (see the plan above for why)" in result.stderr
        assert writes(sandbox, "acme-eu") == []


def test_one_blocked_environment_stops_every_write_unless_keep_going(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    seed(sandbox, "acme-eu", ON)
    write_env("acme-eu", "acme-eu", base, OFF_YAML)
    directory = write_env("acme-staging", "acme-staging", base, ON_YAML).parent

    refused = _apply(directory, "--auto-approve")

    assert refused.exit_code == 3, refused.output
    assert "nothing applied: acme-eu is blocked" in refused.stderr
    assert "--keep-going" in refused.stderr
    assert writes(sandbox, "acme-staging") == [], "nothing writes while any env is blocked"
    assert not (tmp_path / ".reconciler").exists(), "no journal for a run that wrote nothing"

    going = _apply(directory, "--auto-approve", "--keep-going", "--journal", "j.jsonl")

    assert going.exit_code == 3, going.output
    assert "[acme-staging] converged" in going.stdout
    assert "not applied: acme-eu is blocked" in going.stderr
    assert writes(sandbox, "acme-staging") == FORWARD
    assert writes(sandbox, "acme-eu") == []


def test_an_environment_that_cannot_be_read_stops_everything_before_writing(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    write_env("acme-a", "acme-a", base, ON_YAML)
    directory = write_env("acme-b", "acme-b", base, ON_YAML).parent
    sandbox.set_faults([{"method": "GET", "path": "/acme-b/*", "status": 400, "times": 100}])

    result = _apply(directory, "--auto-approve")

    assert result.exit_code == 1
    assert "Error: [acme-b]" in result.stderr
    assert writes(sandbox, "acme-a") == []


def test_a_failed_step_exits_1_with_the_safe_state_report(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-staging", "acme-staging", base, ON_YAML).parent
    path = "/acme-staging/v0/config/routing/uses_external_atp"
    sandbox.set_faults([{"method": "POST", "path": path, "status": 500, "times": 100}])

    result = _apply(directory, "--auto-approve", "--journal", "j.jsonl")

    assert result.exit_code == 1
    assert "[acme-staging] 3/5 external_atp: update … failed (request id " in result.stdout
    err = result.stderr
    assert err.startswith("Error: [acme-staging] external_atp: NewStore rejected the call")
    assert "FAILED        3/5 external_atp: update (request id " in err
    assert "not attempted 5/5 associate_app: update" in err
    assert "The live state, re-read just now, satisfies every safety rule." in err
    assert "Traceback" not in result.output
    assert writes(sandbox, "acme-staging")[:2] == FORWARD[:2]
    assert ("associate_app", "PUT") not in writes(sandbox, "acme-staging")


def test_a_failing_probe_exits_3(live_sandbox: Sandbox, write_env: WriteEnv) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-staging", "acme-staging", base, ON_YAML).parent
    sandbox.set_faults([{"method": "POST", "path": WEBHOOK_PATH, "status": 503}])

    result = _apply(directory, "--auto-approve", "--journal", "j.jsonl")

    assert result.exit_code == 3, result.output
    assert "gate webhook_probe failed: webhook probe to " in result.stderr
    assert "[acme-staging] 3/5 external_atp: gate webhook_probe failed" in result.stdout
    assert writes(sandbox, "acme-staging") == FORWARD[:2]


def test_keep_going_applies_the_other_environments(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    write_env("acme-a", "acme-a", base, ON_YAML)
    directory = write_env("acme-b", "acme-b", base, ON_YAML).parent
    path = "/acme-a/v0/config/sales_order/external_oms"
    sandbox.set_faults([{"method": "POST", "path": path, "status": 500, "times": 100}])

    stopped = _apply(directory, "--auto-approve", "--journal", "1.jsonl")
    assert stopped.exit_code == 1
    assert "acme-b: not attempted" in stopped.stderr
    assert writes(sandbox, "acme-b") == []

    going = _apply(directory, "--auto-approve", "--keep-going", "--journal", "2.jsonl")
    assert going.exit_code == 1
    assert "acme-b: applied, converged" in going.stderr
    assert writes(sandbox, "acme-b") == FORWARD


@pytest.mark.parametrize(("answer", "code"), [("n\n", 1), ("\n", 1), ("y\n", 0)])
def test_on_a_terminal_it_asks_and_defaults_to_no(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path, answer: str, code: int
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-staging", "acme-staging", base, ON_YAML).parent
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "--environments-dir", str(directory), "apply"],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=os.environ.copy(),
        )
        os.close(terminal)
        os.write(controller, answer.encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)

    assert proc.returncode == code, out + err
    assert "Apply these 5 changes to acme-staging? [y/N]" in out
    if code == 0:
        assert writes(sandbox, "acme-staging") == FORWARD
    else:
        assert "apply cancelled: nothing was written" in err
        assert writes(sandbox, "acme-staging") == []


def test_the_sandbox_state_after_a_cli_apply_matches_the_files(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    seed(sandbox, "acme-eu", ON)
    directory = write_env("acme-eu", "acme-eu", base, OFF_YAML + STOCK_CONFIRMED_YAML).parent

    result = _apply(directory, "--auto-approve", "--journal", "j.jsonl")

    assert result.exit_code == 0, result.output
    state = sandbox.state("acme-eu")
    assert state["availability_webhook"] is None
    assert state["uses_external_atp"] is False
    assert state["external_oms"] == OFF["external_oms"]
    assert state["associate_app_config"]["ui_configurations"]["use_new_om_ui"] is False
