"""The plan of one environment: `build_plan`, pure, an Environment and a live state in.

It diffs every managed setting, orders the writes (`reconciler.core.plan.order`), attaches their
gates (`reconciler.core.plan.gates`) and fingerprints, and collects the notes a reviewer needs:
fields NewStore does not expose, settings forced by `--replace` or re-asserted because their key
reads back masked, removable confirmations and rules the plan cannot check because a setting is
unmanaged. A setting the file does not manage but that shares a rule with one it does (read for
the rule, `rules.read_for_rules`) is judged, ordered around, probed for and shown at its live
value, never written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date
from typing import Any, Final

from reconciler.clock import today_utc
from reconciler.core.plan.diff import (
    _action,
    _field_changes,
    differs,
    shown_value,
)
from reconciler.core.plan.fingerprint import (
    decision_parts,
    desired_fingerprint,
    endpoints,
    fingerprint,
    fingerprint_key,
    key_record,
)
from reconciler.core.plan.gates import (
    _gates,
)
from reconciler.core.plan.order import (
    _FREE,
    _worst_first,
    order_steps,
    probed_rules,
)
from reconciler.core.plan.values import (
    ATP,
    PARTNER_NOT_WRITTEN,
    REGISTRY_KEYS,
    EnvPlan,
    Step,
    status_of,
)
from reconciler.model import (
    ABSENT,
    Environment,
    Masked,
    Value,
    unreadable,
)
from reconciler.newstore.settings import BY_KEY, REGISTRY, Setting
from reconciler.rules import RULES, Rule, is_enabled, read_for_rules, violations


def _unknown_notes(setting: Setting, live: Value, desired: Value, rewritten: bool) -> list[str]:
    live_n, desired_n = setting.normalize(live), setting.normalize(desired)
    if live_n is ABSENT or desired_n is ABSENT:
        return []
    notes = []
    for name, value in live_n.items():
        if not unreadable(value) or name not in desired_n:
            continue
        if isinstance(value, Masked) and not value.could_be(desired_n[name]):
            notes.append(
                f"{setting.key}.{name}: NewStore returns it masked, and what the mask shows "
                "cannot belong to the file's value: NewStore holds another one, so the update "
                "writes the file's"
            )
        elif rewritten:
            notes.append(
                f"{setting.key}.{name}: NewStore returns it masked; the update sends the whole "
                "desired object, so it is written even if it is unchanged"
            )
        else:
            notes.append(
                f"{setting.key}.{name}: NewStore returns it masked; cannot verify it "
                "(not treated as a change)"
            )
    return notes


def _key_unreadable(setting: Setting, live: Value) -> bool:
    """Whether a secret of `live` was not read back in clear (NewStore masks it, wholly or
    partly): then nothing proves NewStore holds the file's key, whatever the mask shows."""
    return live is not ABSENT and any(unreadable(live.get(name)) for name in setting.secret_fields)


# What turning a rule's condition on is called, for the why of a re-asserted config.
_GOES_ON: Final = {"external_atp": "external ATP goes on", "associate_app": "use_new_om_ui goes on"}


def _forced(
    env: Environment,
    live: Mapping[str, Value],
    planned: Mapping[str, Value],
    replace: Collection[str],
) -> dict[str, str]:
    """Settings rewritten although they compare equal, each with why: asked for
    (`--replace`), or a config whose key cannot be read back in clear that a rule is about to
    depend on (the availability webhook before external ATP goes on, the order webhook before
    use_new_om_ui does): only a write of the file's key proves NewStore holds it, and the probe
    before ATP goes on must test the key NewStore will use."""
    forced: dict[str, str] = {}
    for key in replace:
        if key in env.desired and env.desired[key] is not ABSENT and live[key] is not ABSENT:
            forced[key] = f"replaced on request (--replace {key}), with the probe its write needs"
    for rule in RULES:
        then = rule.then_setting
        setting = BY_KEY[then]
        if (
            then in forced
            or not setting.secret_fields
            or env.desired.get(then, ABSENT) is ABSENT
            or rule.if_setting not in env.desired  # the plan does not turn the condition on
            or rule.condition(live) is not False
            or rule.condition(planned) is not True
            or not _key_unreadable(setting, live.get(then, ABSENT))
        ):
            continue
        goes_on = _GOES_ON.get(rule.if_setting, "it is relied on")
        forced[then] = (
            f"re-asserts the {then} config before {goes_on}: "
            "NewStore returns its api_key masked, so the key it holds cannot be read back and "
            "compared with the file's"
        )
    return forced


def _removable_confirmation_notes(env: Environment, live: Mapping[str, Value]) -> list[str]:
    if env.gates.newstore_stock_confirmed is None or ATP not in env.desired:
        return []
    if is_enabled(env.desired[ATP]) or is_enabled(live.get(ATP, ABSENT)):
        return []
    return [
        f"gates.newstore_stock_confirmed ({env.where('gates.newstore_stock_confirmed')}) can be "
        "removed: external ATP is off and stays off, and a confirmation left in the file would "
        "approve a later migration without a fresh look at NewStore's stock"
    ]


def _unchecked_rule_notes(env: Environment, changing: set[str], read: Collection[str]) -> list[str]:
    """Rules involving an unmanaged setting that was not read either (a caller that passed no
    live value for it): the plan cannot check them."""
    notes = []
    for rule in RULES:
        pair = (rule.if_setting, rule.then_setting)
        unmanaged = [k for k in pair if k not in env.desired and k not in read]
        if len(unmanaged) != 1 or not set(pair) & changing:
            continue
        # Only where the managed side could let the rule break: its condition true (the
        # unmanaged consequence is needed) or its consequence false (an unmanaged condition
        # would break it). Turning the new UI off cannot break rule 4, whatever the webhook.
        managed = rule.then_setting if unmanaged[0] == rule.if_setting else rule.if_setting
        value = env.desired[managed]
        if (managed == rule.if_setting and rule.if_holds(value)) or (
            managed == rule.then_setting and not rule.then_holds(value)
        ):
            notes.append(
                f"{rule} involves {unmanaged[0]}, which {env.file} does not manage: "
                "the plan cannot check it"
            )
    return notes


def _uncompared(setting: Setting, live: Value, desired: Value) -> list[str]:
    """The secrets of `setting` NewStore answered masked so that the one it holds could not
    be compared with the file's: wholly masked, or partly with what shows matching the file's
    (a mask that shows another key is a known difference, not an unknown)."""
    if live is ABSENT or desired is ABSENT:
        return []
    found = []
    for name in sorted(setting.secret_fields):
        held = live.get(name)
        if (
            name in desired
            and unreadable(held)
            and (not isinstance(held, Masked) or held.could_be(desired[name]))
        ):
            found.append(f"{setting.key}.{name}")
    return found


def _partner_problems(
    env: Environment, planned: Mapping[str, Value], read: Mapping[str, tuple[Rule, ...]]
) -> list[str]:
    """Why the desired state cannot be reached with the settings read for a rule as they are:
    a managed value that breaks a rule against a partner's live value (e.g. the external OMS
    off while external ATP, which this file does not manage, is on). Validation refuses most
    such files; an Environment built another way is refused here."""
    problems = []
    for partner, rules in read.items():
        for rule in rules:
            if rule.holds(planned) is False:
                managed = rule.then_setting if partner == rule.if_setting else rule.if_setting
                problems.append(
                    f"{managed} as {env.file} wants it would break {rule} against "
                    f"{partner}, which the file does not manage (read for rule {rule.number}, "
                    f"{PARTNER_NOT_WRITTEN}): {rule.consequence}; manage {partner} in "
                    f"{env.file}, or change it first"
                )
    return problems


def build_plan(
    env: Environment,
    live: Mapping[str, Value],
    *,
    replace: Collection[str] = (),
    today: date | None = None,
) -> EnvPlan:
    """The plan that takes `live` to `env.desired`.

    `live` holds every managed setting and, where read (`read_live` reads them), the settings
    read for a rule (`rules.read_for_rules`): those are planned with at their live value and
    never written; one missing from `live` is unknown, as an unmanaged setting always was.
    `replace`: settings to rewrite (probed where a rule needs it) even when they compare equal,
    e.g. to rotate a key NewStore only returns masked. `today` (UTC) dates the stock
    confirmation; it defaults to the real today."""
    today = today or today_utc()
    key = fingerprint_key(env)
    managed = [s for s in REGISTRY if s.key in env.desired]
    desired = {s.key: env.desired[s.key] for s in managed}
    read = {k: rules for k, rules in read_for_rules(desired).items() if k in live}
    partners = [s for s in REGISTRY if s.key in read]
    # What the planner orders and gates against: the desired values, and the partners' live
    # ones (they stay as they are).
    planned = {**desired, **{s.key: live[s.key] for s in partners}}
    blocked_by = [
        f"the desired state breaks {rule}: {rule.consequence}; fix it in "
        f"{env.where(rule.if_setting)}"
        for rule in violations(desired)
    ]
    blocked_by += _partner_problems(env, planned, read)

    forced = _forced(env, live, planned, replace)
    differing = {
        s.key for s in managed if s.key in forced or differs(s, live[s.key], desired[s.key])
    }
    notes: list[str] = []
    for s in managed:
        notes += _unknown_notes(s, live[s.key], desired[s.key], s.key in differing)
    notes += _unchecked_rule_notes(env, differing, read)
    notes += _removable_confirmation_notes(env, live)
    for s in managed:
        # Only when a step makes a rule's condition necessary again (e.g. turns the external
        # OMS off): then what the setting could not read (unlisted stores) matters.
        if any(
            rule.if_setting == s.key
            and rule.then_setting in differing
            and not rule.then_holds(desired[rule.then_setting])
            for rule in RULES
        ):
            notes += s.notes(desired[s.key])

    order = order_steps(live, planned, forced, read_only=read)
    if order is None:
        blocked_by.append(
            "no order of the steps keeps every safety rule on every intermediate state"
        )
        order = [(k, "not ordered: no safe order exists") for k in REGISTRY_KEYS if k in differing]
    state = dict(live)
    steps: list[Step] = []
    for setting_key, why in order:
        setting = BY_KEY[setting_key]
        before, after = live[setting_key], desired[setting_key]
        state[setting_key] = after
        if after is ABSENT and not setting.deletable:
            # Config validation refuses this already; the planner must never emit a DELETE the
            # API does not have, whoever built the Environment.
            blocked_by.append(f"{setting_key} cannot be deleted through NewStore's API")
        gates, blocked = _gates(
            env, setting_key, before, after, probed_rules(setting_key, state), today
        )
        blocked_by += blocked
        if setting_key in forced:
            why = f"{forced[setting_key]}; {why}" if why != _FREE else forced[setting_key]
        gate_words = " and ".join(f"gate {g.name}" for g in gates)
        steps.append(
            Step(
                setting=setting_key,
                action=_action(before, after),
                before=before,
                after=after,
                changes=_field_changes(setting, before, after, env.secret_names(setting_key)),
                why=f"{why}; {gate_words}" if gate_words else why,
                gates=tuple(gates),
                rewrite=setting_key in forced,
                broken_after=tuple(rule.number for rule in violations(state)),
            )
        )
    live_broken = _worst_first(violations(live))
    return EnvPlan(
        name=env.name,
        tenant=env.tenant,
        status=status_of(steps, blocked_by),
        steps=steps,
        blocked_by=blocked_by,
        live_violations=[f"{rule}: {rule.consequence}" for rule in live_broken],
        live_rules=[rule.id for rule in live_broken],
        notes=notes,
        fingerprints={
            s.key: fingerprint(s, live[s.key], key, env.secret_names(s.key))
            for s in REGISTRY
            if s.key in planned
        },
        live={
            s.key: shown_value(s, live[s.key], env.secret_names(s.key))
            for s in REGISTRY
            if s.key in planned
        },
        desired_fingerprint=desired_fingerprint(env),
        replaced=sorted(k for k in replace if k in desired),
        **_where_and_what_decides(env),
        read_for_rules={s.key: tuple(r.number for r in read[s.key]) for s in partners},
        read_only={s.key: live[s.key] for s in partners},
        uncompared_secrets=[
            path for s in managed for path in _uncompared(s, live[s.key], desired[s.key])
        ],
    )


def _where_and_what_decides(env: Environment) -> dict[str, Any]:
    """The EnvPlan fields naming where the plan read and what decides its writes."""
    where = endpoints(env)
    return {
        "identity": where.identity,
        "api_host": where.api_host,
        "token_host": where.token_host,
        "token_endpoint": where.token_endpoint,
        "decision": decision_parts(env),
        "fingerprint_key": key_record(env),
        "plan_valid_hours": env.plan_valid_hours,
    }
