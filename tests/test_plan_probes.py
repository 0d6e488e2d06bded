"""Safety v2 (issue 12), over the whole state space: no write leaves external ATP on with a
webhook config that was not probed in the run or was not live before it; repairs go worst
harm first; writes that a rule depends on are avoided where an order can avoid them.

Every (live, valid desired) pair of the four settings is enumerated, with the live webhook
in clear, partly masked (the mask shows the key's last four characters) and wholly masked.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from plan_helpers import PROBE, make_env
from test_plan_properties import LIVE, SAFE_DESIRED, atp_on, broken, equivalent

from reconciler.core.plan import WEBHOOK_PROBE, EnvPlan, Status, build_plan
from reconciler.model import ABSENT, Masked, Value
from reconciler.rules import RULES, Harm

HOOK = "availability_webhook"
HARM = {rule.number: rule.harm for rule in RULES}


def _worst(rules: set[int]) -> Harm | None:
    return max((HARM[n] for n in rules), default=None)


def _adds_violation(
    live: Mapping[str, Value], desired: Mapping[str, Value], order: Sequence[str]
) -> bool:
    state = dict(live)
    before = broken(state)
    for key in order:
        state[key] = desired[key]
        now = broken(state)
        if now - before:
            return True
        before = now
    return False


def _worst_repaired_at(
    live: Mapping[str, Value], desired: Mapping[str, Value], order: Sequence[str]
) -> int:
    """After how many steps no rule of the live state's worst harm is broken any more."""
    worst = _worst(broken(live))
    state = dict(live)
    for index, key in enumerate(order):
        if worst is None or all(HARM[n] < worst for n in broken(state)):
            return index
        state[key] = desired[key]
    return len(order)


def _check(live: Mapping[str, Value], desired: Mapping[str, Value]) -> EnvPlan:
    env = make_env(desired, probe=PROBE, stock_confirmed=True)
    plan = build_plan(env, live)
    assert plan.status in (Status.CONVERGED, Status.CHANGES), plan.blocked_by

    state = dict(live)
    probed: list[Value] = []
    for step in plan.steps:
        state[step.setting] = step.after
        gated = [g for g in step.gates if g.name == WEBHOOK_PROBE]
        if gated:
            # The probe tests the config that will be live after this write: the desired one
            # (or a live one whose masked key shows what the desired key has: a documented
            # limit, a key sharing its last four characters passes for the file's).
            assert atp_on(state) is True
            assert equivalent(state[HOOK], desired[HOOK])
            # A wholly masked live key is never probed in place: it is re-asserted first.
            hook = state[HOOK]
            assert hook is desired[HOOK] or isinstance(hook["api_key"], Masked)  # type: ignore[index]
            probed.append(state[HOOK])
        turns_atp_on = step.setting == "external_atp" and atp_on(state) is True
        if turns_atp_on:
            assert gated, "the step that turns external ATP on is probed"
            assert "no rule constrains this step" not in step.why
        if atp_on(state) is True:
            hook = state[HOOK]
            assert hook is not ABSENT
            was_live = atp_on(live) is True and hook is live[HOOK]
            assert was_live or any(hook is p for p in probed), (
                f"{step.setting} leaves external ATP on with a webhook config neither probed "
                "in this run nor live before it"
            )
        if step.setting == HOOK and atp_on(desired) is False:
            assert atp_on(state) is False, "the webhook is written after external ATP is off"

    # Worst harm first: no safe order repairs the live state's worst broken rule sooner.
    order = [s.setting for s in plan.steps]
    if broken(live):
        best = min(
            _worst_repaired_at(live, desired, other)
            for other in itertools.permutations(order)
            if not _adds_violation(live, desired, other)
        )
        assert _worst_repaired_at(live, desired, order) == best
    return plan


def test_every_write_that_atp_depends_on_is_probed_and_repairs_go_worst_first() -> None:
    probed_writes = webhook_writes_while_on = 0
    for live, desired in itertools.product(LIVE, SAFE_DESIRED):
        plan = _check(live, desired)
        for step in plan.steps:
            if any(g.name == WEBHOOK_PROBE for g in step.gates):
                probed_writes += 1
                webhook_writes_while_on += step.setting == HOOK
    # The space has both kinds of probed write, so the loop checked something.
    assert probed_writes > webhook_writes_while_on > 0


def test_a_webhook_written_while_atp_stays_on_names_the_rule_and_the_probe() -> None:
    from plan_helpers import ALL_ON, WEBHOOK_B

    plan = build_plan(make_env({**ALL_ON, HOOK: WEBHOOK_B}), ALL_ON)
    (step,) = plan.steps
    assert step.setting == HOOK
    assert "written while rule 1 depends on it (external_atp is on)" in step.why
    (gate,) = step.gates
    assert gate.name == WEBHOOK_PROBE and gate.satisfied is None
    assert WEBHOOK_B["url"] in gate.description


def test_atp_goes_off_first_when_the_desired_state_has_it_off() -> None:
    from plan_helpers import ALL_ON, WEBHOOK_B

    desired = {**ALL_ON, HOOK: WEBHOOK_B, "external_atp": {"enabled": False}}
    plan = build_plan(make_env(desired, stock_confirmed=True), ALL_ON)
    assert [s.setting for s in plan.steps] == ["external_atp", HOOK]
    assert "so that it is not written while rule 1" in plan.steps[0].why
    assert not any(g.name == WEBHOOK_PROBE for g in plan.steps[1].gates)


def test_a_webhook_write_while_atp_is_on_without_a_probe_is_blocked() -> None:
    from plan_helpers import ALL_ON, WEBHOOK_B

    plan = build_plan(make_env({**ALL_ON, HOOK: WEBHOOK_B}, probe=None), ALL_ON)
    assert plan.status is Status.BLOCKED
    assert plan.blocked_by[0].startswith(
        "writing availability_webhook while external ATP is on needs gates.webhook_probe"
    )
