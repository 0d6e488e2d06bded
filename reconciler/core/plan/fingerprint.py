"""Fingerprints of values and of a desired environment, as plan files record them.

A setting value's fingerprint is a sha256 over its canonical JSON with secrets replaced by an
HMAC keyed per environment (so a plan file never holds a secret, yet a changed secret changes
the fingerprint); `desired_fingerprint` covers everything in the environment file that a plan
depends on. Apply compares them to refuse a plan whose inputs moved.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from reconciler.model import (
    ABSENT,
    UNKNOWN,
    Environment,
    Masked,
    Value,
)
from reconciler.newstore.settings import REGISTRY, Setting


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _value_doc(
    setting: Setting, value: Value, key: bytes, secret: frozenset[str] = frozenset()
) -> Any:
    normal = setting.normalize(value)
    if normal is ABSENT:
        return None
    doc: dict[str, Any] = {}
    for name, field_value in normal.items():
        if field_value is UNKNOWN:
            doc[name] = {"unknown": True}
        elif isinstance(field_value, Masked):
            # What the mask shows, keyed like a secret: a re-read showing another key differs.
            shown = f"{field_value.prefix}\0{field_value.suffix}".encode()
            doc[name] = {"masked": hmac.new(key, shown, hashlib.sha256).hexdigest()}
        elif name in setting.secret_fields or name in secret:
            # Keyed, so a stolen plan file cannot be brute-forced into the secret without
            # the environment's client secret too.
            mac = hmac.new(key, str(field_value).encode(), hashlib.sha256).hexdigest()
            doc[name] = {"hmac": mac}
        else:
            doc[name] = {"value": field_value}
    return doc


def _sha256(doc: Any) -> str:
    return "sha256:" + hashlib.sha256(_canonical(doc)).hexdigest()


def fingerprint(
    setting: Setting, value: Value, key: bytes, secret: frozenset[str] = frozenset()
) -> str:
    """The normalised value as "sha256:<hex>". Secret fields (the setting's, and `secret`:
    those the environment makes secret, `Environment.secret_names`) enter only as
    HMAC-SHA256(key, ·); a wholly masked (UNKNOWN) field hashes as a fixed marker, so
    re-reading it gives the same hash; a partly masked one as the HMAC of what the mask
    shows."""
    return _sha256({"setting": setting.key, "value": _value_doc(setting, value, key, secret)})


def fingerprint_key(env: Environment) -> bytes:
    """The HMAC key for an environment's secrets: its OAuth client secret (plan and apply both
    hold it; a plan file reader without it cannot test guesses)."""
    return env.connection.client_secret.encode()


def desired_fingerprint(env: Environment) -> str:
    """Fingerprint of the tenant, every managed setting's desired value and the gates."""
    key = fingerprint_key(env)
    probe = env.gates.webhook_probe
    return _sha256(
        {
            "tenant": env.tenant,
            "settings": {
                s.key: _value_doc(s, env.desired[s.key], key, env.secret_names(s.key))
                for s in REGISTRY
                if s.key in env.desired
            },
            "gates": {
                "webhook_probe": None
                if probe is None
                else {
                    "products": list(probe.products),
                    "fulfillment_locations": list(probe.fulfillment_locations),
                    # Only when set: plans made before the field existed keep their print.
                    **(
                        {"min_available": probe.min_available}
                        if probe.min_available is not None
                        else {}
                    ),
                },
                "newstore_stock_confirmed": None
                if env.gates.newstore_stock_confirmed is None
                else env.gates.newstore_stock_confirmed.isoformat(),
                "stock_confirmation_valid_days": env.gates.stock_confirmation_valid_days,
            },
        }
    )
