"""`reconciler apply --plan`: a reviewed plan is applied exactly, or refused with nothing written
when the live state, the environment file, its secrets or the plan file moved since."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from apply_helpers import FORWARD, ON, WEBHOOK, seed, writes
from click.testing import Result
from env_helpers import OFF_YAML, ON_YAML, WriteEnv, run_cli

from reconciler.core.planfile import checksum
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY

Sandbox = tuple[SandboxApp, str]
TENANT = "acme-staging"


@pytest.fixture
def planned(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """(environments dir, reviewed plan file) for the forward migration of acme-staging."""
    monkeypatch.chdir(tmp_path)
    _, base = live_sandbox
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent
    plan_file = tmp_path / "reviewed.json"
    result = run_cli(directory, "plan", "--out", str(plan_file))
    assert result.exit_code == 0, result.output
    return directory, plan_file


def _apply_plan(directory: Path, plan_file: Path, *args: str) -> Result:
    return run_cli(
        directory,
        "apply",
        "--plan",
        str(plan_file),
        "--journal",
        "j.jsonl",
        "--auto-approve",
        *args,
    )


def _refused(result: Result, sandbox: SandboxApp, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.output
    assert writes(sandbox, TENANT) == [], "a refused plan writes nothing"


def test_a_reviewed_plan_is_applied_exactly(
    live_sandbox: Sandbox, planned: tuple[Path, Path]
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned

    result = _apply_plan(directory, plan_file)

    assert result.exit_code == 0, result.output
    assert writes(sandbox, TENANT) == FORWARD
    assert "Apply complete: 5 steps in 1 environment" in result.stdout
    assert run_cli(directory, "plan", "--detailed-exitcode").exit_code == 0


def test_without_auto_approve_it_refuses_without_a_terminal(
    live_sandbox: Sandbox, planned: tuple[Path, Path]
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned

    result = run_cli(directory, "apply", "--plan", str(plan_file))

    _refused(result, sandbox, "refusing to apply without confirmation")
    assert f"run `apply --plan {plan_file} --auto-approve`" in result.stderr
    assert "1. external_oms: update" in result.stdout, "the checked plan is shown first"


def test_without_auto_approve_it_asks_on_a_terminal(
    live_sandbox: Sandbox, planned: tuple[Path, Path], tmp_path: Path
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned
    command = ["--environments-dir", str(directory), "apply", "--plan", str(plan_file)]
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *command],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=os.environ.copy(),
        )
        os.close(terminal)
        os.write(controller, b"y\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)

    assert proc.returncode == 0, out + err
    assert "Apply these 5 changes to acme-staging? [y/N]" in out
    assert writes(sandbox, TENANT) == FORWARD


def test_a_stale_live_state_is_refused_with_what_moved(
    live_sandbox: Sandbox, planned: tuple[Path, Path]
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned
    seed(sandbox, TENANT, {**ON, "external_atp": {"enabled": False}, "associate_app": {}})

    result = _apply_plan(directory, plan_file)

    _refused(
        result,
        sandbox,
        "is stale: the live state changed since the plan; nothing was applied",
        "acme-staging external_oms.enabled: planned from false, now true",
        "acme-staging availability_webhook: planned from absent, now {",
        "Run `reconciler plan --out` again",
    )
    assert DEFAULT_WEBHOOK_API_KEY not in result.output


def test_a_changed_live_secret_is_named_but_not_shown(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sandbox, base = live_sandbox
    live_hook = {**WEBHOOK, "url": f"{base}/_sandbox/webhook/availabilities", "timeout": 30}
    seed(sandbox, TENANT, {**ON, "availability_webhook": live_hook})
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent
    plan_file = tmp_path / "reviewed.json"
    assert run_cli(directory, "plan", "--out", str(plan_file)).exit_code == 0
    other = "another-webhook-key-0123456789"
    seed(sandbox, TENANT, {**ON, "availability_webhook": {**live_hook, "api_key": other}})

    result = _apply_plan(directory, plan_file)

    _refused(
        result,
        sandbox,
        "availability_webhook.api_key: planned from (sensitive), now (sensitive, changed)",
    )
    assert other not in result.output


def test_an_edited_environment_file_is_refused(
    live_sandbox: Sandbox, planned: tuple[Path, Path]
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned
    env_file = directory / f"{TENANT}.yaml"
    env_file.write_text(env_file.read_text().replace("use_new_om_ui: true", "use_new_om_ui: false"))

    result = _apply_plan(directory, plan_file)

    _refused(
        result,
        sandbox,
        "does not match the environments; nothing was applied",
        "acme-staging: the environment file or secrets changed since the plan",
    )


def test_a_changed_secret_variable_is_refused(
    live_sandbox: Sandbox, planned: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned
    monkeypatch.setenv("SANDBOX_WEBHOOK_API_KEY", "a-rotated-webhook-key-0123456789")

    result = _apply_plan(directory, plan_file)

    _refused(result, sandbox, "the environment file or secrets changed since the plan")
    assert "a-rotated-webhook-key" not in result.output


def test_an_edited_plan_file_is_refused(live_sandbox: Sandbox, planned: tuple[Path, Path]) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned
    doc = json.loads(plan_file.read_text())
    del doc["environments"][0]["steps"][3]  # "never mind the Associate App"
    plan_file.write_text(json.dumps(doc))

    _refused(_apply_plan(directory, plan_file), sandbox, "the plan file was edited")


def test_a_forged_plan_with_other_steps_is_refused(
    live_sandbox: Sandbox, planned: tuple[Path, Path]
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned
    doc = json.loads(plan_file.read_text())
    steps = doc["environments"][0]["steps"]
    steps[0], steps[2] = steps[2], steps[0]  # external ATP first: unsafe
    doc["checksum"] = checksum(doc)
    plan_file.write_text(json.dumps(doc))

    _refused(
        _apply_plan(directory, plan_file),
        sandbox,
        "cannot be applied as written",
        "acme-staging: planning again from the same live state gives other steps",
    )


def test_a_plan_for_an_unknown_environment_is_refused(
    live_sandbox: Sandbox, planned: tuple[Path, Path]
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned
    (directory / f"{TENANT}.yaml").rename(directory / "acme-renamed.yaml")

    _refused(_apply_plan(directory, plan_file), sandbox, "unknown environment `acme-staging`")


def test_an_environment_not_in_the_plan_is_refused(
    live_sandbox: Sandbox, planned: tuple[Path, Path]
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned

    _refused(
        _apply_plan(directory, plan_file, "acme-eu"),
        sandbox,
        "the plan file has no plan for acme-eu; it plans acme-staging",
    )


def test_a_blocked_plan_is_refused(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sandbox, base = live_sandbox
    seed(sandbox, TENANT, ON)
    directory = write_env(TENANT, TENANT, base, OFF_YAML).parent
    plan_file = tmp_path / "blocked.json"
    assert run_cli(directory, "plan", "--out", str(plan_file)).exit_code == 3

    result = _apply_plan(directory, plan_file)
    _refused(result, sandbox, "acme-staging: the plan is blocked")
    # Said as what it is, with the gate that blocks it (not "does not match").
    assert f"{plan_file} is blocked; nothing was applied" in result.stderr
    assert "newstore_stock_confirmed" in result.stderr
    assert "does not match" not in result.stderr


def test_a_live_state_that_cannot_be_read_is_not_called_stale(
    live_sandbox: Sandbox, planned: tuple[Path, Path]
) -> None:
    sandbox, _ = live_sandbox
    directory, plan_file = planned
    sandbox.set_faults([{"method": "GET", "path": f"/{TENANT}/*", "status": 400, "times": 50}])

    result = _apply_plan(directory, plan_file)

    _refused(
        result,
        sandbox,
        "cannot be checked against the live state; nothing was applied",
        f"[{TENANT}] external_oms: NewStore rejected the call",
        "Request id: ",
    )
    assert "stale" not in result.stderr
