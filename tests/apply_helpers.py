"""Desired states, sandbox seeds and history checks shared by the apply tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.model import ABSENT, Fields, Value
from reconciler.rules import violations
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.state import default_associate_app_config
from reconciler.sandbox.values import state_to_values
from reconciler.settings import REGISTRY

SANDBOX_SECRET = "sandbox-secret"

# The sandbox's own sample webhook; in-process the host is never resolved.
WEBHOOK: Fields = {
    "url": f"http://127.0.0.1:8765{WEBHOOK_PATH}",
    "api_key": DEFAULT_WEBHOOK_API_KEY,
    "external_identifier": "product_id",
    "timeout": 5,
}
ON: dict[str, Value] = {
    "external_oms": {"enabled": True},
    "availability_webhook": WEBHOOK,
    "external_atp": {"enabled": True},
    "associate_app": {"use_new_om_ui": True},
}
OFF: dict[str, Value] = {
    "external_oms": {"enabled": False},
    "availability_webhook": ABSENT,
    "external_atp": {"enabled": False},
    "associate_app": {"use_new_om_ui": False},
}


# Environment file bodies for conftest's write_env ({sandbox} is the sandbox's base URL).
ON_YAML = """\
external_oms:
  enabled: true
availability_webhook:
  url: {sandbox}/_sandbox/webhook/availabilities
  api_key: ${SANDBOX_WEBHOOK_API_KEY}
  external_identifier: product_id
  timeout: 5
external_atp:
  enabled: true
associate_app:
  use_new_om_ui: true
gates:
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
"""
OFF_YAML = """\
external_oms:
  enabled: false
availability_webhook: absent
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
"""
FORWARD = [
    ("external_oms", "POST"),
    ("availability_webhook", "PUT"),
    ("external_atp", "POST"),
    ("associate_app", "PUT"),
]


def seed(app: SandboxApp, tenant: str, values: Mapping[str, Value]) -> None:
    """Seed a tenant with setting values (the sandbox's state shape; the rest default)."""
    hook = values.get("availability_webhook", ABSENT)
    ui = values.get("associate_app", ABSENT)
    document = default_associate_app_config()
    document["ui_configurations"]["use_new_om_ui"] = ui is not ABSENT and bool(
        ui.get("use_new_om_ui")
    )
    app.seed(
        tenant,
        {
            "external_oms": values.get("external_oms") or None,
            "availability_webhook": None if hook is ABSENT else dict(hook),
            "uses_external_atp": _enabled(values.get("external_atp", ABSENT)),
            "associate_app_config": document,
        },
    )


def _enabled(value: Value) -> bool | None:
    return None if value is ABSENT else bool(value.get("enabled"))


_SETTING_OF_PATH = {setting.path: setting.key for setting in REGISTRY}


def writes(app: SandboxApp, tenant: str) -> list[tuple[str, str]]:
    """(setting, method) of every write the tenant accepted, in order (an injected error
    answer is in the history too, but changed nothing)."""
    return [
        (_SETTING_OF_PATH[entry["path"].removeprefix(f"/{tenant}")], entry["method"])
        for entry in app.history(tenant)
        if entry["status"] < 300
    ]


def assert_no_write_adds_a_violation(
    app: SandboxApp, tenant: str, start: Mapping[str, Any]
) -> None:
    """Every state in the history breaks no rule that the state before it did not break, and
    the last one breaks none at all."""
    state = state_to_values(start)
    for entry in app.history(tenant):
        after = state_to_values(entry["state_after"])
        added = set(violations(after)) - set(violations(state))
        assert not added, f"write {entry['seq']} ({entry['method']} {entry['path']}) broke {added}"
        state = after
    assert violations(state) == [], f"the final state breaks {violations(state)}"
