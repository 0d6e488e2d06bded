"""What the sandbox remembers per tenant, how it is seeded, and how it survives a restart.

The public state shape is the contract's: the settings, keyed as NewStore names them, and the
store-level Associate App documents by store id; its keys, defaults and seed checks are the
endpoint table's (`endpoints`).
Sandbox-only behaviour switches live in `options` (shown only when they differ from the
defaults, so the usual state is exactly the contract's keys). Timestamps NewStore returns
as `updated_at` are kept beside the state, not in it: they are server-managed.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.clock import now_iso
from reconciler.errors import ConfigError
from reconciler.fsutil import atomic_write_text
from reconciler.sandbox.documents import default_associate_app_config
from reconciler.sandbox.endpoints import (
    DOCUMENT,
    ENDPOINTS,
    ORDER_WEBHOOK_FIELDS,
    STAMPED_KEYS,
    STATE_KEYS,
    WEBHOOK_FIELDS,
)
from reconciler.sandbox.validate import STORE_ID_RE

TENANT_RE = re.compile(r"[a-z0-9-]+")
DEFAULT_OPTIONS: dict[str, Any] = {
    # "flat" answers GET external_oms in the older spec's `{"enabled": bool}` shape.
    "external_oms_shape": "wrapped",
    "mask_webhook_api_key": False,
    # NewStore does not document DELETE on a missing webhook config; clients must cope with all.
    "webhook_delete_absent_status": 204,
}
_OPTION_CHOICES: dict[str, tuple[Any, ...]] = {
    "external_oms_shape": ("wrapped", "flat"),
    # true shows the key's last four characters (`****cdef`); "edges" its first and last four
    # (`sand****0001`); "full" shows none of it. The order webhook's key is masked alike.
    "mask_webhook_api_key": (True, False, "full", "edges"),
    "webhook_delete_absent_status": (200, 204, 404),
}
STATE_FILE_FORMAT = 1
__all__ = [
    "ORDER_WEBHOOK_FIELDS",
    "STATE_KEYS",
    "STORE_ID_RE",
    "WEBHOOK_FIELDS",
    "TenantState",
    "default_associate_app_config",
]


MASKED_KEY = "(masked)"
# Where an api_key may sit: the top level of every value but the Associate App documents'.
MASKED_STATE_KEYS = tuple(entry.state_key for entry in ENDPOINTS if entry.shape != DOCUMENT)


def masked_keys(state: dict[str, Any]) -> dict[str, Any]:
    """A state (`TenantState.view`) with every webhook api_key replaced by MASKED_KEY: what the
    admin endpoints answer unless the sandbox was started to show keys."""
    shown = copy.deepcopy(state)
    for key in MASKED_STATE_KEYS:
        config = shown.get(key)
        if isinstance(config, dict) and "api_key" in config:
            config["api_key"] = MASKED_KEY
    return shown


def check_tenant(tenant: str) -> None:
    if not TENANT_RE.fullmatch(tenant):
        raise ConfigError(f"invalid tenant name {tenant!r}: use lowercase letters, digits and '-'")


def _default_values() -> dict[str, Any]:
    return {entry.state_key: entry.default() for entry in ENDPOINTS}


@dataclass
class TenantState:
    """One tenant: a value per endpoint (`endpoints.ENDPOINTS`, by state key), the time each
    stamped one was last written, the sandbox options and when the tenant was created."""

    values: dict[str, Any] = field(default_factory=_default_values)
    updated_at: dict[str, str | None] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_OPTIONS))
    created_at: str = field(default_factory=now_iso)

    def snapshot(self) -> dict[str, Any]:
        """The contract's state shape (a deep copy: callers may keep it)."""
        return copy.deepcopy({key: self.values[key] for key in STATE_KEYS})

    def view(self) -> dict[str, Any]:
        """What GET /_sandbox/tenants/<t>/state shows: the snapshot, plus non-default options."""
        view = self.snapshot()
        if self.options != DEFAULT_OPTIONS:
            view["options"] = dict(self.options)
        return view

    def stamp_seeded(self) -> None:
        """A seeded value counts as written now (its `updated_at`)."""
        stamp = now_iso()
        for key in STAMPED_KEYS:
            if self.values[key] is not None:
                self.updated_at[key] = stamp

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.snapshot(),
            "options": dict(self.options),
            "created_at": self.created_at,
            **{f"{key}_updated_at": self.updated_at.get(key) for key in STAMPED_KEYS},
        }

    @classmethod
    def from_json(cls, raw: Any) -> TenantState:
        if not isinstance(raw, dict):
            raise ConfigError("tenant entry is not an object")
        state = parse_seed({**raw.get("state", {}), "options": raw.get("options", {})})
        state.created_at = str(raw.get("created_at") or state.created_at)
        for key in STAMPED_KEYS:
            state.updated_at[key] = raw.get(f"{key}_updated_at")
        return state


def parse_seed(body: Any) -> TenantState:
    """Validate a PUT /_sandbox/tenants/<t>/state body; omitted keys take the tenant defaults.

    Only the shape is checked, not NewStore's API rules, so tests can seed states the API would
    refuse to create (that is what hand-edited live states look like).
    """
    if not isinstance(body, dict):
        raise ConfigError("invalid sandbox state: it must be a JSON object")
    problems: list[str] = []
    unknown = sorted(set(body) - {*STATE_KEYS, "options"})
    if unknown:
        problems.append(f"unknown keys {unknown}; allowed: {[*STATE_KEYS, 'options']}")
    state = TenantState()
    for entry in ENDPOINTS:
        if entry.state_key not in body:
            continue
        value = body[entry.state_key]
        if value is None and entry.per_store:
            value = entry.default()  # no store has a document of its own
        if value is not None:
            found = entry.seed_problems(value)
            problems.extend(found)
            if found:
                value = entry.default()
        state.values[entry.state_key] = copy.deepcopy(value)

    options = body.get("options", {})
    if not isinstance(options, dict):
        problems.append("options must be an object")
        options = {}
    for key, value in options.items():
        choices = _OPTION_CHOICES.get(key)
        if choices is None:
            problems.append(f"unknown option {key!r}; allowed: {sorted(_OPTION_CHOICES)}")
        elif not any(value == c and type(value) is type(c) for c in choices):
            # Typed: 1 == True in Python, but a number is not the boolean a choice means.
            problems.append(f"option {key} must be one of {list(choices)}")
        else:
            state.options[key] = value

    if problems:
        raise ConfigError("invalid sandbox state: " + "; ".join(problems))
    return state


def load_tenants(path: Path) -> dict[str, TenantState]:
    """Read a `--state` file; a missing file is an empty sandbox (it is created on first write)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the sandbox state file: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != STATE_FILE_FORMAT:
        raise ConfigError(f"{path}: not a sandbox state file (format {STATE_FILE_FORMAT})")
    tenants: dict[str, TenantState] = {}
    for name, entry in (raw.get("tenants") or {}).items():
        try:
            check_tenant(name)
            tenants[name] = TenantState.from_json(entry)
        except ConfigError as exc:
            raise ConfigError(f"{path}: tenant {name!r}: {exc}") from exc
    return tenants


def save_tenants(path: Path, tenants: dict[str, TenantState]) -> None:
    """Write atomically, so a crash mid-write leaves the previous file, never half of one;
    readable by its owner only (mode 0600), however it was before."""
    payload = {
        "format": STATE_FILE_FORMAT,
        "tenants": {name: tenants[name].to_json() for name in sorted(tenants)},
    }
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    # Private: it holds every key a client sent (a rehearsal's, a test's) in clear.
    atomic_write_text(path, text, what="sandbox state file", mode=0o600)
