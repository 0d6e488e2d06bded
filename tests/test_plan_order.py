"""The planner on the cases NewStore's documentation and the contract spell out."""

from __future__ import annotations

from datetime import date

from plan_helpers import (
    ALL_OFF,
    ALL_ON,
    API_KEY_A,
    API_KEY_B,
    URL_A,
    WEBHOOK_A,
    WEBHOOK_A_MASKED,
    WEBHOOK_B,
    make_env,
)

from reconciler.core.plan import Action, FieldChange, Status, build_plan, order_steps
from reconciler.model import ABSENT, SENSITIVE, SENSITIVE_CHANGED, Value
from reconciler.rules import RULES

R1, R2, R3, R4 = (str(rule) for rule in RULES)


def test_forward_migration_follows_the_documented_order() -> None:
    plan = build_plan(make_env(ALL_ON), ALL_OFF)

    assert plan.status is Status.CHANGES
    assert [(s.setting, s.action) for s in plan.steps] == [
        ("external_oms", Action.UPDATE),
        ("availability_webhook", Action.CREATE),
        ("external_atp", Action.UPDATE),
        ("associate_app", Action.UPDATE),
    ]
    whys = [s.why for s in plan.steps]
    assert whys[0] == (f"before external_atp update and associate_app update: {R2}, {R3}")
    assert whys[1] == f"before external_atp update: {R1}"
    assert whys[2] == f"after external_oms and availability_webhook: {R1}, {R2}; gate webhook_probe"
    # These states leave the order webhook unmanaged: the UI step says rule 4 is unchecked.
    assert whys[3] == (
        f"after external_oms: {R3}; needs {R4}, which it cannot check "
        "(external_order_webhook is unmanaged)"
    )


def test_back_migration_follows_the_documented_order() -> None:
    desired = {**ALL_OFF}
    plan = build_plan(make_env(desired, stock_confirmed=True), ALL_ON)

    assert plan.status is Status.CHANGES
    assert [(s.setting, s.action) for s in plan.steps] == [
        ("external_atp", Action.UPDATE),
        ("availability_webhook", Action.DELETE),
        ("associate_app", Action.UPDATE),
        ("external_oms", Action.UPDATE),
    ]
    assert plan.steps[0].why == (
        f"before external_oms update and availability_webhook delete: {R1}, {R2}; "
        "gate newstore_stock_confirmed"
    )
    assert plan.steps[1].why == f"after external_atp: {R1}"
    assert plan.steps[3].why == f"after external_atp and associate_app: {R2}, {R3}"
    assert plan.steps[0].gates[0].name == "newstore_stock_confirmed"
    assert plan.steps[0].gates[0].satisfied is True


def test_order_steps_returns_an_empty_order_when_converged() -> None:
    assert order_steps(ALL_ON, ALL_ON) == []
    plan = build_plan(make_env(ALL_ON), ALL_ON)
    assert plan.status is Status.CONVERGED
    assert plan.steps == []
    assert plan.blocked_by == []


def test_a_free_step_says_no_rule_constrains_it() -> None:
    # Turning the new OM UI *off* depends on nothing. (Turning it on names rule 3, which the
    # live state satisfies: since issue 12 a step names every rule it needs to hold first.)
    desired = {**ALL_ON, "associate_app": {"use_new_om_ui": False}}
    assert order_steps(ALL_ON, desired) == [("associate_app", "no rule constrains this step")]
    live = {**ALL_ON, "associate_app": {"use_new_om_ui": False}}
    assert order_steps(live, ALL_ON) == [
        (
            "associate_app",
            f"needs {R3}, which holds before it; needs {R4}, which it cannot check "
            "(external_order_webhook is unmanaged)",
        )
    ]


def test_turning_external_atp_on_names_the_rules_it_needs_and_its_probe() -> None:
    live = {**ALL_ON, "external_atp": {"enabled": False}}
    plan = build_plan(make_env(ALL_ON), live)
    (step,) = plan.steps
    assert step.why == f"needs {R1}, {R2}, which holds before it; gate webhook_probe"
    assert [g.name for g in step.gates] == ["webhook_probe"]


def test_live_violations_are_listed_and_repaired_worst_harm_first() -> None:
    # Someone turned external ATP on by hand with no webhook and the OMS flag off: all three
    # rules are broken. Turning the OMS flag on first would repair two of them at once, but
    # "stops selling" (rule 1) is the worst harm there is: the webhook config goes first, and,
    # as it is written while external ATP is on, it is probed right before the write.
    live: dict[str, Value] = {
        "external_oms": {"enabled": False},
        "availability_webhook": ABSENT,
        "external_atp": {"enabled": True},
        "associate_app": {"use_new_om_ui": True},
    }
    plan = build_plan(make_env(ALL_ON), live)

    # Rule 4 is unknown here: these states leave the external order webhook unmanaged.
    assert plan.live_violations == [f"{rule}: {rule.consequence}" for rule in RULES[:3]]
    assert [s.setting for s in plan.steps] == ["availability_webhook", "external_oms"]
    assert plan.steps[0].why == (
        f"repairs {R1}, which the live state breaks, worst harm first; written while rule 1 "
        "depends on it (external_atp is on): probed right before the write; gate webhook_probe"
    )
    assert [g.name for g in plan.steps[0].gates] == ["webhook_probe"]
    assert plan.steps[1].why == f"repairs {R2}, {R3}, which the live state breaks, worst harm first"
    assert plan.status is Status.CHANGES


def test_repairing_by_turning_external_atp_off_goes_first_and_needs_stock_confirmation() -> None:
    live = {**ALL_ON, "availability_webhook": ABSENT}
    desired = {**ALL_OFF}
    plan = build_plan(make_env(desired, stock_confirmed=False), live, today=date(2026, 11, 29))

    assert plan.live_violations == [f"{RULES[0]}: {RULES[0].consequence}"]
    assert [s.setting for s in plan.steps] == ["external_atp", "associate_app", "external_oms"]
    assert plan.steps[0].why.startswith(f"before external_oms update: {R2}; repairs {R1}")
    assert plan.status is Status.BLOCKED
    (reason,) = plan.blocked_by
    # Since issue 12: a date, in the environment's own file, with the exact line.
    assert (
        "change line 24 of environments/acme-staging.yaml to "
        "`newstore_stock_confirmed: 2026-11-29`" in reason
    )
    assert "NewStore holds stock" in reason


def test_turning_external_atp_on_without_a_probe_is_blocked_but_lists_its_steps() -> None:
    plan = build_plan(make_env(ALL_ON, probe=None), ALL_OFF)

    assert plan.status is Status.BLOCKED
    assert plan.blocked_by == [
        "turning external ATP on needs gates.webhook_probe in environments/acme-staging.yaml:20:1:"
        " a sample availability request (products and fulfillment_locations) sent to the webhook"
        " first, because NewStore treats every item as unavailable when the webhook fails"
    ]
    assert len(plan.steps) == 4
    assert plan.steps[2].gates[0].satisfied is False


def test_probe_gate_describes_the_request_without_the_key() -> None:
    plan = build_plan(make_env(ALL_ON), ALL_OFF)
    (gate,) = plan.steps[2].gates
    assert gate.name == "webhook_probe"
    assert gate.satisfied is None
    assert URL_A in gate.description
    assert '["1000061"]' in gate.description and '["US01"]' in gate.description
    assert API_KEY_A not in gate.description and SENSITIVE in gate.description


def test_turning_external_atp_on_with_an_unmanaged_webhook_is_blocked() -> None:
    desired = {k: v for k, v in ALL_ON.items() if k != "availability_webhook"}
    live = {k: v for k, v in ALL_OFF.items() if k != "availability_webhook"}
    plan = build_plan(make_env(desired), live)

    assert plan.status is Status.BLOCKED
    assert any("availability_webhook managed" in r for r in plan.blocked_by)
    assert any(n.startswith(f"{R1} involves availability_webhook") for n in plan.notes)


def test_unsafe_desired_state_is_blocked_naming_the_rule() -> None:
    desired = {**ALL_ON, "availability_webhook": ABSENT}
    assert order_steps(ALL_OFF, desired) is None
    plan = build_plan(make_env(desired), ALL_OFF)

    assert plan.status is Status.BLOCKED
    assert plan.blocked_by[0].startswith(f"the desired state breaks {R1}")
    assert "environments/acme-staging.yaml:14:1" in plan.blocked_by[0]
    assert "no order of the steps keeps every safety rule" in plan.blocked_by[1]
    assert plan.steps, "a blocked plan still shows the steps it would take"


def test_masked_api_key_is_not_a_change_but_is_noted() -> None:
    live = {**ALL_ON, "availability_webhook": WEBHOOK_A_MASKED}
    plan = build_plan(make_env(ALL_ON), live)

    assert plan.status is Status.CONVERGED
    assert plan.notes == [
        "availability_webhook.api_key: NewStore returns it masked; cannot verify it "
        "(not treated as a change)"
    ]


def test_masked_api_key_rides_along_when_another_field_changes() -> None:
    live = {"availability_webhook": {**WEBHOOK_A_MASKED, "timeout": 30}}
    plan = build_plan(make_env({"availability_webhook": WEBHOOK_A}), live)

    (step,) = plan.steps
    assert step.action is Action.UPDATE
    assert step.changes == (
        FieldChange("availability_webhook.api_key", SENSITIVE, SENSITIVE),
        FieldChange("availability_webhook.timeout", 30, 15),
    )
    assert "written even if it is unchanged" in plan.notes[0]


def test_changed_api_key_and_trailing_slash_url_are_changes() -> None:
    live = {"availability_webhook": WEBHOOK_A}
    plan = build_plan(make_env({"availability_webhook": WEBHOOK_B}), live)

    (step,) = plan.steps
    assert step.changes == (
        FieldChange("availability_webhook.url", URL_A, URL_A + "/"),
        FieldChange("availability_webhook.api_key", SENSITIVE, SENSITIVE_CHANGED),
    )
    assert API_KEY_A not in repr(plan) and API_KEY_B not in repr(step.changes)


def test_server_managed_fields_are_ignored() -> None:
    live = {"external_oms": {"enabled": True, "updated_at": "2025-01-01T00:00:00Z"}}
    plan = build_plan(make_env({"external_oms": {"enabled": True}}), live)
    assert plan.status is Status.CONVERGED


def test_create_and_delete_show_absent_as_none() -> None:
    create = build_plan(
        make_env({"availability_webhook": WEBHOOK_A}), {"availability_webhook": ABSENT}
    )
    assert create.steps[0].action is Action.CREATE
    assert {c.path: (c.before, c.after) for c in create.steps[0].changes} == {
        "availability_webhook.api_key": (None, SENSITIVE),
        "availability_webhook.external_identifier": (None, "product_id"),
        "availability_webhook.timeout": (None, 15),
        "availability_webhook.url": (None, URL_A),
    }
    delete = build_plan(
        make_env({"availability_webhook": ABSENT}), {"availability_webhook": WEBHOOK_A}
    )
    assert delete.steps[0].action is Action.DELETE
    assert all(c.after is None for c in delete.steps[0].changes)
    assert delete.steps[0].why == "no rule constrains this step"


def test_fingerprints_cover_every_setting_read() -> None:
    plan = build_plan(make_env(ALL_ON), ALL_OFF)
    assert list(plan.fingerprints) == list(ALL_ON)
    assert plan.desired_fingerprint.startswith("sha256:")


def test_a_delete_of_a_setting_the_api_cannot_delete_is_blocked() -> None:
    # The config loader refuses `external_oms: absent`; the planner must not rely on that.
    env = make_env({"external_oms": ABSENT})
    plan = build_plan(env, {"external_oms": {"enabled": True}})
    assert plan.status is Status.BLOCKED
    assert any("external_oms cannot be deleted" in reason for reason in plan.blocked_by)
