"""A sandbox tenant state (`/_sandbox/tenants/<t>/state`, a history entry's `state_after`) as the
reconciler's setting values, so that `reconciler.rules` can judge every state a run went
through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.model import ABSENT, Value
from reconciler.newstore.settings import REGISTRY
from reconciler.newstore.settings.associate_app import store_field
from reconciler.newstore.settings.flag import Flag
from reconciler.rules import Rule, violations
from reconciler.sandbox.endpoints import ENDPOINTS
from reconciler.sandbox.state import ORDER_WEBHOOK_FIELDS, WEBHOOK_FIELDS


def state_to_values(state: Mapping[str, Any]) -> dict[str, Value]:
    """Setting key → Value, read the way the settings modules read the API (null flags are off,
    a missing Associate App document means the NewStore order UI). Every flag setting is read
    from the endpoint of its path, as its module reads NewStore's `value`."""
    hook = state.get("availability_webhook")
    order = state.get("external_order_webhook")
    app: dict[str, Any] = {"use_new_om_ui": _new_om_ui(state.get("associate_app_config"))}
    # Every store document counts: a store's own document replaces the global one for it.
    for store, document in sorted((state.get("associate_app_store_configs") or {}).items()):
        app[store_field(store)] = _new_om_ui(document)
    values: dict[str, Value] = {
        "availability_webhook": ABSENT
        if hook is None
        else {name: hook[name] for name in WEBHOOK_FIELDS},
        "external_order_webhook": ABSENT
        if order is None
        else {name: order[name] for name in ORDER_WEBHOOK_FIELDS},
        "associate_app": app,
    }
    state_key = {entry.path: entry.state_key for entry in ENDPOINTS}
    for setting in REGISTRY:
        if isinstance(setting, Flag) and setting.path in state_key:
            values[setting.key] = {
                "enabled": setting.enabled_of(state.get(state_key[setting.path])) is True
            }
    return {setting.key: values[setting.key] for setting in REGISTRY if setting.key in values}


def _new_om_ui(document: Any) -> bool:
    ui = document.get("ui_configurations") if isinstance(document, dict) else None
    return bool(isinstance(ui, dict) and ui.get("use_new_om_ui"))


def broken_rules(state: Mapping[str, Any]) -> list[Rule]:
    """The safety rules a sandbox tenant state breaks."""
    return violations(state_to_values(state))
