"""What the sandbox remembers per tenant, how it is seeded, and how it survives a restart.

The public state shape is the contract's: the settings, keyed as NewStore names them, and the
store-level Associate App documents by store id.
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

TENANT_RE = re.compile(r"[a-z0-9-]+")
STATE_KEYS = (
    "external_oms",
    "availability_webhook",
    "uses_external_atp",
    "associate_app_config",
    "external_order_webhook",
    "associate_app_store_configs",
)
WEBHOOK_FIELDS = ("url", "api_key", "external_identifier", "timeout")
ORDER_WEBHOOK_FIELDS = ("url", "api_key", "timeout")
STORE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
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


MASKED_KEY = "(masked)"


def masked_keys(state: dict[str, Any]) -> dict[str, Any]:
    """A state (`TenantState.view`) with every webhook api_key replaced by MASKED_KEY: what the
    admin endpoints answer unless the sandbox was started to show keys."""
    shown = copy.deepcopy(state)
    for key in ("availability_webhook", "external_order_webhook"):
        config = shown.get(key)
        if isinstance(config, dict) and "api_key" in config:
            config["api_key"] = MASKED_KEY
    return shown


def check_tenant(tenant: str) -> None:
    if not TENANT_RE.fullmatch(tenant):
        raise ConfigError(f"invalid tenant name {tenant!r}: use lowercase letters, digits and '-'")


def default_associate_app_config() -> dict[str, Any]:
    """A complete global Associate App document as a NewStore-as-OMS tenant might have it.

    It validates against the spec's strict `configSchema`, and deliberately touches most
    sections so that a client that rewrites the document (GET, change one field, PUT) is caught
    if it drops or reorders anything.
    """
    return {
        "capabilities": {
            "add_products_from_listing": True,
            "cash_management": True,
            "mixed_cart": False,
            "offline_mode": True,
            "offline_mode_catalog_backup": True,
            "offline_mode_prices_backup": False,
            "printer_management": {"air_print": True, "air_print_paper_width": 80},
            "reason_codes_enabled": True,
            "send_email_receipt_from_order_history": True,
            "ship_to_store_enabled": False,
            "survey_selling": {"alias": "sell-nps", "enabled": False, "label": "How was it?"},
            "customer_explicit_search": True,
        },
        "commerce_components": {
            "barcode_types": ["EAN13", "UPCA", "QR", "Code128"],
            "document_printer_types": {
                "sales_receipt": "documentPrinter",
                "refund_note": "documentPrinter",
                "shipping_label": "labelPrinter",
                "packing_slip": "documentPrinter",
                "default": "documentPrinter",
            },
            "gift_card_product_id": "giftcard-1",
            "gift_card_regexp": "^[0-9]{16}$",
        },
        "return_process_configuration": {
            "blind_return_enabled": False,
            "quality_inspection_options": [
                {"code": 1, "option": "Sellable"},
                {"code": 2, "option": "Damaged"},
            ],
            "return_reasons": [
                {
                    "code": 10,
                    "reason": "Too small",
                    "reasons": {"en": "Too small", "de": "Zu klein"},
                },
                {"code": 20, "reason": "Changed mind", "reasons": {"en": "Changed mind"}},
            ],
        },
        "ui_configurations": {
            "display_product_identifier": "product_id",
            "seconds_until_logout_on_inactivity": 900,
            "show_preorders_filter": False,
            "suggested_email_domains": ["gmail.com", "outlook.com"],
            "tax_exemption_enabled": False,
            "use_new_om_ui": False,
            "hide_selling": False,
        },
        "customizations": {
            "hang_tag_printing_enabled": False,
            "gift_receipt_printing_enabled": True,
            "cart_management": ["orderDiscount", "itemDiscount", "coupon"],
            "email_opt_in": {"privacy_policy_url": "https://example.com/privacy"},
            "disabled_contact_buttons": ["SMS"],
        },
        "release_toggles": {
            "drawer_navigation": True,
            "login_v2": True,
            "new_customer_profile": False,
            "push_notifications": True,
        },
        "external_integration": {
            "post_login_callback_urls": [
                {"identity_provider": "okta", "url": "https://example.com/callback"}
            ]
        },
        "last_published_release": "1.62.0",
    }


@dataclass
class TenantState:
    external_oms: dict[str, Any] | None = None
    availability_webhook: dict[str, Any] | None = None
    uses_external_atp: bool | None = None
    associate_app_config: dict[str, Any] | None = field(
        default_factory=default_associate_app_config
    )
    external_order_webhook: dict[str, Any] | None = None
    associate_app_store_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_OPTIONS))
    external_order_webhook_updated_at: str | None = None
    created_at: str = field(default_factory=now_iso)
    external_oms_updated_at: str | None = None
    uses_external_atp_updated_at: str | None = None

    def snapshot(self) -> dict[str, Any]:
        """The contract's state shape (a deep copy: callers may keep it)."""
        return copy.deepcopy({key: getattr(self, key) for key in STATE_KEYS})

    def view(self) -> dict[str, Any]:
        """What GET /_sandbox/tenants/<t>/state shows: the snapshot, plus non-default options."""
        view = self.snapshot()
        if self.options != DEFAULT_OPTIONS:
            view["options"] = dict(self.options)
        return view

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.snapshot(),
            "options": dict(self.options),
            "created_at": self.created_at,
            "external_oms_updated_at": self.external_oms_updated_at,
            "uses_external_atp_updated_at": self.uses_external_atp_updated_at,
            "external_order_webhook_updated_at": self.external_order_webhook_updated_at,
        }

    @classmethod
    def from_json(cls, raw: Any) -> TenantState:
        if not isinstance(raw, dict):
            raise ConfigError("tenant entry is not an object")
        state = parse_seed({**raw.get("state", {}), "options": raw.get("options", {})})
        state.created_at = str(raw.get("created_at") or state.created_at)
        state.external_oms_updated_at = raw.get("external_oms_updated_at")
        state.uses_external_atp_updated_at = raw.get("uses_external_atp_updated_at")
        state.external_order_webhook_updated_at = raw.get("external_order_webhook_updated_at")
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

    oms = body.get("external_oms")
    if oms is not None and not (
        isinstance(oms, dict) and set(oms) == {"enabled"} and isinstance(oms["enabled"], bool)
    ):
        problems.append('external_oms must be null or {"enabled": true|false}')
    state.external_oms = copy.deepcopy(oms)

    hook = body.get("availability_webhook")
    if hook is not None:
        if not isinstance(hook, dict) or set(hook) != set(WEBHOOK_FIELDS):
            problems.append(f"availability_webhook must be null or an object with {WEBHOOK_FIELDS}")
        else:
            for key in ("url", "api_key", "external_identifier"):
                if not isinstance(hook[key], str):
                    problems.append(f"availability_webhook.{key} must be a string")
            if not isinstance(hook["timeout"], int) or isinstance(hook["timeout"], bool):
                problems.append("availability_webhook.timeout must be an integer")
    state.availability_webhook = copy.deepcopy(hook)

    atp = body.get("uses_external_atp")
    if atp is not None and not isinstance(atp, bool):
        problems.append("uses_external_atp must be null, true or false")
    state.uses_external_atp = atp

    if "associate_app_config" in body:
        doc = body["associate_app_config"]
        if doc is not None and not isinstance(doc, dict):
            problems.append("associate_app_config must be null or an object")
        state.associate_app_config = copy.deepcopy(doc)

    order_hook = body.get("external_order_webhook")
    if order_hook is not None:
        if not isinstance(order_hook, dict) or set(order_hook) != set(ORDER_WEBHOOK_FIELDS):
            problems.append(
                f"external_order_webhook must be null or an object with {ORDER_WEBHOOK_FIELDS}"
            )
        elif not all(isinstance(order_hook[key], str) for key in ("url", "api_key")) or not (
            isinstance(order_hook["timeout"], int) and not isinstance(order_hook["timeout"], bool)
        ):
            problems.append(
                "external_order_webhook: url and api_key must be strings, timeout an integer"
            )
    state.external_order_webhook = copy.deepcopy(order_hook)

    stores = body.get("associate_app_store_configs") or {}
    if not isinstance(stores, dict) or not all(
        isinstance(doc, dict) and isinstance(store, str) and STORE_ID_RE.fullmatch(store)
        for store, doc in stores.items()
    ):
        problems.append(
            "associate_app_store_configs must be an object of store id "
            "(letters, digits, '_', '-') to configuration object"
        )
        stores = {}
    state.associate_app_store_configs = copy.deepcopy(stores)

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
