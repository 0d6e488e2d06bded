"""apply_environment / apply_run against the in-process sandbox: each step's re-read, gates,
safety check, write and read-back, the convergence check, and the safe-state report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apply_helpers import (
    FORWARD,
    OFF,
    ON,
    SANDBOX_SECRET,
    WEBHOOK,
    assert_no_write_adds_a_violation,
    seed,
    writes,
)
from plan_helpers import make_env

from reconciler.core.apply import (
    ApplyOptions,
    EnvironmentConverged,
    Event,
    GateChecked,
    Outcome,
    SafetyCheck,
    StepFinished,
    StopReport,
    apply_environment,
    apply_run,
)
from reconciler.core.journal import Journal, read_journal
from reconciler.core.plan import EnvPlan, RunPlan, Status, build_plan, plan_environments, read_live
from reconciler.errors import ApplyError, BlockedError, ChangedUnderneath
from reconciler.model import ABSENT, Environment, Value
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.render.stop_report import render_report, render_run_report
from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH

TENANT = "acme-staging"


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(SandboxConfig())


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.jsonl") as journal:
        yield journal


def _env(
    desired: dict[str, Value], name: str = TENANT, *, stock_confirmed: bool = False
) -> Environment:
    return make_env(
        desired, name=name, client_secret=SANDBOX_SECRET, stock_confirmed=stock_confirmed
    )


def _client(app: SandboxApp, env: Environment) -> NewStoreClient:
    return NewStoreClient(env, transport=app.transport(), limiter=HostLimiter(), backoff=0)


def _plan(app: SandboxApp, env: Environment) -> EnvPlan:
    with _client(app, env) as client:
        return build_plan(env, read_live(env, client))


def _apply(
    app: SandboxApp,
    env: Environment,
    plan: EnvPlan,
    journal: Journal,
    *,
    on_event: Callable[[Event], None] | None = None,
    skip_probe: bool = False,
) -> list[Event]:
    events: list[Event] = []

    def record(event: Event) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    with _client(app, env) as client:
        apply_environment(
            env,
            plan,
            client,
            journal,
            ApplyOptions(skip_probe=skip_probe, on_event=record, probe_transport=app.transport()),
        )
    return events


def _finished(events: list[Event]) -> list[tuple[str, Outcome]]:
    return [(e.setting, e.outcome) for e in events if isinstance(e, StepFinished)]


def test_forward_migration_writes_exactly_the_plan_in_order_and_converges(
    app: SandboxApp, journal: Journal
) -> None:
    env = _env(ON)
    plan = _plan(app, env)
    start = app.state(TENANT)

    events = _apply(app, env, plan, journal)

    assert [s.setting for s in plan.steps] == [setting for setting, _ in FORWARD]
    assert writes(app, TENANT) == FORWARD
    assert _finished(events) == [(setting, Outcome.APPLIED) for setting, _ in FORWARD]
    assert all(e.request_id for e in events if isinstance(e, StepFinished))
    assert isinstance(events[-1], EnvironmentConverged)
    assert _plan(app, env).status is Status.CONVERGED
    assert_no_write_adds_a_violation(app, TENANT, start)


def test_a_step_someone_else_already_did_is_skipped(app: SandboxApp, journal: Journal) -> None:
    env = _env(ON)
    plan = _plan(app, env)
    seed(app, TENANT, {**OFF, "external_oms": {"enabled": True}})  # a concurrent run got there

    events = _apply(app, env, plan, journal)

    assert _finished(events)[0] == ("external_oms", Outcome.SKIPPED)
    assert writes(app, TENANT) == FORWARD[1:]


def test_a_setting_changed_underneath_stops_before_writing_it(
    app: SandboxApp, journal: Journal
) -> None:
    env = _env(ON)
    plan = _plan(app, env)
    seed(app, TENANT, {**OFF, "availability_webhook": {**WEBHOOK, "url": "http://x.test/hook"}})

    with pytest.raises(ChangedUnderneath) as info:
        _apply(app, env, plan, journal)

    message = str(info.value)
    assert (
        "availability_webhook changed underneath: planned from absent, now "
        '{"api_key": "(sensitive)", "external_identifier": "product_id", "timeout": 5, '
        '"url": "http://x.test/hook"}'
    ) in message
    assert DEFAULT_WEBHOOK_API_KEY not in message
    assert writes(app, TENANT) == FORWARD[:1], "nothing after the moved setting was written"
    report = render_report(info.value)
    assert "applied       1/5 external_oms: update (request id " in report
    assert "FAILED        2/5 availability_webhook: create" in report
    assert "not attempted 3/5 external_atp: update" in report
    assert "not attempted 4/5 external_order_webhook: create" in report
    assert "not attempted 5/5 associate_app: update" in report
    assert "satisfies every safety rule" in report


def test_the_stop_report_is_a_value_that_render_words(app: SandboxApp, journal: Journal) -> None:
    env = _env(ON)
    plan = _plan(app, env)
    seed(app, TENANT, {**OFF, "availability_webhook": {**WEBHOOK, "url": "http://x.test/hook"}})

    with pytest.raises(ChangedUnderneath) as info:
        _apply(app, env, plan, journal)

    run_report = info.value.stop
    assert run_report is not None and run_report.others == ()
    (stop,) = run_report.stops
    assert isinstance(stop, StopReport)
    assert (stop.environment, stop.failed_at, stop.total) == (env.name, 2, len(FORWARD))
    assert [(e.setting, e.outcome) for e in stop.finished] == [
        ("external_oms", Outcome.APPLIED),
        ("availability_webhook", Outcome.FAILED),
    ]
    assert [(s.number, s.setting) for s in stop.not_attempted] == [
        (3, "external_atp"),
        (4, "external_order_webhook"),
        (5, "associate_app"),
    ]
    assert stop.safety == SafetyCheck(), "re-read, and no rule broken"
    assert render_report(info.value) == render_run_report(run_report)


def test_a_secret_changed_underneath_is_named_but_not_shown(
    app: SandboxApp, journal: Journal
) -> None:
    seed(app, TENANT, {**ON, "availability_webhook": {**WEBHOOK, "timeout": 30}})
    env = _env(ON)
    plan = _plan(app, env)
    other_key = "someone-elses-key-0123456789"
    seed(
        app,
        TENANT,
        {**ON, "availability_webhook": {**WEBHOOK, "timeout": 30, "api_key": other_key}},
    )

    with pytest.raises(ChangedUnderneath) as info:
        _apply(app, env, plan, journal)

    message = str(info.value)
    assert "(its api_key changed)" in message
    assert other_key not in message and DEFAULT_WEBHOOK_API_KEY not in message
    assert writes(app, TENANT) == []


def test_a_write_that_does_not_settle_stops(app: SandboxApp, journal: Journal) -> None:
    env = _env(ON)
    plan = _plan(app, env)
    # Answers 200 without doing the write: only the read-back can notice.
    path = f"/{TENANT}/v0/config/sales_order/external_oms"
    app.set_faults([{"method": "POST", "path": path, "status": 200}])

    with pytest.raises(ApplyError) as info:
        _apply(app, env, plan, journal)

    assert 'external_oms did not settle: wrote {"enabled": true}, read back {"enabled": false}' in (
        str(info.value)
    )
    assert app.state(TENANT)["external_oms"] is None
    phases = [(e["phase"], e.get("result")) for e in read_journal(journal.path)]
    assert phases == [("intent", None), ("result", "applied"), ("verify", "failed")]


def test_the_convergence_check_names_the_field_that_did_not_settle(
    app: SandboxApp, journal: Journal
) -> None:
    env = _env(ON)
    plan = _plan(app, env)

    def hand_edit_after_last_step(event: Event) -> None:
        if isinstance(event, StepFinished) and event.number == 5:
            seed(app, TENANT, {**ON, "availability_webhook": {**WEBHOOK, "timeout": 30}})

    with pytest.raises(ApplyError) as info:
        _apply(app, env, plan, journal, on_event=hand_edit_after_last_step)

    assert "did not converge" in str(info.value)
    assert "still changes availability_webhook.timeout" in str(info.value)
    assert "all 5 steps ran, then the convergence check failed" in render_report(info.value)


def test_a_partner_setting_moved_since_planning_stops_the_write(
    app: SandboxApp, journal: Journal
) -> None:
    env = _env(ON)
    plan = _plan(app, env)

    def delete_webhook_by_hand(event: Event) -> None:
        if isinstance(event, StepFinished) and event.number == 2:
            seed(app, TENANT, {**OFF, "external_oms": {"enabled": True}})

    with pytest.raises(ApplyError) as info:
        _apply(app, env, plan, journal, on_event=delete_webhook_by_hand)

    assert "writing external_atp now would break rule 1" in str(info.value)
    assert ("external_atp", "POST") not in writes(app, TENANT)
    assert "satisfies every safety rule" in render_report(info.value)


def test_a_failing_probe_blocks_its_step_and_everything_after(
    app: SandboxApp, journal: Journal
) -> None:
    env = _env(ON)
    plan = _plan(app, env)
    app.set_faults([{"method": "POST", "path": WEBHOOK_PATH, "status": 500}])

    with pytest.raises(BlockedError) as info:
        _apply(app, env, plan, journal)

    assert info.value.exit_code == 3
    assert "gate webhook_probe failed" in str(info.value)
    assert "answered 500, expected 200" in str(info.value)
    assert writes(app, TENANT) == FORWARD[:2]
    report = render_report(info.value)
    assert "BLOCKED       3/5 external_atp: update (gate webhook_probe:" in report
    assert "not attempted 4/5 external_order_webhook: create" in report
    assert "not attempted 5/5 associate_app: update" in report
    assert "satisfies every safety rule" in report
    gate = [e for e in read_journal(journal.path) if e["phase"] == "gate"]
    assert [(g["gate"], g["result"]) for g in gate] == [("webhook_probe", "failed")]


def test_skip_probe_skips_it_and_says_so(app: SandboxApp, journal: Journal) -> None:
    env = _env(ON)
    plan = _plan(app, env)
    app.set_faults([{"method": "POST", "path": WEBHOOK_PATH, "status": 500}])

    events = _apply(app, env, plan, journal, skip_probe=True)

    assert app.webhook_requests() == []
    (gate,) = [e for e in events if isinstance(e, GateChecked)]
    assert (gate.gate, gate.result) == ("webhook_probe", "skipped")
    assert "--skip-probe" in gate.detail
    (line,) = [e for e in read_journal(journal.path) if e["phase"] == "gate"]
    assert line["result"] == "skipped" and "--skip-probe" in line["detail"]
    assert writes(app, TENANT) == FORWARD


def test_stock_confirmation_is_checked_again_from_the_environment(
    app: SandboxApp, journal: Journal
) -> None:
    seed(app, TENANT, ON)
    plan = _plan(app, _env(OFF, stock_confirmed=True))
    assert plan.status is Status.CHANGES

    # Since issue 12 the message gives the dated line to write in the environment's own file.
    with pytest.raises(BlockedError, match=r"`newstore_stock_confirmed: \d{4}-\d\d-\d\d`"):
        _apply(app, _env(OFF, stock_confirmed=False), plan, journal)
    assert writes(app, TENANT) == []


def test_the_report_warns_loudly_when_the_live_state_still_breaks_a_rule(
    app: SandboxApp, journal: Journal
) -> None:
    # By hand: external ATP on without a webhook (rule 1). The plan creates the webhook first.
    seed(app, TENANT, {**ON, "availability_webhook": ABSENT, "associate_app": OFF["associate_app"]})
    env = _env(ON)
    plan = _plan(app, env)
    assert plan.steps[0].setting == "availability_webhook"
    path = f"/{TENANT}/v0/config/availability/webhook"
    app.set_faults([{"method": "PUT", "path": path, "status": 500, "times": 50}])

    with pytest.raises(ApplyError) as info:
        _apply(app, env, plan, journal)

    message, report = info.value.message, render_report(info.value)
    assert "availability_webhook: NewStore rejected the call" in message
    assert "Request id: " in message
    assert "FAILED        1/2 availability_webhook: create (request id " in report
    assert "WARNING: THE LIVE STATE, RE-READ JUST NOW, BREAKS rule 1" in report
    assert "It already broke rule 1" in report


# --- apply_run: several environments ----------------------------------------------------------


def _run(app: SandboxApp, envs: list[Environment]) -> RunPlan:
    return plan_environments(envs, client_factory=lambda env: _client(app, env))


@pytest.mark.parametrize("keep_going", [False, True])
def test_one_failing_environment_stops_the_rest_unless_keep_going(
    app: SandboxApp, journal: Journal, keep_going: bool
) -> None:
    envs = [_env(ON, "acme-a"), _env(ON, "acme-b")]
    run = _run(app, envs)
    path = "/acme-a/v0/config/sales_order/external_oms"
    app.set_faults([{"method": "POST", "path": path, "status": 500, "times": 50}])

    with pytest.raises(ApplyError) as info:
        apply_run(
            envs,
            run,
            journal,
            ApplyOptions(
                keep_going=keep_going,
                client_factory=lambda env: _client(app, env),
                probe_transport=app.transport(),
            ),
        )

    assert writes(app, "acme-a") == []
    assert "[acme-a] external_oms: NewStore rejected the call" in info.value.message
    if keep_going:
        assert writes(app, "acme-b") == FORWARD
        assert "acme-b: applied, converged" in render_report(info.value)
    else:
        assert writes(app, "acme-b") == []
        assert "acme-b: not attempted" in render_report(info.value)


def test_an_environment_that_could_not_be_planned_stops_everything(
    app: SandboxApp, journal: Journal
) -> None:
    envs = [_env(ON, "acme-a"), _env(ON, "acme-b")]
    app.set_faults([{"method": "GET", "path": "/acme-b/*", "status": 400, "times": 50}])
    run = _run(app, envs)
    assert run.environments[1].status is Status.ERROR

    with pytest.raises(ApplyError, match="nothing applied: acme-b could not be planned"):
        apply_run(envs, run, journal, ApplyOptions(client_factory=lambda env: _client(app, env)))
    assert writes(app, "acme-a") == []


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_blocked_environment_stops_every_write_unless_keep_going_skips_it(
    app: SandboxApp, journal: Journal, keep_going: bool
) -> None:
    seed(app, "acme-b", ON)
    envs = [_env(ON, "acme-a"), _env(OFF, "acme-b")]  # b: stock not confirmed
    run = _run(app, envs)

    with pytest.raises(BlockedError, match="applied: acme-b is blocked") as info:
        apply_run(
            envs,
            run,
            journal,
            ApplyOptions(
                keep_going=keep_going,
                client_factory=lambda env: _client(app, env),
                probe_transport=app.transport(),
            ),
        )
    assert info.value.exit_code == 3
    assert writes(app, "acme-a") == (FORWARD if keep_going else [])
    assert writes(app, "acme-b") == []
    assert ("every other environment was applied" in info.value.message) is keep_going
