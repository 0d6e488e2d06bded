"""`reconciler plan` end to end: the real CLI, environment files, the sandbox on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from env_helpers import OFF_YAML, ON_YAML, STOCK_UNCONFIRMED_YAML, WriteEnv, run_cli

from reconciler.core.planfile import load_plan_file
from reconciler.sandbox import SandboxApp

OFF = OFF_YAML + STOCK_UNCONFIRMED_YAML


def _plan(directory: Path, *args: str) -> Result:
    return run_cli(directory, "plan", *args)


@pytest.fixture
def envs(live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv) -> Path:
    """staging: needs the forward migration; eu: converged on NewStore-managed ATP."""
    _, base = live_sandbox
    write_env("acme-eu", "acme-eu", base, OFF)
    return write_env("acme-staging", "acme-staging", base, ON_YAML).parent


def test_changes_exit_0_or_2_with_detailed_exitcode(envs: Path) -> None:
    result = _plan(envs)
    assert result.exit_code == 0, result.output
    assert "1. external_oms: update" in result.stdout
    assert "acme-eu: no changes" in result.stdout
    assert result.stdout.rstrip().endswith("Plan: 2 environments, 5 changes, 0 blocked, 0 errors")
    assert "\x1b[" not in result.stdout  # not a terminal: no colour

    assert _plan(envs, "--detailed-exitcode").exit_code == 2
    assert _plan(envs, "acme-eu", "--detailed-exitcode").exit_code == 0


def test_json_and_out_are_the_same_plan_file(envs: Path, tmp_path: Path) -> None:
    out = tmp_path / "reviewed.json"
    result = _plan(envs, "--format", "json", "--out", str(out))

    assert result.exit_code == 0, result.output
    assert result.stdout == out.read_text()
    doc = load_plan_file(out)
    assert [e["name"] for e in doc["environments"]] == ["acme-eu", "acme-staging"]
    assert [e["status"] for e in doc["environments"]] == ["converged", "changes"]
    text = out.read_text()
    assert "sandbox-secret" not in text and "sandbox-webhook-api-key" not in text


def test_markdown(envs: Path) -> None:
    result = _plan(envs, "--format", "markdown", "acme-staging")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## NewStore reconciler plan")
    assert "| acme-staging | 📝 changes | 5 |" in result.stdout


def test_blocked_exits_3_even_without_detailed_exitcode(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    sandbox.seed("acme-eu", {"external_oms": {"enabled": True}, "uses_external_atp": True})
    directory = write_env("acme-eu", "acme-eu", base, OFF).parent

    result = _plan(directory)
    assert result.exit_code == 3, result.output
    # Since issue 12: the date to write, in the environment's own file (never the base).
    assert "newstore_stock_confirmed: 20" in result.stdout and "acme-eu.yaml" in result.stdout
    assert _plan(directory, "--detailed-exitcode").exit_code == 3


def test_probe_runs_during_plan(envs: Path) -> None:
    result = _plan(envs, "--probe", "--format", "json", "acme-staging")
    assert result.exit_code == 0, result.output
    (staging,) = json.loads(result.stdout)["environments"]
    (gate,) = staging["steps"][2]["gates"]
    assert gate["satisfied"] is True


def test_an_unreadable_environment_is_an_error_that_beats_blocked(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv, envs: Path
) -> None:
    sandbox, _ = live_sandbox
    sandbox.seed("acme-eu", {"external_oms": {"enabled": True}, "uses_external_atp": True})
    sandbox.set_faults(
        [
            {
                "method": "GET",
                "path": "/acme-staging/v0/config/sales_order/external_oms",
                "status": 400,
            }
        ]
    )

    result = _plan(envs, "--detailed-exitcode")
    assert result.exit_code == 1, result.output
    assert "Error: [acme-staging] external_oms:" in result.stderr
    assert "Request id:" in result.stderr
    assert "acme-eu: 2 to change, blocked" in result.stdout, "other environments still planned"


def test_unknown_environment_is_a_one_line_error(envs: Path) -> None:
    result = _plan(envs, "acme-stagin")
    assert result.exit_code == 1
    assert "unknown environment `acme-stagin`" in result.stderr
    assert "Traceback" not in result.output
