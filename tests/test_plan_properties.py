"""Properties of the planner over the whole state space of the four settings.

The space is small (32 live states × 24 desired states × 4 gate combinations), so it is checked
exhaustively; hypothesis adds unmanaged settings (any subset of the four) on top.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st
from plan_helpers import (
    API_KEY_A,
    API_KEY_B,
    CLIENT_SECRET,
    PROBE,
    WEBHOOK_A,
    WEBHOOK_A_MASKED,
    WEBHOOK_B,
    make_env,
)

from reconciler.model import ABSENT, UNKNOWN, Value
from reconciler.plan import EnvPlan, RunPlan, Status, build_plan
from reconciler.planfile import plan_to_json
from reconciler.rules import RULES

OMS = [{"enabled": True}, {"enabled": False}]
ATP = [{"enabled": True}, {"enabled": False}]
UI = [{"use_new_om_ui": True}, {"use_new_om_ui": False}]
LIVE_WEBHOOKS: list[Value] = [ABSENT, WEBHOOK_A, WEBHOOK_B, WEBHOOK_A_MASKED]
DESIRED_WEBHOOKS: list[Value] = [ABSENT, WEBHOOK_A, WEBHOOK_B]
KEYS = ("external_oms", "availability_webhook", "external_atp", "associate_app")


def _states(webhooks: list[Value]) -> list[dict[str, Value]]:
    return [
        dict(zip(KEYS, combo, strict=True)) for combo in itertools.product(OMS, webhooks, ATP, UI)
    ]


def broken(state: Mapping[str, Value]) -> set[int]:
    return {rule.number for rule in RULES if rule.holds(state) is False}


LIVE = _states(LIVE_WEBHOOKS)
DESIRED = _states(DESIRED_WEBHOOKS)
SAFE_DESIRED = [d for d in DESIRED if not broken(d)]
UNSAFE_DESIRED = [d for d in DESIRED if broken(d)]
GATES = [(probe, stock) for probe in (PROBE, None) for stock in (True, False)]


def equivalent(live: Value, desired: Value) -> bool:
    """Equal, except that a masked live field matches anything."""
    if live is ABSENT or desired is ABSENT:
        return live is desired
    return live.keys() == desired.keys() and all(
        live[k] is UNKNOWN or live[k] == desired[k] for k in live
    )


def atp_on(state: Mapping[str, Value], key: str = "external_atp") -> bool | None:
    value = state.get(key)
    return None if value is None or value is ABSENT else bool(value["enabled"])


def expected_blocked(
    live: Mapping[str, Value], desired: Mapping[str, Value], probe: object, stock: bool
) -> bool:
    if broken(desired):
        return True
    before, after = atp_on(live), atp_on(desired)
    if before is False and after is True:
        return probe is None or "availability_webhook" not in desired
    return before is True and after is False and not stock


def check(
    live: Mapping[str, Value], desired: Mapping[str, Value], probe: object, stock: bool
) -> EnvPlan:
    env = make_env(desired, probe=PROBE if probe is not None else None, stock_confirmed=stock)
    plan = build_plan(env, live)

    state = dict(live)
    before = broken(state)
    for step in plan.steps:
        assert step.before is state[step.setting]
        state[step.setting] = step.after
        now = broken(state)
        # An unsafe desired state is blocked outright; its steps are shown, not applied.
        assert now <= before or broken(desired), f"{step.setting} adds rule(s) {now - before}"
        before = now
    assert all(equivalent(state[k], desired[k]) for k in desired)
    assert len({s.setting for s in plan.steps}) == len(plan.steps)

    converged = all(equivalent(live[k], desired[k]) for k in desired)
    assert (plan.steps == []) == converged
    if expected_blocked(live, desired, probe, stock):
        assert plan.status is Status.BLOCKED and plan.blocked_by
    else:
        assert plan.status is (Status.CONVERGED if converged else Status.CHANGES)
        assert plan.blocked_by == []
    assert plan.live_violations == [
        f"{r}: {r.consequence}" for r in RULES if r.number in broken(live)
    ]
    return plan


def test_every_safe_combination_plans_safely_and_converges() -> None:
    statuses = set()
    for live, desired, (probe, stock) in itertools.product(LIVE, SAFE_DESIRED, GATES):
        statuses.add(check(live, desired, probe, stock).status)
    assert statuses == {Status.CONVERGED, Status.CHANGES, Status.BLOCKED}


def test_every_unsafe_desired_state_is_blocked() -> None:
    assert UNSAFE_DESIRED
    for live, desired in itertools.product(LIVE, UNSAFE_DESIRED):
        plan = build_plan(make_env(desired, stock_confirmed=True), live)
        assert plan.status is Status.BLOCKED
        assert any(r.startswith("the desired state breaks rule") for r in plan.blocked_by)


def test_no_plan_of_the_space_holds_a_secret() -> None:
    plans = [
        build_plan(make_env(desired, stock_confirmed=True), live)
        for live, desired in itertools.product(LIVE, SAFE_DESIRED)
    ]
    text = plan_to_json(RunPlan(plans)) + repr(plans)
    for secret in (API_KEY_A, API_KEY_B, CLIENT_SECRET):
        assert secret not in text


state_strategy = st.fixed_dictionaries(
    {
        "external_oms": st.sampled_from(OMS),
        "availability_webhook": st.sampled_from(LIVE_WEBHOOKS),
        "external_atp": st.sampled_from(ATP),
        "associate_app": st.sampled_from(UI),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    live=state_strategy,
    desired=state_strategy,
    managed=st.sets(st.sampled_from(KEYS), min_size=1),
    probe=st.sampled_from([PROBE, None]),
    stock=st.booleans(),
)
def test_any_subset_of_managed_settings_plans_safely(
    live: dict[str, Value],
    desired: dict[str, Value],
    managed: set[str],
    probe: object,
    stock: bool,
) -> None:
    if desired["availability_webhook"] is WEBHOOK_A_MASKED:
        desired["availability_webhook"] = WEBHOOK_A  # a desired state always knows its key
    live = {k: v for k, v in live.items() if k in managed}
    desired = {k: v for k, v in desired.items() if k in managed}
    check(live, desired, probe, stock)
