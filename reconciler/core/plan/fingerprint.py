"""Fingerprints of values and of everything that decides an environment's writes.

A setting value's fingerprint is a sha256 over its canonical JSON with secrets replaced by an
HMAC (so a plan file never holds a secret, yet a changed secret changes the fingerprint).

The HMAC key is derived, per tenant identity, from RECONCILER_FINGERPRINT_KEY when it is set:
one secret both the plan and the apply jobs hold, whichever API client each uses. Without it,
from the environment's OAuth client secret (so plan and apply must then use the same client).
Either way a plan file alone cannot test guesses of a secret: that needs the key too. The plan
records which key it used (`key_record`), so that apply can say "another key" instead of
"the secrets changed".

`decision_parts` fingerprints the parts of the environment file a write depends on (the
desired settings, the gates, the change policy after `extends`), `endpoints` names the hosts
it talks to, and `desired_fingerprint` covers all of it plus the tenant, its identity, how long
a plan stays valid and the key record. Apply compares them to refuse a plan whose inputs moved,
naming what moved.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Final

from reconciler.identity import canonical_host, tenant_identity
from reconciler.model import (
    ABSENT,
    FINGERPRINT_KEY_VARIABLE,
    UNKNOWN,
    Environment,
    Masked,
    Value,
)
from reconciler.newstore.settings import REGISTRY, Setting
from reconciler.policy import DAYS

KEY_FROM_VARIABLE: Final = FINGERPRINT_KEY_VARIABLE
KEY_FROM_CLIENT_SECRET: Final = "client_secret"
# Domain separation: the same root key never keys two different things the same way.
_DERIVE: Final = b"newstore-reconciler secret fingerprints v2\0"
_CHECK: Final = b"newstore-reconciler fingerprint key check v1"


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
            # the fingerprint key too.
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


def _root_key(env: Environment) -> bytes:
    if env.fingerprint_secret is not None:
        return env.fingerprint_secret.encode()
    return env.connection.client_secret.encode()


def fingerprint_key(env: Environment) -> bytes:
    """The HMAC key for an environment's secrets: derived from RECONCILER_FINGERPRINT_KEY (or,
    unset, the client secret) and the tenant identity, so that two tenants holding one webhook
    key do not show equal fingerprints in a plan file."""
    identity = str(tenant_identity(env.connection.base_url)).encode()
    return hmac.new(_root_key(env), _DERIVE + identity, hashlib.sha256).digest()


def key_record(env: Environment) -> dict[str, str]:
    """Which key the secret fingerprints use, as the plan file records it: the variable (with a
    short check value, an HMAC that tells two keys apart and says nothing of either secret), or
    the client secret (with the client id only: a check value would let a plan file reader test
    guesses of the client secret)."""
    if env.fingerprint_secret is not None:
        check = hmac.new(env.fingerprint_secret.encode(), _CHECK, hashlib.sha256).hexdigest()
        return {"source": KEY_FROM_VARIABLE, "check": check[:32]}
    return {"source": KEY_FROM_CLIENT_SECRET, "client_id": env.connection.client_id}


@dataclass(frozen=True)
class Endpoints:
    """Where an environment's requests go, canonically (`reconciler.identity`)."""

    identity: str  # the tenant API: host and path of base_url
    api_host: str
    token_host: str
    token_endpoint: str  # host and path of token_url


def endpoints(env: Environment) -> Endpoints:
    base, token = env.connection.base_url, env.connection.token_url
    return Endpoints(
        identity=str(tenant_identity(base)),
        api_host=canonical_host(base),
        token_host=canonical_host(token),
        token_endpoint=str(tenant_identity(token)),
    )


def _gates_doc(env: Environment) -> dict[str, Any]:
    probe = env.gates.webhook_probe
    return {
        "webhook_probe": None
        if probe is None
        else {
            "products": list(probe.products),
            "fulfillment_locations": list(probe.fulfillment_locations),
            # Only when set: plans made before the field existed keep their print.
            **({"min_available": probe.min_available} if probe.min_available is not None else {}),
        },
        "newstore_stock_confirmed": None
        if env.gates.newstore_stock_confirmed is None
        else env.gates.newstore_stock_confirmed.isoformat(),
        "stock_confirmation_valid_days": env.gates.stock_confirmation_valid_days,
    }


def _policy_doc(env: Environment) -> dict[str, Any]:
    policy = env.policy
    return {
        "timezone": policy.timezone,
        "apply_windows": [
            {
                "days": [DAYS[d] for d in sorted(w.days)],
                "from": w.start.isoformat(),
                "to": None if w.end is None else w.end.isoformat(),
            }
            for w in policy.windows
        ],
        "freezes": [
            {"from": f.first.isoformat(), "to": f.last.isoformat(), "reason": f.reason}
            for f in policy.freezes
        ],
    }


def decision_parts(env: Environment) -> dict[str, str]:
    """The fingerprint of each part of the file that decides a write, by name: `settings`
    (every managed setting's desired value, secrets keyed), `gates`, `policy` (after
    `extends`: a freeze from a base counts)."""
    key = fingerprint_key(env)
    settings = {
        s.key: _value_doc(s, env.desired[s.key], key, env.secret_names(s.key))
        for s in REGISTRY
        if s.key in env.desired
    }
    return {
        "settings": _sha256(settings),
        "gates": _sha256(_gates_doc(env)),
        "policy": _sha256(_policy_doc(env)),
    }


def desired_fingerprint(env: Environment) -> str:
    """Fingerprint of everything that decides the environment's writes: the tenant, where its
    requests go, the decision parts, how long a plan stays valid and which key fingerprints
    its secrets."""
    where = endpoints(env)
    return _sha256(
        {
            "tenant": env.tenant,
            "identity": where.identity,
            "token_endpoint": where.token_endpoint,
            "parts": decision_parts(env),
            "plan_valid_hours": env.plan_valid_hours,
            "fingerprint_key": key_record(env),
        }
    )
