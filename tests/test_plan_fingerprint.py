"""Fingerprints: stable, sensitive to every field, and keyed where secrets are involved."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

from plan_helpers import ALL_ON, API_KEY_A, CLIENT_SECRET, WEBHOOK_A, WEBHOOK_A_MASKED, make_env

from reconciler.core.plan import desired_fingerprint, fingerprint, fingerprint_key
from reconciler.model import ABSENT, Gates, WebhookProbe
from reconciler.newstore.settings import BY_KEY

WEBHOOK = BY_KEY["availability_webhook"]
OMS = BY_KEY["external_oms"]
KEY = CLIENT_SECRET.encode()


def test_fingervariantis_a_stable_sha256() -> None:
    first = fingerprint(WEBHOOK, WEBHOOK_A, KEY)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)
    assert fingerprint(WEBHOOK, dict(reversed(list(WEBHOOK_A.items()))), KEY) == first


def test_fingervariantdiffers_on_any_field_change() -> None:
    base = fingerprint(WEBHOOK, WEBHOOK_A, KEY)
    variants = {
        "url": WEBHOOK_A["url"] + "/",
        "api_key": API_KEY_A + "x",
        "external_identifier": "sku",
        "timeout": 16,
    }
    seen = {base}
    for name, value in variants.items():
        variant = fingerprint(WEBHOOK, {**WEBHOOK_A, name: value}, KEY)
        assert variant not in seen, name
        seen.add(variant)
    assert fingerprint(WEBHOOK, ABSENT, KEY) not in seen
    assert fingerprint(OMS, {"enabled": True}, KEY) != fingerprint(OMS, {"enabled": False}, KEY)


def test_server_managed_fields_do_not_move_the_fingerprint() -> None:
    stamped = {"enabled": True, "updated_at": "2025-06-01T10:00:00Z"}
    assert fingerprint(OMS, stamped, KEY) == fingerprint(OMS, {"enabled": True}, KEY)


def test_secrets_are_keyed_and_never_contained() -> None:
    under_one = fingerprint(WEBHOOK, WEBHOOK_A, KEY)
    under_other = fingerprint(WEBHOOK, WEBHOOK_A, b"another environment's client secret")
    assert under_one != under_other
    # Without the key a guess cannot be checked: the unkeyed hash of the secret is not used.
    assert hashlib.sha256(API_KEY_A.encode()).hexdigest() not in under_one
    assert API_KEY_A not in under_one


def test_masked_values_hash_as_a_fixed_marker() -> None:
    masked = fingerprint(WEBHOOK, WEBHOOK_A_MASKED, KEY)
    assert masked == fingerprint(WEBHOOK, dict(WEBHOOK_A_MASKED), b"any key at all")
    assert masked != fingerprint(WEBHOOK, WEBHOOK_A, KEY)


def test_desired_fingervariantcovers_settings_gates_and_keyed_secrets() -> None:
    env = make_env(ALL_ON)
    base = desired_fingerprint(env)
    assert base == desired_fingerprint(make_env(ALL_ON))
    changed = [
        make_env({**ALL_ON, "external_atp": {"enabled": False}}),
        make_env({k: v for k, v in ALL_ON.items() if k != "associate_app"}),
        make_env(ALL_ON, stock_confirmed=True),
        make_env(ALL_ON, probe=None),
        replace(env, gates=Gates(WebhookProbe(("1000062",), ("US01",)))),
        replace(env, tenant="acme-prod"),
        make_env({**ALL_ON, "availability_webhook": {**WEBHOOK_A, "api_key": "k" * 32}}),
        make_env(ALL_ON, client_secret="rotated client secret"),
    ]
    prints = {desired_fingerprint(e) for e in changed}
    assert len(prints) == len(changed) and base not in prints


def test_with_a_fingerprint_key_the_api_client_does_not_matter() -> None:
    """Issue 25.2: plan and apply jobs use different API clients; both hold one key."""
    key = "a-shared-fingerprint-key-0123456789abcdef"
    planned = replace(make_env(ALL_ON, client_secret="the plan client"), fingerprint_secret=key)
    applied = replace(make_env(ALL_ON, client_secret="the apply client"), fingerprint_secret=key)
    assert fingerprint_key(planned) == fingerprint_key(applied)
    assert desired_fingerprint(planned) == desired_fingerprint(applied)
    assert fingerprint(WEBHOOK, WEBHOOK_A, fingerprint_key(planned)) == fingerprint(
        WEBHOOK, WEBHOOK_A, fingerprint_key(applied)
    )
    # Another key, or none (the client secret keys it then), gives other fingerprints.
    other = replace(planned, fingerprint_secret="another-fingerprint-key-0123456789abcd")
    for env in (other, make_env(ALL_ON, client_secret="the plan client")):
        assert fingerprint_key(env) != fingerprint_key(planned)
        assert desired_fingerprint(env) != desired_fingerprint(planned)


def test_two_tenants_with_one_webhook_key_show_different_fingerprints() -> None:
    """One key for every environment must not reveal that two tenants share a secret."""
    key = "a-shared-fingerprint-key-0123456789abcdef"
    staging = replace(make_env(ALL_ON, name="acme-staging"), fingerprint_secret=key)
    prod = replace(make_env(ALL_ON, name="acme-prod"), fingerprint_secret=key)
    assert fingerprint(WEBHOOK, WEBHOOK_A, fingerprint_key(staging)) != fingerprint(
        WEBHOOK, WEBHOOK_A, fingerprint_key(prod)
    )
