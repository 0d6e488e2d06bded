"""Desired states, sandbox seeds and history checks shared by the apply tests."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.core.journal import read_journal
from reconciler.model import ABSENT, Fields, Value
from reconciler.newstore.settings import REGISTRY
from reconciler.newstore.settings.associate_app import store_of
from reconciler.rules import violations
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.state import default_associate_app_config
from reconciler.sandbox.values import state_to_values

SANDBOX_SECRET = "sandbox-secret"

# The sandbox's own sample webhook; in-process the host is never resolved.
WEBHOOK: Fields = {
    "url": f"http://127.0.0.1:8765{WEBHOOK_PATH}",
    "api_key": DEFAULT_WEBHOOK_API_KEY,
    "external_identifier": "product_id",
    "timeout": 5,
}
# What env_helpers.ON_YAML configures (conftest's write_env exports its key).
ORDER_WEBHOOK_API_KEY = "sandbox-order-webhook-key-0001"
ORDER_WEBHOOK: Fields = {
    "url": "https://oms.acme.example/newstore",
    "api_key": ORDER_WEBHOOK_API_KEY,
    "timeout": 15,
}
ON: dict[str, Value] = {
    "external_oms": {"enabled": True},
    "availability_webhook": WEBHOOK,
    "external_atp": {"enabled": True},
    "external_order_webhook": ORDER_WEBHOOK,
    "associate_app": {"use_new_om_ui": True},
}
OFF: dict[str, Value] = {
    "external_oms": {"enabled": False},
    "availability_webhook": ABSENT,
    "external_atp": {"enabled": False},
    "associate_app": {"use_new_om_ui": False},
}


FORWARD = [
    ("external_oms", "POST"),
    ("availability_webhook", "PUT"),
    ("external_atp", "POST"),
    ("external_order_webhook", "POST"),
    ("associate_app", "PUT"),
]


def seed(app: SandboxApp, tenant: str, values: Mapping[str, Value]) -> None:
    """Seed a tenant with setting values (the sandbox's state shape; the rest default)."""
    hook = values.get("availability_webhook", ABSENT)
    order = values.get("external_order_webhook", ABSENT)
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
            "external_order_webhook": None if order is ABSENT else dict(order),
            "associate_app_store_configs": _store_documents(ui, document),
        },
    )


def _store_documents(ui: Value, global_document: dict[str, Any]) -> dict[str, Any]:
    """The store documents a desired associate_app value lists (None: no document)."""
    stores: dict[str, Any] = {}
    for name, on in ({} if ui is ABSENT else ui).items():
        store = store_of(name)
        if store is not None and on is not None:
            document = copy.deepcopy(global_document)
            document["ui_configurations"]["use_new_om_ui"] = bool(on)
            stores[store] = document
    return stores


def _enabled(value: Value) -> bool | None:
    return None if value is ABSENT else bool(value.get("enabled"))


_SETTING_OF_PATH = {setting.path: setting.key for setting in REGISTRY}


def setting_of_path(path: str) -> str:
    """The setting an API path belongs to (a store document is part of associate_app)."""
    if path in _SETTING_OF_PATH:
        return _SETTING_OF_PATH[path]
    parent = path.rsplit("/", 1)[0]
    assert _SETTING_OF_PATH[parent] == "associate_app", path
    return "associate_app"


def writes(app: SandboxApp, tenant: str) -> list[tuple[str, str]]:
    """(setting, method) of every write the tenant accepted, in order (an injected error
    answer is in the history too, but changed nothing)."""
    return [
        (setting_of_path(entry["path"].removeprefix(f"/{tenant}")), entry["method"])
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


def wait_settled(app: SandboxApp, tenant: str, latency_ms: int = 0) -> None:
    """Wait until a killed client's last request, if any, has been fully handled."""
    seen = -1
    while len(app.requests(tenant)) != seen:
        seen = len(app.requests(tenant))
        time.sleep(0.05 + latency_ms / 1000)


def check_killed_journal(journal: Path, app: SandboxApp, tenant: str) -> str:
    """A killed run's journal agrees with the writes the tenant accepted: its last line is a
    result matching the last write (every `applied` result is one write, in order), or an
    intent whose write is either the last one or absent. Returns which case it was."""
    accepted = [
        (setting, "delete" if method == "DELETE" else "write")
        for setting, method in writes(app, tenant)
    ]
    entries = []
    if journal.exists():
        entries = [e for e in read_journal(journal) if e["phase"] in ("intent", "result")]
    applied = [
        (e["setting"], "delete" if e["action"] == "delete" else "write")
        for e in entries
        if e.get("result") == "applied"
    ]
    if not entries:
        assert accepted == [], f"writes without a journal line: {accepted}"
        return "killed before any write"
    last = entries[-1]
    if last["phase"] == "intent":
        intended = (last["setting"], "delete" if last["action"] == "delete" else "write")
        assert accepted in (applied, [*applied, intended]), (accepted, entries)
        return (
            "last line an intent, its write landed"
            if accepted != applied
            else ("last line an intent, its write absent")
        )
    assert accepted == applied, (accepted, entries)
    return "last line a result matching the history"
