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
    WEBHOOK_A_SUFFIX,
    WEBHOOK_B,
    make_env,
)

from reconciler.core.plan import EnvPlan, RunPlan, Status, build_plan
from reconciler.core.planfile import plan_to_json
from reconciler.model import ABSENT, UNKNOWN, Masked, Value
from reconciler.rules import RULES

OMS = [{"enabled": True}, {"enabled": False}]
ATP = [{"enabled": True}, {"enabled": False}]
UI = [{"use_new_om_ui": True}, {"use_new_om_ui": False}]
LIVE_WEBHOOKS: list[Value] = [ABSENT, WEBHOOK_A, WEBHOOK_B, WEBHOOK_A_MASKED, WEBHOOK_A_SUFFIX]
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
    """Equal, except that a wholly masked live field matches anything and a partly masked one
    anything that starts and ends as it shows."""
    if live is ABSENT or desired is ABSENT:
        return live is desired
    return live.keys() == desired.keys() and all(
        live[k] is UNKNOWN
        or (isinstance(live[k], Masked) and live[k].could_be(desired[k]))
        or live[k] == desired[k]
        for k in live
    )


def atp_on(state: Mapping[str, Value], key: str = "external_atp") -> bool | None:
    value = state.get(key)
    return None if value is None or value is ABSENT else bool(value["enabled"])


def reasserted(live: Mapping[str, Value], desired: Mapping[str, Value]) -> bool:
    """A webhook config whose key NewStore masks wholly is rewritten before ATP goes on."""
    hook = "availability_webhook"
    return (
        atp_on(live) is False
        and atp_on(desired) is True
        and desired.get(hook, ABSENT) is not ABSENT
        and live.get(hook, ABSENT) is not ABSENT
        and live[hook]["api_key"] is UNKNOWN  # type: ignore[index]
    )


def webhook_written_while_on(live: Mapping[str, Value], desired: Mapping[str, Value]) -> bool:
    """The webhook config is written while external ATP is on, which no order avoids: ATP on
    before and after, and the config needs writing."""
    hook = "availability_webhook"
    return (
        atp_on(live) is True
        and atp_on(desired) is True
        and desired.get(hook, ABSENT) is not ABSENT
        and not equivalent(live[hook], desired[hook])
    )


def expected_blocked(
    live: Mapping[str, Value], desired: Mapping[str, Value], probe: object, stock: bool
) -> bool:
    if broken(desired):
        return True
    before, after = atp_on(live), atp_on(desired)
    if before is False and after is True:
        return probe is None or "availability_webhook" not in desired
    if webhook_written_while_on(live, desired) and probe is None:
        return True
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
    assert (plan.steps == []) == (converged and not reasserted(live, desired))
    if expected_blocked(live, desired, probe, stock):
        assert plan.status is Status.BLOCKED and plan.blocked_by
    else:
        assert plan.status is (Status.CHANGES if plan.steps else Status.CONVERGED)
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
    if desired["availability_webhook"] in (WEBHOOK_A_MASKED, WEBHOOK_A_SUFFIX):
        desired["availability_webhook"] = WEBHOOK_A  # a desired state always knows its key
    live = {k: v for k, v in live.items() if k in managed}
    desired = {k: v for k, v in desired.items() if k in managed}
    check(live, desired, probe, stock)
