"""Environments and live states for planner tests, built directly (no YAML, no HTTP)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from reconciler.clock import today_utc
from reconciler.model import (
    ABSENT,
    UNKNOWN,
    Connection,
    Environment,
    Fields,
    Gates,
    Location,
    Masked,
    Value,
    WebhookProbe,
)

CLIENT_SECRET = "client-secret-for-plan-tests"
API_KEY_A = "atp-key-aaaaaaaaaaaaaaaaaaaaaaaa"
API_KEY_B = "atp-key-bbbbbbbbbbbbbbbbbbbbbbbb"
URL_A = "https://atp.acme.example/availabilities"

WEBHOOK_A: Fields = {
    "url": URL_A,
    "api_key": API_KEY_A,
    "external_identifier": "product_id",
    "timeout": 15,
}
# Another key and a trailing slash: NewStore compares urls as opaque strings.
WEBHOOK_B: Fields = {**WEBHOOK_A, "url": URL_A + "/", "api_key": API_KEY_B}
WEBHOOK_A_MASKED: Fields = {**WEBHOOK_A, "api_key": UNKNOWN}
# NewStore showing the last four characters of key A (`****aaaa`): comparable with a desired key.
WEBHOOK_A_SUFFIX: Fields = {**WEBHOOK_A, "api_key": Masked("", API_KEY_A[-4:])}

PROBE = WebhookProbe(products=("1000061",), fulfillment_locations=("US01",))

ALL_ON: dict[str, Value] = {
    "external_oms": {"enabled": True},
    "availability_webhook": WEBHOOK_A,
    "external_atp": {"enabled": True},
    "associate_app": {"use_new_om_ui": True},
}
ALL_OFF: dict[str, Value] = {
    "external_oms": {"enabled": False},
    "availability_webhook": ABSENT,
    "external_atp": {"enabled": False},
    "associate_app": {"use_new_om_ui": False},
}


def make_env(
    desired: Mapping[str, Value],
    *,
    name: str = "acme-staging",
    probe: WebhookProbe | None = PROBE,
    stock_confirmed: bool | date = False,
    client_secret: str = CLIENT_SECRET,
) -> Environment:
    """`stock_confirmed`: a date, or True for a confirmation given yesterday (valid today)."""
    confirmed = (
        today_utc() - timedelta(days=1) if stock_confirmed is True else stock_confirmed or None
    )
    file = f"environments/{name}.yaml"
    return Environment(
        name=name,
        file=file,
        tenant=name,
        connection=Connection(
            base_url=f"http://127.0.0.1:8765/{name}",
            token_url=f"http://127.0.0.1:8765/auth/realms/{name}/protocol/openid-connect/token",
            client_id="sandbox",
            client_secret=client_secret,
        ),
        desired=dict(desired),
        gates=Gates(webhook_probe=probe, newstore_stock_confirmed=confirmed),
        locations={
            "gates": Location(file, 20, 1),
            "gates.newstore_stock_confirmed": Location(file, 24, 3),
            "external_atp": Location(file, 14, 1),
        },
    )
