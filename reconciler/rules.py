"""The safety rules, as data. They drive validation of desired states, the planner's ordering,
and the checks tests run on every intermediate state in the sandbox's write history.

Every rule is an implication between two settings: ``if_setting`` satisfies ``if_holds`` ⇒
``then_setting`` satisfies ``then_holds``. A state is a mapping of setting key → Value; a setting
missing from the mapping is unknown (unmanaged), which makes any rule touching it unknown too.
"use_new_om_ui true" means anywhere the reconciler manages it: the global Associate App document
or any listed store's own document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.model import ABSENT, Value


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


@dataclass(frozen=True)
class Rule:
    number: int
    id: str
    text: str
    if_setting: str
    if_holds: Callable[[Value], bool]
    then_setting: str
    then_holds: Callable[[Value], bool]
    consequence: str  # what goes wrong for the retailer when the rule is broken
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

    def __str__(self) -> str:
        return f"rule {self.number} ({self.text})"


RULES: tuple[Rule, ...] = (
    Rule(
        1,
        "atp-needs-webhook",
        "external ATP on ⇒ the availability webhook config exists",
        "external_atp",
        is_enabled,
        "availability_webhook",
        _exists,
        "NewStore treats every item as unavailable and the retailer stops selling",
    ),
    Rule(
        2,
        "atp-needs-external-oms",
        "external ATP on ⇒ the external OMS flag is on",
        "external_atp",
        is_enabled,
        "external_oms",
        is_enabled,
        "NewStore takes ATP from an external OMS it does not route orders to",
    ),
    Rule(
        3,
        "new-om-ui-needs-external-oms",
        "use_new_om_ui true ⇒ the external OMS flag is on",
        "associate_app",
        _new_om_ui,
        "external_oms",
        is_enabled,
        "the Associate App shows order history from an OMS that holds no orders",
        _first_new_om_ui,
    ),
    Rule(
        4,
        "new-om-ui-needs-order-webhook",
        "use_new_om_ui true ⇒ the external order webhook is configured",
        "associate_app",
        _new_om_ui,
        "external_order_webhook",
        _exists,
        "the Associate App's order screens have nowhere to fetch external orders from",
        _first_new_om_ui,
    ),
)


def violations(state: Mapping[str, Value]) -> list[Rule]:
    """The rules that are definitely broken in `state` (unknown counts as not broken)."""
    return [rule for rule in RULES if rule.holds(state) is False]
