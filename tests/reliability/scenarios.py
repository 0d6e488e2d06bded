"""Seeded scenarios over the five settings, environment files for them, and the history check
every reliability suite applies to what the sandbox received.

A scenario is a live state to seed (possibly one that already breaks a safety rule: someone
changed the tenant by hand) and a safe desired state (possibly leaving a setting unmanaged),
drawn from one `random.Random(seed)`. The two documented migrations come first in the cycle.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apply_helpers import OFF, ON, ORDER_WEBHOOK

from reconciler.clock import today_utc
from reconciler.model import ABSENT, Fields, Value
from reconciler.rules import violations
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.state import default_associate_app_config
from reconciler.sandbox.values import state_to_values

KEYS = (
    "external_oms",
    "availability_webhook",
    "external_atp",
    "external_order_webhook",
    "associate_app",
)
CLIENT_SECRET_VAR = "SANDBOX_CLIENT_SECRET"
API_KEY_VAR = "SANDBOX_WEBHOOK_API_KEY"
ORDER_API_KEY_VAR = "SANDBOX_ORDER_WEBHOOK_API_KEY"
OLD_ORDER_HOOK: Fields = {
    "url": "https://old-oms.example/newstore",
    "api_key": "an-older-order-webhook-key-0042",
    "timeout": 20,
}
OLD_HOOK: Fields = {
    "url": "https://old-oms.example/availabilities",
    "api_key": "an-older-webhook-api-key-0042",
    "external_identifier": "product_id",
    "timeout": 15,
}


@dataclass(frozen=True)
class Scenario:
    seed: int
    kind: str  # "forward", "back" or "random"
    live: dict[str, Value | None]  # None: never set on the tenant (reads as off)
    desired: dict[str, Value]  # managed settings only
    stock_confirmed: bool = True

    def yaml(self, tenant: str, base_url: str, *, retry: str = "") -> str:
        """The environment file: connection to `base_url` (the sandbox's origin), the desired
        state with the webhook pointing at the sandbox's sample webhook, and the gates."""
        lines = [
            f"tenant: {tenant}",
            "connection:",
            f"  base_url: {base_url}/{tenant}",
            f"  token_url: {base_url}/auth/realms/{tenant}/protocol/openid-connect/token",
            "  client_id: sandbox",
            f"  client_secret: ${{{CLIENT_SECRET_VAR}}}",
            "  timeout: 5",
            *(f"  {line}" for line in retry.splitlines()),
        ]
        for key in KEYS:
            if key not in self.desired:
                continue
            value = self.desired[key]
            if value is ABSENT:
                lines.append(f"{key}: absent")
                continue
            lines.append(f"{key}:")
            for name, field_value in value.items():
                if name == "api_key":
                    var = ORDER_API_KEY_VAR if key == "external_order_webhook" else API_KEY_VAR
                    shown = f"${{{var}}}"
                elif key == "external_order_webhook":
                    shown = field_value
                elif name == "url":
                    shown = f"{base_url}{WEBHOOK_PATH}"
                else:
                    shown = (
                        str(field_value).lower() if isinstance(field_value, bool) else field_value
                    )
                lines.append(f"  {name}: {shown}")
        confirmed = today_utc().isoformat() if self.stock_confirmed else "false"
        lines += [
            "gates:",
            "  webhook_probe:",
            '    products: ["1000061", "1000062"]',
            '    fulfillment_locations: ["US01"]',
            f"  newstore_stock_confirmed: {confirmed}",
        ]
        return "\n".join(lines) + "\n"


def _hook(rng: random.Random) -> Fields:
    return {
        "url": "(the sandbox's webhook)",
        "api_key": DEFAULT_WEBHOOK_API_KEY,
        "external_identifier": "product_id",
        "timeout": rng.choice([5, 30]),
    }


def _flag(name: str, on: bool) -> Fields:
    return {name: on}


def _random_state(rng: random.Random, hook: Fields, order: Value) -> dict[str, Value]:
    return {
        "external_oms": _flag("enabled", rng.random() < 0.5),
        "availability_webhook": hook if rng.random() < 0.5 else ABSENT,
        "external_atp": _flag("enabled", rng.random() < 0.5),
        "external_order_webhook": order,
        "associate_app": _flag("use_new_om_ui", rng.random() < 0.5),
    }


def scenario(seed: int) -> Scenario:
    """Seed 0, 3, 6...: forward migration from a fresh tenant; 1, 4, 7...: back from fully
    external; the rest: a random safe desired state from a random (maybe broken) live one."""
    rng = random.Random(seed)
    hook = _hook(rng)
    if seed % 3 == 0:
        return Scenario(seed, "forward", {}, {**ON, "availability_webhook": hook})
    if seed % 3 == 1:
        live: dict[str, Value | None] = {**ON, "availability_webhook": hook}
        return Scenario(seed, "back", live, dict(OFF))
    while True:
        # The order webhook has no DELETE: a desired state always configures it.
        desired = _random_state(rng, hook, ORDER_WEBHOOK)
        if not violations(desired):
            break
    order = rng.choice([ORDER_WEBHOOK, OLD_ORDER_HOOK, ABSENT])
    live = dict(_random_state(rng, rng.choice([hook, OLD_HOOK]), order))
    for key in ("external_oms", "external_atp"):
        if rng.random() < 0.15:
            live[key] = None  # never set: NewStore answers null
    # Leave one setting unmanaged sometimes, where the rules can still be checked without it.
    if rng.random() < 0.25:
        key = rng.choice(KEYS)
        rest = {k: v for k, v in desired.items() if k != key}
        if _checkable(rest):
            desired = rest
    return Scenario(seed, "random", live, desired)


def _checkable(desired: Mapping[str, Value]) -> bool:
    from reconciler.rules import RULES

    for rule in RULES:
        cause, effect = rule.if_setting, rule.then_setting
        if cause in desired and effect not in desired and rule.if_holds(desired[cause]):
            return False
        if effect in desired and cause not in desired and not rule.then_holds(desired[effect]):
            return False
    return True


def seed_live(app: SandboxApp, tenant: str, live: Mapping[str, Value | None], url: str) -> None:
    """Seed the tenant; a webhook that is the scenario's own points at `url` (the sandbox's
    sample webhook as the environment file names it)."""
    hook = live.get("availability_webhook", ABSENT)
    if isinstance(hook, dict) and hook["url"] == "(the sandbox's webhook)":
        hook = {**hook, "url": url}
    ui = live.get("associate_app", ABSENT)
    document = default_associate_app_config()
    document["ui_configurations"]["use_new_om_ui"] = isinstance(ui, dict) and bool(
        ui.get("use_new_om_ui")
    )
    atp = live.get("external_atp")
    order = live.get("external_order_webhook", ABSENT)
    app.seed(
        tenant,
        {
            "external_oms": live.get("external_oms") or None,
            "availability_webhook": None if hook in (None, ABSENT) else dict(hook),
            "uses_external_atp": None if atp in (None, ABSENT) else bool(atp["enabled"]),
            "associate_app_config": document,
            "external_order_webhook": None if order in (None, ABSENT) else dict(order),
        },
    )


def added_violations(history: list[dict[str, Any]], start: Mapping[str, Any]) -> list[str]:
    """Every write in `history` that broke a safety rule the state before it did not break
    (every `state_after` is judged with reconciler.rules), described for a failure message."""
    found = []
    state = state_to_values(start)
    for entry in history:
        after = state_to_values(entry["state_after"])
        added = [r for r in violations(after) if r not in violations(state)]
        if added:
            rules = ", ".join(str(r) for r in added)
            found.append(f"write {entry['seq']} {entry['method']} {entry['path']} broke {rules}")
        state = after
    return found


def unrepaired_breaks(
    history: list[dict[str, Any]], start: Mapping[str, Any], own: set[str]
) -> tuple[list[str], int]:
    """The writes of one run (`own`: its request ids, from its journal) after which the state
    broke a rule the state before them kept, and that were not repaired by the run's very next
    write (a compensating write), nor by someone else before it; and how many such writes
    there were in all."""
    found, breaks = [], 0
    states = [state_to_values(start)] + [state_to_values(e["state_after"]) for e in history]
    mine = [i for i, e in enumerate(history) if e.get("request_id") in own and e["status"] < 300]
    for index, entry in enumerate(history):
        before, after = states[index], states[index + 1]
        added = [r for r in violations(after) if r not in violations(before)]
        if not added or index not in mine:
            continue
        breaks += 1
        later = [i for i in mine if i > index]
        end = later[0] if later else len(history)
        if not set(added) & set(violations(states[end])):
            continue  # someone else's write repaired it before the run wrote again
        if not later or set(added) & set(violations(states[end + 1])):
            found.append(f"write {entry['seq']} {entry['method']} {entry['path']} broke {added}")
    return found, breaks
