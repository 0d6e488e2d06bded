"""Faults across a whole run (issue 13), through the real CLI against the sandbox on 127.0.0.1:
an IP block part-way through many environments, Ctrl-C and CI's SIGTERM during apply, and one
broken environment file among several."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apply_helpers import FORWARD, writes
from click.testing import Result
from env_helpers import OFF_YAML, ON_YAML, WriteEnv, run_cli
from jsonschema import Draft202012Validator

from reconciler.core.journal import read_journal
from reconciler.resources import schema_path
from reconciler.sandbox import SandboxApp, SandboxConfig

Sandbox = tuple[SandboxApp, str]

# Every request of the blk-* tenants (API and token) passes for `k` requests, then NewStore
# blocks the IP (403, an HTML page).
IP_BLOCK_AFTER = [
    {"path": "/*blk-*", "times": 0},
    {"path": "/*blk-*", "status": 403, "body": "html"},
]
BROKEN_YAML = ON_YAML.replace("${SANDBOX_WEBHOOK_API_KEY}", "${ISSUE13_UNSET_API_KEY}")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default journal goes under ./.reconciler
    monkeypatch.delenv("ISSUE13_UNSET_API_KEY", raising=False)


def _block_after(app: SandboxApp, k: int) -> None:
    app.set_faults([{**IP_BLOCK_AFTER[0], "times": k}, {**IP_BLOCK_AFTER[1], "times": None}])


def _sent(app: SandboxApp, tenants: list[str]) -> int:
    return sum(len(app.requests(tenant)) for tenant in tenants)


def _schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_path(name).read_text(encoding="utf-8")))


# --- the IP block --------------------------------------------------------------------------


# A plan reads each environment with one token request, then its four settings side by side.
# k=15: the 16th request (environment 3's token request) is blocked, nothing else in flight.
# k=17: blocked among environment 3's reads; its other reads may be in flight already.
@pytest.mark.parametrize(("k", "in_flight"), [(15, 0), (17, 3)])
def test_after_an_ip_block_no_request_follows_but_those_in_flight(
    live_sandbox: Sandbox, write_env: WriteEnv, k: int, in_flight: int
) -> None:
    sandbox, base = live_sandbox
    tenants = [f"blk-{n:02}" for n in range(12)]
    for tenant in tenants:
        directory = write_env(tenant, tenant, base, OFF_YAML).parent
    _block_after(sandbox, k)

    result = run_cli(directory, "plan", "--parallelism", "1", "--format", "json")

    assert result.exit_code == 1, result.output
    sent = _sent(sandbox, tenants)
    assert k + 1 <= sent <= k + 1 + in_flight, f"{sent} requests for a block at {k + 1}"
    doc = json.loads(result.stdout)
    assert not list(_schema("plan.schema.json").iter_errors(doc))
    fates = {env["name"]: (env["status"], env["error"]) for env in doc["environments"]}
    assert list(fates) == tenants, "every environment is reported"
    assert all(fates[t] == ("converged", "") for t in tenants[:3])
    assert "30,000 requests per 5 minutes" in fates["blk-03"][1]
    for tenant in tenants[4:]:
        status, error = fates[tenant]
        assert status == "error"
        assert "not sent: NewStore blocked this IP at" in error
        assert "ask NewStore support to lift it" in error


def test_an_ip_block_during_apply_stops_the_run_and_does_not_reread(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    tenants = ["blk-a", "blk-b", "blk-c"]
    for tenant in tenants:
        directory = write_env(tenant, tenant, base, ON_YAML).parent
    # Planning sends 3 x 6 requests (a token and five GETs). Apply's first environment then
    # fetches a token, re-reads external_oms and the two settings sharing a rule with it, writes
    # it, reads it back (6);
    # the next request, step 2's re-read, is blocked.
    k = 18 + 6
    _block_after(sandbox, k)

    result = run_cli(directory, "apply", "--auto-approve", "--keep-going", "--journal", "j.jsonl")

    assert result.exit_code == 1, result.output
    assert _sent(sandbox, tenants) == k + 1, "not one request after the block"
    assert writes(sandbox, "blk-a") == FORWARD[:1]
    err = result.stderr
    assert "30,000 requests per 5 minutes" in err
    assert "so the live state was not re-read" in err
    assert "it satisfies every safety rule" in err
    for tenant in tenants[1:]:
        assert f"{tenant}: not attempted (NewStore blocked this IP at" in err
        assert writes(sandbox, tenant) == []
    end = read_journal(tmp_path / "j.jsonl")[-1]
    assert end["phase"] == "end"
    assert end["environments"] == {
        "blk-a": "failed",
        "blk-b": "not attempted",
        "blk-c": "not attempted",
    }


# --- Ctrl-C and SIGTERM during apply ---------------------------------------------------------


def _wait_for_intent(proc: subprocess.Popen[str], journal: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and any(e["phase"] == "intent" for e in read_journal(journal)):
            return
        time.sleep(0.01)
    raise AssertionError("apply never started writing")


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(latency_ms=150)], indirect=True)
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_apply_before_the_next_write_with_the_stop_report(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path, signum: int, code: int
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("sig", "sig", base, ON_YAML).parent
    journal = tmp_path / "sig.jsonl"
    command = [sys.executable, "-m", "reconciler", "--environments-dir", str(directory)]
    proc = subprocess.Popen(
        [*command, "apply", "--auto-approve", "--journal", str(journal)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=os.environ.copy(),
    )
    try:
        _wait_for_intent(proc, journal)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()

    name = signal.Signals(signum).name
    assert proc.returncode == code, out + err
    assert "Traceback" not in err
    assert f"{name} received: stopped before step 2/5" in err
    assert "applied       1/5 external_oms: update" in err
    assert (
        f"not attempted 2/5 availability_webhook: create (interrupted: {name} before it started)"
        in err
    )
    assert "FAILED" not in err and "failed" not in err  # issue 21.5: interrupted, not failed
    assert "The live state, re-read just now, satisfies every safety rule." in err
    assert writes(sandbox, "sig") == FORWARD[:1], "the write in flight finished; no other"
    closing = read_journal(journal)[-1]
    assert closing["phase"] == "interrupted"
    assert closing["signal"] == name
    assert closing["environments"] == {"sig": "interrupted"}

    # The lock is free (no waiting allowed), and running again converges.
    rerun = run_cli(
        directory, "apply", "--auto-approve", "--lock-timeout", "0", "--journal", "2.jsonl"
    )
    assert rerun.exit_code == 0, rerun.output
    assert writes(sandbox, "sig") == FORWARD
    assert run_cli(directory, "plan", "--detailed-exitcode").exit_code == 0


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(latency_ms=150)], indirect=True)
def test_the_steps_a_signal_stopped_say_interrupted_not_failed(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    """Found as a new user: a Ctrl-C between steps is no failure. The step that never started,
    and those after it, read "not attempted (interrupted)"; the environment's outcome, in the
    text, the JSON summary and the journal, is "interrupted", never "failed"."""
    from test_apply_events import records  # the schema-validating reader of JSON lines

    sandbox, base = live_sandbox
    directory = write_env("sig", "sig", base, ON_YAML).parent
    journal = tmp_path / "sig.jsonl"
    command = [sys.executable, "-m", "reconciler", "--environments-dir", str(directory)]
    proc = subprocess.Popen(
        [*command, "apply", "--auto-approve", "--format", "json", "--journal", str(journal)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=os.environ.copy(),
    )
    try:
        _wait_for_intent(proc, journal)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()

    assert proc.returncode == 130, out + err
    report = err[err.index("Error: ") :]
    assert "sig (tenant sig): stopped before step 2 of 5 (SIGINT)." in report
    assert (
        "not attempted 2/5 availability_webhook: create (interrupted: SIGINT before it started)"
        in report
    )
    assert "not attempted 5/5 associate_app: update (interrupted)" in report
    assert "failed" not in report.lower() and "stopped at step" not in report
    summary = records(out)[-1]
    assert summary["outcome"] == "interrupted" and summary["error"]["kind"] == "interrupted"
    (env,) = summary["environments"]
    assert env["outcome"] == "interrupted", env
    assert env["steps"]["failed"] == 0 and env["steps"]["not_attempted"] == 4
    assert read_journal(journal)[-1]["environments"] == {"sig": "interrupted"}
    assert writes(sandbox, "sig") == FORWARD[:1]


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(latency_ms=300)], indirect=True)
def test_sigterm_during_drift_exits_143_at_once_without_a_traceback(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("sig-d", "sig-d", base, OFF_YAML).parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--environments-dir", str(directory), "drift"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 60
        while not sandbox.requests("sig-d") and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, out + err
    assert err.strip() == "Error: terminated (SIGTERM)."


# --- one broken environment among many ---------------------------------------------------------


def _three(write_env: WriteEnv, base: str) -> Path:
    write_env("env-a", "env-a", base, ON_YAML)
    write_env("env-b", "env-b", base, BROKEN_YAML)
    return write_env("env-c", "env-c", base, ON_YAML).parent


def _the_broken_one(text: str) -> None:
    assert "env-b.yaml cannot be used (1 problem)" in text
    assert "ISSUE13_UNSET_API_KEY" in text


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_a_missing_secret_in_one_of_three_environments_plans_the_other_two(
    live_sandbox: Sandbox, write_env: WriteEnv, fmt: str
) -> None:
    _, base = live_sandbox
    directory = _three(write_env, base)

    result = run_cli(directory, "plan", "--format", fmt)

    assert result.exit_code == 1, result.output
    _the_broken_one(result.stdout)
    _the_broken_one(result.stderr)
    if fmt == "json":
        doc = json.loads(result.stdout)
        assert not list(_schema("plan.schema.json").iter_errors(doc))
        statuses = {env["name"]: env["status"] for env in doc["environments"]}
        assert statuses == {"env-a": "changes", "env-b": "error", "env-c": "changes"}
        assert doc["environments"][1]["tenant"] == "env-b"
    else:
        assert "external_oms" in result.stdout  # the others' steps are there
        for name in ("env-a", "env-b", "env-c"):
            assert name in result.stdout


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_drift_reports_the_broken_one_as_error_and_exits_1_over_2(
    live_sandbox: Sandbox, write_env: WriteEnv, fmt: str
) -> None:
    _, base = live_sandbox
    directory = _three(write_env, base)

    result = run_cli(directory, "drift", "--format", fmt)

    assert result.exit_code == 1, "error (1) beats drift (2)"
    _the_broken_one(result.stdout)
    if fmt == "json":
        doc = json.loads(result.stdout)
        assert not list(_schema("drift.schema.json").iter_errors(doc))
        statuses = {env["name"]: env["status"] for env in doc["environments"]}
        assert statuses == {"env-a": "drift", "env-b": "error", "env-c": "drift"}


def test_validate_still_lists_every_problem(live_sandbox: Sandbox, write_env: WriteEnv) -> None:
    _, base = live_sandbox
    directory = _three(write_env, base)
    (directory / "env-c.yaml").write_text(
        (directory / "env-c.yaml").read_text().replace("timeout: 5\nexternal", "timeout: 99\nx")
    )
    result = run_cli(directory, "validate")
    assert result.exit_code == 1
    assert "ISSUE13_UNSET_API_KEY" in result.stderr
    assert "env-c.yaml" in result.stderr


def test_apply_refuses_before_any_write_unless_keep_going(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    directory = _three(write_env, base)

    refused: Result = run_cli(directory, "apply", "--auto-approve", "--journal", "1.jsonl")
    assert refused.exit_code == 1
    assert "nothing applied: env-b could not be planned" in refused.stderr
    assert "--keep-going" in refused.stderr
    assert all(writes(sandbox, t) == [] for t in ("env-a", "env-b", "env-c"))

    going = run_cli(directory, "apply", "--auto-approve", "--keep-going", "--journal", "2.jsonl")
    assert going.exit_code == 1, going.output
    assert "not applied: env-b could not be planned (--keep-going skipped it)" in going.stderr
    assert "env-a: applied, converged" in going.stderr
    assert writes(sandbox, "env-a") == FORWARD
    assert writes(sandbox, "env-c") == FORWARD
    assert writes(sandbox, "env-b") == []


def test_a_signal_between_environments_leaves_the_rest_not_attempted(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    from reconciler.config import load_environments
    from reconciler.core.apply import ApplyOptions, EnvironmentConverged, Event, apply_run
    from reconciler.core.interrupt import StopRequest
    from reconciler.core.journal import Journal
    from reconciler.core.plan import plan_environments
    from reconciler.errors import Interrupted
    from reconciler.render.stop_report import render_report

    sandbox, base = live_sandbox
    for tenant in ("sig-a", "sig-b"):
        directory = write_env(tenant, tenant, base, ON_YAML).parent
    envs = load_environments(directory)
    stop = StopRequest()

    def on_event(event: Event) -> None:
        if isinstance(event, EnvironmentConverged):
            stop.request(signal.SIGTERM)  # as the CLI's handler does

    with Journal(tmp_path / "j.jsonl") as journal, pytest.raises(Interrupted) as caught:
        apply_run(
            envs, plan_environments(envs), journal, ApplyOptions(on_event=on_event, stop=stop)
        )

    assert caught.value.exit_code == 143
    assert "SIGTERM received between environments" in caught.value.message
    assert "sig-a: applied, converged" in render_report(caught.value)
    assert "sig-b: not attempted (SIGTERM received before it started)" in render_report(
        caught.value
    )
    assert writes(sandbox, "sig-a") == FORWARD
    assert writes(sandbox, "sig-b") == []
    closing = read_journal(tmp_path / "j.jsonl")[-1]
    assert closing == {
        **closing,
        "phase": "interrupted",
        "signal": "SIGTERM",
        "environments": {"sig-a": "applied", "sig-b": "not attempted"},
    }
