"""plan_environments against the sandbox: reads over HTTP (in-process transport, and 127.0.0.1
for the webhook probe), errors isolated per environment, output in the order given."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from apply_helpers import ORDER_WEBHOOK
from plan_helpers import ALL_OFF, ALL_ON, WEBHOOK_A, make_env

from reconciler.core.plan import Action, Status, plan_environments, read_live
from reconciler.model import ABSENT, Environment, Masked, Value
from reconciler.newstore.client import NewStoreClient
from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH

SANDBOX_SECRET = "sandbox-secret"


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(SandboxConfig())


def _env(desired: dict[str, Value], name: str, *, stock_confirmed: bool = False) -> Environment:
    return make_env(
        desired, name=name, client_secret=SANDBOX_SECRET, stock_confirmed=stock_confirmed
    )


def _in_process(app: SandboxApp) -> Callable[[Environment], NewStoreClient]:
    return lambda env: NewStoreClient(env, transport=app.transport(), backoff=0)


def test_read_live_reads_only_managed_settings(app: SandboxApp) -> None:
    app.seed("acme-staging", {"external_oms": {"enabled": True}, "uses_external_atp": None})
    env = _env(
        {"external_oms": {"enabled": True}, "external_atp": {"enabled": False}}, "acme-staging"
    )
    with NewStoreClient(env, transport=app.transport()) as client:
        live = read_live(env, client)
    assert live == {"external_oms": {"enabled": True}, "external_atp": {"enabled": False}}
    paths = {r["path"] for r in app.requests("acme-staging")}
    assert not any("webhook" in p or "associate-app" in p for p in paths)


def test_read_live_also_reads_the_other_side_of_a_rule_the_file_depends_on(
    app: SandboxApp,
) -> None:
    """Issue 20: the external OMS off depends on external ATP and use_new_om_ui staying off, so
    a file managing only the flag (built without the loader, which refuses it) reads them too,
    and the plan refuses the write while live external ATP is on."""
    app.seed("acme-staging", {"external_oms": {"enabled": True}, "uses_external_atp": True})
    env = _env({"external_oms": {"enabled": False}}, "acme-staging")
    with NewStoreClient(env, transport=app.transport()) as client:
        live = read_live(env, client)
    assert live == {
        "external_oms": {"enabled": True},
        "external_atp": {"enabled": True},
        "associate_app": {"use_new_om_ui": False},
    }
    assert not any("webhook" in r["path"] for r in app.requests("acme-staging"))
    run = plan_environments([env], client_factory=_in_process(app))
    (plan,) = run.environments
    assert plan.status is Status.BLOCKED
    assert plan.read_for_rules == {"external_atp": (2,), "associate_app": (3,)}
    assert any(
        "external_oms as environments/acme-staging.yaml wants it would break rule 2" in reason
        and "read for rule 2, not managed here, never written" in reason
        for reason in plan.blocked_by
    ), plan.blocked_by


def test_plans_every_environment_in_order_and_isolates_failures(app: SandboxApp) -> None:
    # ALL_ON turns use_new_om_ui on: rule 4 is judged against the live order webhook.
    app.seed("acme-dev", {"external_order_webhook": dict(ORDER_WEBHOOK)})
    app.seed("acme-prod", {"external_oms": {"enabled": True}, "uses_external_atp": False})
    envs = [
        _env(ALL_ON, "acme-dev"),
        replace(
            _env(ALL_ON, "acme-us"),
            connection=replace(_env(ALL_ON, "acme-us").connection, client_secret="wrong-secret"),
        ),
        _env({"external_oms": {"enabled": True}, "external_atp": {"enabled": False}}, "acme-prod"),
    ]
    run = plan_environments(envs, parallelism=3, client_factory=_in_process(app))

    assert [p.name for p in run.environments] == ["acme-dev", "acme-us", "acme-prod"]
    dev, us, prod = run.environments
    assert dev.status is Status.CHANGES
    assert [(s.setting, s.action) for s in dev.steps] == [
        ("external_oms", Action.UPDATE),
        ("availability_webhook", Action.CREATE),
        ("external_atp", Action.UPDATE),
        ("associate_app", Action.UPDATE),
    ]
    assert us.status is Status.ERROR
    assert "acme-us" in us.error and "wrong-secret" not in us.error
    assert prod.status is Status.CONVERGED
    assert set(prod.fingerprints) == {"external_oms", "external_atp"}


def test_a_failed_read_waits_for_the_environments_other_reads(app: SandboxApp) -> None:
    """The first failure is reported only once every read of the environment has ended: the
    client is closed right after, and a read still under way would find it closed."""
    app.seed("acme-dev", {})
    app.set_faults(
        [
            {"path": "/acme-dev/v0/config/sales_order/external_oms", "status": 500},
            {"path": "/acme-dev/api/v1/associate-app/config", "latency_ms": 300},
        ]
    )
    run = plan_environments([_env(ALL_ON, "acme-dev")], client_factory=_in_process(app))
    [plan] = run.environments
    assert plan.status is Status.ERROR
    assert "external_oms" in (plan.error or "")
    # Logged by the sandbox once answered: the slow read had finished when the plan returned.
    answered = [(r["path"], r["status"]) for r in app.requests("acme-dev")]
    assert ("/acme-dev/api/v1/associate-app/config", 200) in answered


def test_parallelism_must_be_positive() -> None:
    from reconciler.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 1"):
        plan_environments([], parallelism=0)


@pytest.fixture
def served(app: SandboxApp) -> Iterator[str]:
    with running(app) as base:
        yield base


@pytest.mark.parametrize(
    ("api_key", "passes"), [(DEFAULT_WEBHOOK_API_KEY, True), ("x" * 24, False)]
)
def test_probe_runs_the_webhook_gate_during_plan(
    app: SandboxApp, served: str, api_key: str, passes: bool
) -> None:
    app.seed("acme-staging", {"external_order_webhook": dict(ORDER_WEBHOOK)})
    webhook = {
        "url": served + WEBHOOK_PATH,
        "api_key": api_key,
        "external_identifier": "product_id",
        "timeout": 5,
    }
    env = _env({**ALL_ON, "availability_webhook": webhook}, "acme-staging")
    run = plan_environments([env], client_factory=_in_process(app), probe=True)

    (plan,) = run.environments
    (gate,) = next(s for s in plan.steps if s.setting == "external_atp").gates
    assert gate.satisfied is passes
    if passes:
        assert plan.status is Status.CHANGES
        assert "passed: 200" in gate.description
    else:
        assert plan.status is Status.BLOCKED
        assert any("webhook probe" in reason and "401" in reason for reason in plan.blocked_by)
    assert api_key not in repr(plan)


def test_without_probe_the_gate_waits_for_apply(app: SandboxApp) -> None:
    app.seed("acme-staging", {})
    run = plan_environments([_env(ALL_ON, "acme-staging")], client_factory=_in_process(app))
    (gate,) = run.environments[0].steps[2].gates
    assert gate.satisfied is None
    assert app.webhook_requests() == []


def test_back_migration_over_http_reads_the_masked_key_as_unknown() -> None:
    app = SandboxApp(SandboxConfig(mask_webhook_api_key=True))
    hook = dict(WEBHOOK_A)
    app.seed(
        "acme-prod",
        {
            "external_oms": {"enabled": True},
            "availability_webhook": hook,
            "uses_external_atp": True,
        },
    )
    desired = {k: v for k, v in ALL_OFF.items() if k != "associate_app"}
    run = plan_environments(
        [_env(desired, "acme-prod", stock_confirmed=True)], client_factory=_in_process(app)
    )
    (plan,) = run.environments
    # With associate_app unmanaged, nothing orders the webhook delete against the OMS flag, so
    # the REGISTRY order decides.
    assert [s.setting for s in plan.steps] == [
        "external_atp",
        "external_oms",
        "availability_webhook",
    ]
    delete = plan.steps[2]
    # Partly masked since issue 12: what the mask shows is kept (never shown) for comparison.
    assert delete.before is not ABSENT and isinstance(delete.before["api_key"], Masked)
    assert ("availability_webhook.api_key", "(sensitive)", None) in [
        (c.path, c.before, c.after) for c in delete.changes
    ]
    assert delete.after is ABSENT
    assert plan.status is Status.CHANGES
