"""The order of a plan's steps and the why of each: the safety rules decide it.

Pure: `order_steps` tries every order of the pending writes and keeps the one that leaves the
least harm (by the rules' harm ranking) along the way; `_why` says in words why a step comes
where it does; `probed_rules` names the rules whose webhook probe must pass right before a
write.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from typing import Final

from reconciler.core.plan.diff import (
    _action,
    differs,
)
from reconciler.core.plan.values import (
    REGISTRY_KEYS,
)
from reconciler.model import (
    ABSENT,
    Value,
)
from reconciler.newstore.settings import REGISTRY
from reconciler.rules import RULES, Rule, harm_of, violations


def _mixed_breaks(rule: Rule, live: Mapping[str, Value], changed: Mapping[str, Value]) -> bool:
    """Does `rule` break in `live` overlaid with `changed`, when it holds (or is unknown) in
    `live` itself? That is what "this write adds a violation" means."""
    if rule.holds(live) is False:
        return False
    return rule.holds({**live, **changed}) is False


def probed_rules(key: str, after: Mapping[str, Value]) -> list[Rule]:
    """The rules whose gate must pass right before writing `key`, given the state `after` the
    write: a rule with a `probe` whose condition holds after it (e.g. external ATP on) and of
    which the write changes either side (turns ATP on, or writes the webhook config). An unknown
    (unmanaged) condition does not count: the plan notes that it cannot check the rule."""
    return [
        rule
        for rule in RULES
        if rule.probe is not None
        and key in (rule.if_setting, rule.then_setting)
        and rule.condition(after) is True
        # Unmanaged counts: its gate then blocks, as it cannot know what to probe.
        and after.get(rule.then_setting) is not ABSENT
    ]


def _why(
    key: str,
    done: Sequence[str],
    later: Sequence[str],
    live: Mapping[str, Value],
    desired: Mapping[str, Value],
) -> str:
    after: dict[str, list[Rule]] = {}
    before: dict[str, list[Rule]] = {}
    unexposed: dict[str, list[Rule]] = {}
    state_before = {**live, **{k: desired[k] for k in done}}
    state_after = {**state_before, key: desired[key]}
    for rule in RULES:
        pair = {rule.if_setting, rule.then_setting}
        if key not in pair:
            continue
        (other,) = pair - {key}
        # Rules are pairwise, so only the two settings' own order can break one.
        if other in done and _mixed_breaks(rule, live, {key: desired[key]}):
            after.setdefault(other, []).append(rule)
        if other in later and _mixed_breaks(rule, live, {other: desired[other]}):
            before.setdefault(other, []).append(rule)
        if other in later:
            # Going first keeps `other` from being written while the rule's condition holds.
            exposed = {**state_before, other: desired[other]}
            if rule in probed_rules(other, exposed) and rule not in probed_rules(
                other, {**exposed, key: desired[key]}
            ):
                unexposed.setdefault(other, []).append(rule)
    # The rules this step makes the condition of, whose other side holds before it (in the
    # live state or thanks to an earlier step): they had to, so the step names them.
    listed = {rule for found in after.values() for rule in found}
    needed = [
        rule
        for rule in RULES
        if rule.if_setting == key
        and rule not in listed
        and rule.condition(state_after) is True
        and rule.condition(state_before) is not True
        and rule.then_setting in live
        and rule.holds(state_after) is True
    ]
    # ...and those whose other side this file does not manage: the plan cannot check them.
    unchecked = [
        rule
        for rule in RULES
        if rule.if_setting == key
        and rule.condition(state_after) is True
        and rule.condition(state_before) is not True
        and rule.then_setting not in live
    ]
    repaired = [r for r in violations(state_before) if r not in violations(state_after)]
    probed = [r for r in probed_rules(key, state_after) if r.then_setting == key]

    parts = []
    if after:
        names = " and ".join(k for k in REGISTRY_KEYS if k in after)
        parts.append(f"after {names}: {_rule_list(after)}")
    if needed:
        parts.append("needs " + ", ".join(str(r) for r in needed) + ", which holds before it")
    if unchecked:
        parts.append(
            "needs "
            + ", ".join(
                f"{r}, which it cannot check ({r.then_setting} is unmanaged)" for r in unchecked
            )
        )
    if before:
        names = " and ".join(
            f"{k} {_action(live[k], desired[k])}" for k in REGISTRY_KEYS if k in before
        )
        parts.append(f"before {names}: {_rule_list(before)}")
    if unexposed:
        names = " and ".join(
            f"{k} {_action(live[k], desired[k])}" for k in REGISTRY_KEYS if k in unexposed
        )
        parts.append(
            f"before {names}, so that it is not written while {_rule_list(unexposed)} depends on it"
        )
    if repaired:
        rules = ", ".join(str(r) for r in _worst_first(repaired))
        parts.append(f"repairs {rules}, which the live state breaks, worst harm first")
    if probed:
        rules = ", ".join(f"rule {r.number}" for r in probed)
        parts.append(
            f"written while {rules} depends on it ({probed[0].if_setting} is on): "
            "probed right before the write"
        )
    return "; ".join(parts) or _FREE


_FREE: Final = "no rule constrains this step"


def _worst_first(rules: Sequence[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda rule: (-rule.harm, rule.number))


def _rule_list(by_setting: Mapping[str, list[Rule]]) -> str:
    rules = {rule.number: rule for found in by_setting.values() for rule in found}
    return ", ".join(str(rules[n]) for n in sorted(rules))


_NO_HARM: Final = harm_of(())


def _order_cost(
    live: Mapping[str, Value], desired: Mapping[str, Value], order: Sequence[str]
) -> tuple[tuple[int, ...], int] | None:
    """How bad an order is, or None if a step adds a violation: the broken rules summed over
    the states after each prefix, counted per harm level, worst level first (so a repair of
    "stops selling" goes before any number of lesser ones), then the number of writes that
    need a probe (a write made while a rule depends on it is an exposure, however probed)."""
    state = dict(live)
    previous = set(violations(state))
    cost = list(_NO_HARM)
    exposures = 0
    for key in order:
        state[key] = desired[key]
        now = set(violations(state))
        if now - previous:
            return None
        cost = [a + b for a, b in zip(cost, harm_of(now), strict=True)]
        exposures += bool(probed_rules(key, state))
        previous = now
    return tuple(cost), exposures


def order_steps(
    live: Mapping[str, Value],
    desired: Mapping[str, Value],
    forced: Collection[str] = (),
    *,
    read_only: Collection[str] = (),
) -> list[tuple[str, str]] | None:
    """The differing settings of `desired` (and those in `forced`, rewritten even when equal)
    in a safe apply order, each with why it sits there; None when every order adds a rule
    violation on some intermediate state. `read_only` settings are in `desired` at their live
    value, for the rules to see, and are never written.

    Every permutation is tried (at most 5! = 120). An order is safe when no step adds a violation
    that the state before it did not have. Among safe orders the one whose prefixes carry the
    least harm wins (it repairs a broken live state worst harm first), then the one with the
    fewest writes needing a probe (e.g. external ATP off before the webhook config is written),
    then the first in REGISTRY order, which is the order NewStore's documentation prescribes.
    """
    pending = [
        s.key
        for s in REGISTRY
        if s.key in desired
        and s.key not in read_only
        and (s.key in forced or differs(s, live[s.key], desired[s.key]))
    ]
    best: tuple[str, ...] | None = None
    best_cost: tuple[tuple[int, ...], int] | None = None
    # permutations() yields orders lexicographically by position in its input, which is in
    # REGISTRY order, so keeping only strictly cheaper orders keeps the REGISTRY-first one
    # among equals.
    for order in itertools.permutations(pending):
        cost = _order_cost(live, desired, order)
        if cost is not None and (best_cost is None or cost < best_cost):
            best, best_cost = order, cost
    if best is None:
        return None
    return [(key, _why(key, best[:i], best[i + 1 :], live, desired)) for i, key in enumerate(best)]
