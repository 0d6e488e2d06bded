"""The safety rules, as data. They drive validation of desired states, the planner's ordering,
the gates it puts on steps, and the checks tests run on every intermediate state in the
sandbox's write history.

Every rule is an implication between two settings: ``if_setting`` satisfies ``if_holds`` ⇒
``then_setting`` satisfies ``then_holds``. A state is a mapping of setting key → Value; a setting
missing from the mapping is unknown (unmanaged), which makes any rule touching it unknown too.
"use_new_om_ui true" means anywhere the reconciler manages it: the global Associate App document
or any listed store's own document.

A rule also says how bad breaking it is (`harm`: repairs of a broken live state run worst harm
first) and, for a rule whose `then_setting` must not only exist but *work*, which gate proves it
(`probe`): every write after which the rule's condition holds and that writes either side of it
runs that gate right before the write, against the value that will be live after it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.model import ABSENT, Value


class Harm(enum.IntEnum):
    """What breaking a rule does to the retailer; higher is worse."""

    MISLEADS_STAFF = 1  # a screen shows the wrong thing; nothing is lost
    MISROUTES = 2  # orders or availability go through the wrong system
    STOPS_SELLING = 3  # every item becomes unavailable


def _exists(value: Value) -> bool:
    return value is not ABSENT


def is_enabled(value: Value) -> bool:
    """A flag-like setting (`{"enabled": ...}`) that exists and is on."""
    return value is not ABSENT and bool(value.get("enabled"))


def _new_om_ui_fields(value: Value) -> list[str]:
    """The Associate App fields that turn the new order UI on: the global document's flag,
    and each managed store document's (`stores.<id>.use_new_om_ui`; None = the store has no
    document of its own, so it follows the global one)."""
    if value is ABSENT:
        return []
    return [name for name, on in value.items() if name.endswith("use_new_om_ui") and on is True]


def _new_om_ui(value: Value) -> bool:
    """use_new_om_ui is in effect anywhere managed: globally or in any managed store."""
    return bool(_new_om_ui_fields(value))


def _first_new_om_ui(value: Value) -> str | None:
    found = _new_om_ui_fields(value)
    return found[0] if found else None


@dataclass(frozen=True, kw_only=True)
class Rule:
    number: int
    id: str
    text: str
    if_setting: str
    if_holds: Callable[[Value], bool]
    then_setting: str
    then_holds: Callable[[Value], bool]
    consequence: str  # what goes wrong for the retailer when the rule is broken
    harm: Harm
    # The gate that proves `then_setting` works, run before every write after which the rule's
    # condition holds and that writes `if_setting` or `then_setting` (None: existing is enough).
    probe: str | None = None
    # The field of `if_setting` that makes `if_holds` true (for messages that point at the
    # line to fix); None = the setting's only field.
    if_field: Callable[[Value], str | None] = lambda value: None

    def holds(self, state: Mapping[str, Value]) -> bool | None:
        """True/False, or None when a setting it needs is not in `state` (unmanaged)."""
        if self.if_setting in state and not self.if_holds(state[self.if_setting]):
            return True
        if self.then_setting in state and self.then_holds(state[self.then_setting]):
            return True
        if self.if_setting in state and self.then_setting in state:
            return False
        return None

    def condition(self, state: Mapping[str, Value]) -> bool | None:
        """Whether the rule's condition (`if_setting` satisfies `if_holds`) is true in `state`;
        None when `if_setting` is unknown (unmanaged)."""
        if self.if_setting not in state:
            return None
        return self.if_holds(state[self.if_setting])

    def __str__(self) -> str:
        return f"rule {self.number} ({self.text})"


WEBHOOK_PROBE = "webhook_probe"

RULES: tuple[Rule, ...] = (
    Rule(
        number=1,
        id="atp-needs-working-webhook",
        text="external ATP on ⇒ the availability webhook config exists and answered the probe "
        "with the values NewStore holds",
        if_setting="external_atp",
        if_holds=is_enabled,
        then_setting="availability_webhook",
        then_holds=_exists,
        consequence="NewStore treats every item as unavailable and the retailer stops selling",
        harm=Harm.STOPS_SELLING,
        probe=WEBHOOK_PROBE,
    ),
    Rule(
        number=2,
        id="atp-needs-external-oms",
        text="external ATP on ⇒ the external OMS flag is on",
        if_setting="external_atp",
        if_holds=is_enabled,
        then_setting="external_oms",
        then_holds=is_enabled,
        consequence="NewStore takes ATP from an external OMS it does not route orders to",
        harm=Harm.MISROUTES,
    ),
    Rule(
        number=3,
        id="new-om-ui-needs-external-oms",
        text="use_new_om_ui true ⇒ the external OMS flag is on",
        if_setting="associate_app",
        if_holds=_new_om_ui,
        then_setting="external_oms",
        then_holds=is_enabled,
        consequence="the Associate App shows order history from an OMS that holds no orders",
        harm=Harm.MISLEADS_STAFF,
        if_field=_first_new_om_ui,
    ),
    Rule(
        number=4,
        id="new-om-ui-needs-order-webhook",
        text="use_new_om_ui true ⇒ the external order webhook is configured",
        if_setting="associate_app",
        if_holds=_new_om_ui,
        then_setting="external_order_webhook",
        then_holds=_exists,
        consequence="the Associate App's order screens have nowhere to fetch external orders from",
        harm=Harm.MISLEADS_STAFF,
        if_field=_first_new_om_ui,
    ),
)


def read_for_rules(desired: Mapping[str, Value]) -> dict[str, tuple[Rule, ...]]:
    """The settings a file with the managed settings `desired` must read although it does not
    manage them, each with the rules it is read for: the other side of every rule of which the
    file manages one side, unless the managed side's desired value keeps the rule whatever the
    other side is (external ATP off; the external OMS on) and no probe depends on it. They are
    read, judged and shown, never written: a webhook rewrite while external ATP is on is
    probed whether or not the file manages external ATP."""
    found: dict[str, tuple[Rule, ...]] = {}
    for rule in RULES:
        pair = (rule.if_setting, rule.then_setting)
        unmanaged = [key for key in pair if key not in desired]
        if len(unmanaged) != 1:
            continue
        (partner,) = unmanaged
        if partner == rule.then_setting:
            needed = rule.if_holds(desired[rule.if_setting])
        else:
            needed = rule.probe is not None or not rule.then_holds(desired[rule.then_setting])
        if needed:
            found[partner] = (*found.get(partner, ()), rule)
    return found


def violations(state: Mapping[str, Value]) -> list[Rule]:
    """The rules that are definitely broken in `state` (unknown counts as not broken)."""
    return [rule for rule in RULES if rule.holds(state) is False]


def harm_of(rules: list[Rule] | set[Rule] | tuple[Rule, ...]) -> tuple[int, ...]:
    """A sort key for a set of broken rules: the count at each harm level, worst level first,
    so that one broken rule of a worse harm outweighs any number of lesser ones."""
    return tuple(sum(rule.harm == level for rule in rules) for level in sorted(Harm, reverse=True))
