"""`apply --format json`: JSON lines on stdout and nothing else, every record valid against
schemas/apply-events.schema.json, the first a `version`, the last a `summary` whatever ended
the run; no secret in any record. Through the real CLI against the sandbox on 127.0.0.1."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import FORWARD, ON, ORDER_WEBHOOK_API_KEY, seed, writes
from env_helpers import OFF_YAML, ON_YAML, STOCK_UNCONFIRMED_YAML, WriteEnv, run_cli
from jsonschema import Draft202012Validator

from reconciler.config import load_environments
from reconciler.core.lock import LOCAL, LockRequest, hold_locks
from reconciler.resources import schema_path
from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY

pytestmark = pytest.mark.e2e

Sandbox = tuple[SandboxApp, str]
SECRETS = ("sandbox-secret", DEFAULT_WEBHOOK_API_KEY, ORDER_WEBHOOK_API_KEY)
VALIDATOR = Draft202012Validator(
    json.loads(schema_path("apply-events.schema.json").read_text()),
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)


def records(stdout: str) -> list[dict[str, Any]]:
    """Every line of stdout, each a record valid against the schema; no secret anywhere; the
    first the version record and the last the summary."""
    for secret in SECRETS:
        assert secret not in stdout
    lines = stdout.splitlines()
    assert lines and stdout.endswith("\n"), stdout
    found = [json.loads(line) for line in lines]
    for record in found:
        errors = [e.message for e in VALIDATOR.iter_errors(record)]
        assert errors == [], (record, errors)
    assert found[0] == {
        "type": "version",
        "format_version": 1,
        "tool_version": found[0]["tool_version"],
        "command": "apply",
    }
    assert found[-1]["type"] == "summary"
    assert [r["type"] for r in found].count("summary") == 1
    return found


def types(found: list[dict[str, Any]]) -> list[str]:
    return [r["type"] for r in found]


def test_an_apply_with_changes_then_one_with_nothing_to_do(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme", "acme", base, ON_YAML).parent
    journal = tmp_path / "j.jsonl"

    result = run_cli(
        directory, "apply", "--auto-approve", "--format", "json", "--journal", str(journal)
    )

    assert result.exit_code == 0, result.output
    found = records(result.stdout)
    assert types(found) == [
        "version",
        "lock_acquired",
        "plan_accepted",
        *(["step_started", "step_finished"] * 2),
        "step_started",
        "gate_checked",
        "step_finished",
        *(["step_started", "step_finished"] * 2),
        "environment_converged",
        "lock_released",
        "summary",
    ]
    summary = found[-1]
    assert summary["exit_code"] == 0 and summary["outcome"] == "applied"
    assert summary["error"] is None and summary["journal"] == str(journal)
    assert summary["steps"] == {
        "applied": 5, "skipped": 0, "failed": 0, "blocked": 0, "undone": 0, "not_attempted": 0
    }  # fmt: skip
    assert summary["actions"] == {"create": 2, "update": 3, "delete": 0}
    assert summary["environments"] == [
        {"name": "acme", "tenant": "acme", "outcome": "applied", "steps": summary["steps"]}
    ]
    (accepted,) = [r for r in found if r["type"] == "plan_accepted"]
    assert summary["plan_checksum"] == accepted["plan_checksum"]
    assert summary["provenance"]["actor"] and summary["provenance"]["config_commit"] is None
    # Human text went to stderr: the plan, the journal line, every step, the end.
    assert "Plan: 1 environment, 5 changes" in result.stderr
    assert "Apply complete: 5 steps in 1 environment, all converged." in result.stderr
    # The journal's record set carries the same provenance and plan checksum.
    start = json.loads(journal.read_text().splitlines()[0])
    assert start["provenance"] == {
        **summary["provenance"],
        "plan_checksum": accepted["plan_checksum"],
    }
    assert writes(sandbox, "acme") == FORWARD

    again = run_cli(directory, "apply", "--auto-approve", "--format", "json")
    found = records(again.stdout)
    assert types(found) == ["version", "lock_acquired", "plan_accepted", "lock_released", "summary"]
    assert found[-1]["outcome"] == "nothing_to_do" and found[-1]["journal"] is None
    assert found[-1]["environments"][0]["outcome"] == "converged"


def test_a_failed_step_ends_with_its_stop_report(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme", "acme", base, ON_YAML).parent
    sandbox.set_faults(
        [{"method": "POST", "path": "/acme/v0/config/routing/uses_external_atp", "status": 400}]
    )

    journal = str(tmp_path / "j.jsonl")
    result = run_cli(directory, "apply", "--auto-approve", "--format", "json", "--journal", journal)

    assert result.exit_code == 1
    found = records(result.stdout)
    (stopped,) = [r for r in found if r["type"] == "environment_stopped"]
    assert stopped["failed_at"] == 3 and stopped["total"] == 5
    assert [s["step"] for s in stopped["not_attempted"]] == [4, 5]
    assert stopped["safety"]["satisfied"] is True and stopped["safety"]["broken"] == []
    failed = [r for r in found if r["type"] == "step_finished" and r["outcome"] == "failed"]
    assert [r["setting"] for r in failed] == ["external_atp"]
    summary = found[-1]
    assert summary["exit_code"] == 1 and summary["outcome"] == "failed"
    assert summary["error"]["kind"] == "apply"
    assert summary["error"]["message"].startswith("[acme]")
    assert summary["steps"] == {
        "applied": 2, "skipped": 0, "failed": 1, "blocked": 0, "undone": 0, "not_attempted": 2
    }  # fmt: skip
    assert summary["environments"][0]["outcome"] == "failed"
    assert result.stderr.startswith("acme (tenant acme, read from ")  # the plan, then the error
    assert "Error: [acme]" in result.stderr and "stopped at step 3 of 5" in result.stderr


def test_refused_runs_still_end_with_a_summary(live_sandbox: Sandbox, write_env: WriteEnv) -> None:
    sandbox, base = live_sandbox
    write_env("held", "held", base, ON_YAML)
    seed(sandbox, "blocked", ON)
    directory = write_env("blocked", "blocked", base, OFF_YAML + STOCK_UNCONFIRMED_YAML).parent

    blocked = run_cli(directory, "apply", "blocked", "--auto-approve", "--format", "json")
    assert blocked.exit_code == 3
    found = records(blocked.stdout)
    assert "step_started" not in types(found)
    assert found[-1]["outcome"] == "blocked" and found[-1]["error"]["kind"] == "blocked"
    assert found[-1]["environments"][0]["outcome"] == "blocked"

    env = load_environments(directory, ["held"])
    with hold_locks(env, LOCAL, LockRequest()):
        held = run_cli(directory, "apply", "held", "--auto-approve", "--format", "json")
    assert held.exit_code == 1
    found = records(held.stdout)
    assert types(found) == ["version", "summary"]
    assert found[-1]["error"]["kind"] == "lock_held"
    assert found[-1]["environments"] == [] and found[-1]["plan_checksum"] is None
    assert writes(sandbox, "held") == []


def test_a_reviewed_plan_file_carries_its_checksum(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    _, base = live_sandbox
    directory = write_env("acme", "acme", base, ON_YAML).parent
    plan_file = tmp_path / "plan.json"
    assert run_cli(directory, "plan", "--out", str(plan_file)).exit_code == 0
    checksum = json.loads(plan_file.read_text())["checksum"]

    result = run_cli(
        directory,
        *("apply", "--plan", str(plan_file), "--auto-approve", "--format", "json"),
        *("--journal", str(tmp_path / "j.jsonl")),
    )

    found = records(result.stdout)
    assert found[-1]["exit_code"] == 0
    assert found[-1]["plan_checksum"] == checksum
    assert [r["plan_checksum"] for r in found if r["type"] == "plan_accepted"] == [checksum]


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(latency_ms=150)], indirect=True)
def test_a_signal_ends_the_records_with_interrupted_and_the_summary(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    _, base = live_sandbox
    directory = write_env("sig", "sig", base, ON_YAML).parent
    command = [sys.executable, "-m", "reconciler", "--environments-dir", str(directory)]
    proc = subprocess.Popen(
        [*command, "apply", "--auto-approve", "--format", "json", "--journal", "j.jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 60
        # The first write is on its way once step 1 started: stop it there. (Read unbuffered,
        # so that `communicate` gets the rest.)
        while b'"type":"step_started"' not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()

    assert proc.returncode == 143, out + err
    found = records(seen.decode() + out)
    assert types(found)[-3:] == ["environment_stopped", "interrupted", "summary"]
    assert found[-2]["signal"] == "SIGTERM"
    summary = found[-1]
    assert summary["exit_code"] == 143 and summary["outcome"] == "interrupted"
    assert summary["error"]["kind"] == "interrupted"
    applied = [r for r in found if r["type"] == "step_finished" and r["outcome"] == "applied"]
    (stopped,) = [r for r in found if r["type"] == "environment_stopped"]
    steps = summary["steps"]
    assert steps["applied"] == len(applied) < 5
    assert steps["not_attempted"] == len(stopped["not_attempted"])
    # (The step a signal stopped before its write counts as failed until issue 23's labels.)
    assert steps["applied"] + steps["failed"] + steps["not_attempted"] == 5
    assert stopped["safety"]["satisfied"] is True


def test_a_write_undone_at_once_is_its_own_record(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    from test_safety_v3_concurrent import _a_and_b, _b_runs_inside_a, _seed

    write_env("unused", "unused", "http://127.0.0.1:1")  # exports the secrets' variables
    sandbox, base = live_sandbox
    _seed(sandbox, base)
    a, b = _a_and_b(tmp_path, base, "127.0.0.1", "127.0.0.1")
    _b_runs_inside_a(sandbox, b, str(tmp_path / "the-other-machines-locks"))

    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "--environments-dir", str(a), "apply",
         "--auto-approve", "--format", "json", "--journal", str(tmp_path / "a.jsonl")],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    found = records(result.stdout)
    (undone,) = [r for r in found if r["type"] == "write_undone"]
    assert undone["setting"] == "external_atp" and undone["request_id"]
    assert "set external_atp back off" in undone["detail"]
    summary = found[-1]
    assert summary["steps"]["undone"] == 1 and summary["error"]["kind"] == "changed_underneath"
    (stopped,) = [r for r in found if r["type"] == "environment_stopped"]
    assert stopped["safety"]["satisfied"] is True
