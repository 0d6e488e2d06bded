"""Both migrations end to end: the real CLI as a subprocess against the sandbox on 127.0.0.1.

From every relevant starting state (fresh tenant, mid-way, fully external, hand-broken states
that violate rules) the writes must be exactly the plan's steps in order, no write may add a
rule violation, the end state must break none, and a second apply must write nothing. Then
faults: transient errors are retried, a permanent one stops with the safe-state report and a
rerun converges, a stale saved plan is refused, a failing probe blocks its step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import (
    FORWARD,
    OFF,
    ON,
    WEBHOOK,
    assert_no_write_adds_a_violation,
    seed,
    writes,
)
from env_helpers import OFF_YAML, ON_YAML, STOCK_CONFIRMED_YAML, WriteEnv, run_cli_process

from reconciler.model import ABSENT, Value
from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.app import WEBHOOK_PATH

pytestmark = pytest.mark.e2e

BACK_YAML = OFF_YAML + STOCK_CONFIRMED_YAML
METHOD = {
    "external_oms": "POST",
    "availability_webhook": "PUT",
    "external_atp": "POST",
    "external_order_webhook": "POST",
    "associate_app": "PUT",
}

MIDWAY = {**OFF, "external_oms": {"enabled": True}, "availability_webhook": WEBHOOK}
ATP_WITHOUT_WEBHOOK = {**ON, "availability_webhook": ABSENT, "associate_app": OFF["associate_app"]}
UI_WITHOUT_OMS = {**OFF, "associate_app": ON["associate_app"]}
ATP_AND_UI_WITHOUT_OMS = {**ON, "external_oms": OFF["external_oms"]}
STARTS: dict[str, dict[str, Value]] = {
    "fresh": {},
    "midway": MIDWAY,
    "external": ON,
    "newstore": OFF,
    "atp-without-webhook": ATP_WITHOUT_WEBHOOK,
    "ui-without-oms": UI_WITHOUT_OMS,
    "atp-and-ui-without-oms": ATP_AND_UI_WITHOUT_OMS,
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SandboxApp, str]]:
    """One sandbox for the module; every test uses its own tenants."""
    app = SandboxApp(SandboxConfig())
    with running(app) as base_url:
        yield app, base_url


@pytest.fixture
def app(server: tuple[SandboxApp, str]) -> Iterator[SandboxApp]:
    yield server[0]
    server[0].clear_faults()


def _planned_writes(directory: Path, tenant: str) -> list[tuple[str, str]]:
    result = run_cli_process(directory, "plan", "--format", "json")
    assert result.returncode == 0, result.stderr
    (env,) = json.loads(result.stdout)["environments"]
    assert env["tenant"] == tenant
    return [
        (s["setting"], "DELETE" if s["action"] == "delete" else METHOD[s["setting"]])
        for s in env["steps"]
    ]


def _migrate(
    app: SandboxApp, server: str, write_env: WriteEnv, tenant: str, body: str, start: Any
) -> list[tuple[str, str]]:
    seed(app, tenant, start)
    before = app.state(tenant)
    directory = write_env(tenant, tenant, server, body).parent
    planned = _planned_writes(directory, tenant)

    applied = run_cli_process(directory, "apply", "--auto-approve")

    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert writes(app, tenant) == planned, "the writes are exactly the plan's steps, in order"
    assert_no_write_adds_a_violation(app, tenant, before)
    again = run_cli_process(directory, "apply", "--auto-approve")
    assert again.returncode == 0, again.stderr
    assert "Nothing to do" in again.stdout
    assert writes(app, tenant) == planned, "a converged apply writes nothing"
    return planned


@pytest.mark.parametrize("start", list(STARTS))
def test_forward_to_the_external_oms(
    app: SandboxApp, server: tuple[SandboxApp, str], write_env: WriteEnv, start: str
) -> None:
    tenant = f"fwd-{start}"
    planned = _migrate(app, server[1], write_env, tenant, ON_YAML, STARTS[start])

    live_hook = {**WEBHOOK, "url": f"{server[1]}{WEBHOOK_PATH}"}
    if start == "fresh":
        assert planned == FORWARD
    if start == "external":
        assert planned == [("availability_webhook", "PUT")]  # its url names this sandbox
    state = app.state(tenant)
    assert state["availability_webhook"] == live_hook
    assert state["uses_external_atp"] is True and state["external_oms"] == {"enabled": True}


@pytest.mark.parametrize("start", list(STARTS))
def test_back_to_newstore_managed_atp(
    app: SandboxApp, server: tuple[SandboxApp, str], write_env: WriteEnv, start: str
) -> None:
    tenant = f"back-{start}"
    planned = _migrate(app, server[1], write_env, tenant, BACK_YAML, STARTS[start])

    if start in ("fresh", "newstore"):
        assert planned == []
    if start == "external":
        assert planned == [
            ("external_atp", "POST"),
            ("availability_webhook", "DELETE"),
            ("associate_app", "PUT"),
            ("external_oms", "POST"),
        ]
    state = app.state(tenant)
    assert state["availability_webhook"] is None and not state["uses_external_atp"]


def test_transient_errors_mid_migration_are_retried_and_converge(
    app: SandboxApp, server: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    tenant = "retry"
    seed(app, tenant, {})
    directory = write_env(tenant, tenant, server[1], ON_YAML).parent
    app.set_faults(
        [
            {"method": "POST", "path": f"/{tenant}/v0/config/routing/uses_external_atp",
             "status": 503, "retry_after": 0, "times": 2},
            {"method": "PUT", "path": f"/{tenant}/v0/config/availability/webhook",
             "status": 429, "retry_after": 0, "times": 1},
            {"method": "GET", "path": f"/{tenant}/api/v1/associate-app/config",
             "status": 502, "retry_after": 0, "times": 1},
        ]
    )  # fmt: skip

    result = run_cli_process(directory, "apply", "--auto-approve")

    assert result.returncode == 0, result.stdout + result.stderr
    assert app.faults() == [], "every injected fault was hit"
    assert writes(app, tenant) == FORWARD
    statuses = [h["status"] for h in app.history(tenant)]
    assert statuses.count(503) == 2 and statuses.count(429) == 1
    assert run_cli_process(directory, "plan", "--detailed-exitcode").returncode == 0


@pytest.mark.parametrize("failing_step", [2, 4, 5])
def test_a_permanent_failure_stops_safely_and_a_rerun_converges(
    app: SandboxApp, server: tuple[SandboxApp, str], write_env: WriteEnv, failing_step: int
) -> None:
    tenant = f"permanent-{failing_step}"
    seed(app, tenant, {})
    before = app.state(tenant)
    directory = write_env(tenant, tenant, server[1], ON_YAML).parent
    setting, method = FORWARD[failing_step - 1]
    path = {
        "availability_webhook": f"/{tenant}/v0/config/availability/webhook",
        "external_order_webhook": f"/{tenant}/v0/config/sales_order/external_order_webhook",
        "associate_app": f"/{tenant}/api/v1/associate-app/config",
    }[setting]
    app.set_faults([{"method": method, "path": path, "status": 500, "times": 1000}])

    failed = run_cli_process(directory, "apply", "--auto-approve")

    assert failed.returncode == 1
    err = failed.stderr
    assert err.startswith(f"Error: [{tenant}] {setting}: NewStore rejected the call")
    for number, (name, _) in enumerate(FORWARD, 1):
        line = f"{number}/{len(FORWARD)} {name}: "
        if number < failing_step:
            assert f"applied       {line}update (request id " in err or (
                f"applied       {line}create (request id " in err
            )
        elif number == failing_step:
            assert f"FAILED        {line}" in err and "(request id " in err.split(line, 1)[1]
        else:
            assert f"not attempted {line}" in err
    assert "The live state, re-read just now, satisfies every safety rule." in err
    assert writes(app, tenant) == FORWARD[: failing_step - 1]

    app.clear_faults()
    rerun = run_cli_process(directory, "apply", "--auto-approve")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert writes(app, tenant) == FORWARD, "the rerun continued from the live state"
    assert_no_write_adds_a_violation(app, tenant, before)


def test_a_stale_saved_plan_is_refused(
    app: SandboxApp, server: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    tenant = "stale"
    seed(app, tenant, MIDWAY)
    directory = write_env(tenant, tenant, server[1], ON_YAML).parent
    plan_file = directory.parent / "reviewed.json"
    assert run_cli_process(directory, "plan", "--out", str(plan_file)).returncode == 0
    seed(app, tenant, {**MIDWAY, "external_oms": {"enabled": False}})  # a hand edit since

    result = run_cli_process(directory, "apply", "--plan", str(plan_file))

    assert result.returncode == 1
    assert "changed since the plan; nothing was applied" in result.stderr
    assert f"{tenant} external_oms.enabled: planned from true, now false" in result.stderr
    assert writes(app, tenant) == []


def test_a_failing_probe_blocks_its_step_and_nothing_after_it(
    app: SandboxApp, server: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    tenant = "probe"
    seed(app, tenant, {})
    directory = write_env(tenant, tenant, server[1], ON_YAML).parent
    app.set_faults([{"method": "POST", "path": WEBHOOK_PATH, "status": 500}])

    result = run_cli_process(directory, "apply", "--auto-approve")

    assert result.returncode == 3, result.stdout + result.stderr
    assert "gate webhook_probe failed" in result.stderr
    assert "not attempted 5/5 associate_app" in result.stderr
    assert writes(app, tenant) == FORWARD[:2]
