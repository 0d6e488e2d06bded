"""The client over a real socket: the sandbox served on 127.0.0.1."""

from __future__ import annotations

import pytest
from client_helpers import TENANT, WEBHOOK, api_requests, live_client, make_app, token_requests

from reconciler.errors import IPBlockedError, NewStoreError
from reconciler.model import ABSENT
from reconciler.newstore.settings import BY_KEY, REGISTRY
from reconciler.newstore.settings.flag import Flag
from reconciler.sandbox.app import SandboxApp

# Every setting turned on: each flag, and a value for each of the others.
ON = {
    **{setting.key: {"enabled": True} for setting in REGISTRY if isinstance(setting, Flag)},
    "availability_webhook": WEBHOOK,
    "external_order_webhook": {
        "url": "https://oms.acme.example/newstore",
        "api_key": "order-webhook-key-0123456789",
        "timeout": 15,
    },
    "associate_app": {"use_new_om_ui": True},
}


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


def test_every_setting_round_trips(app: SandboxApp) -> None:
    with live_client(app) as client:
        for setting in REGISTRY:
            assert setting.read(client) == setting.default
        for setting in REGISTRY:
            assert setting.write(client, dict(ON[setting.key]))
        assert {s.key: s.read(client) for s in REGISTRY} == ON
        assert BY_KEY["availability_webhook"].delete(client)
        assert BY_KEY["availability_webhook"].read(client) is ABSENT
        assert client.token_requests == 1
    assert token_requests(app) == 1


def test_a_dropped_connection_after_a_committed_write(app: SandboxApp) -> None:
    path = f"/{TENANT}/v0/config/availability/webhook"
    app.set_faults([{"method": "PUT", "path": path, "drop_connection": True}])
    with live_client(app) as client:
        assert BY_KEY["availability_webhook"].write(client, dict(WEBHOOK))
    assert [h["method"] for h in app.history(TENANT)] == ["PUT", "PUT"]
    assert app.state(TENANT)["availability_webhook"] == WEBHOOK


def test_rate_limits_and_refused_tokens(app: SandboxApp) -> None:
    path = f"/{TENANT}/v0/config/routing/uses_external_atp"
    app.set_faults(
        [
            {"method": "GET", "path": path, "status": 429, "retry_after": 0, "times": 1},
            {"method": "GET", "path": path, "status": 403, "times": 1},
        ]
    )
    with live_client(app) as client:
        assert BY_KEY["external_atp"].read(client) == {"enabled": False}
        assert client.token_requests == 2
    assert [s for _, _, s in api_requests(app)] == [429, 403, 200]


def test_the_ip_block(app: SandboxApp) -> None:
    app.set_faults([{"path": f"/{TENANT}/*", "status": 403, "body": "html", "times": None}])
    with live_client(app) as client, pytest.raises(IPBlockedError):
        BY_KEY["external_oms"].read(client)
    assert len(api_requests(app)) == 1


def test_the_token_request_keeps_the_environments_timeout(app: SandboxApp) -> None:
    """A token endpoint that does not answer is a timeout like any other call's, not a wait
    without end: the token request carries connection.timeout too."""
    path = f"/auth/realms/{TENANT}/protocol/openid-connect/token"
    app.set_faults([{"method": "POST", "path": path, "latency_ms": 1500, "times": None}])
    with (
        live_client(app, timeout=0.2, retry_attempts=2, retry_max_seconds=5) as client,
        pytest.raises(NewStoreError) as raised,
    ):
        BY_KEY["external_oms"].read(client)
    assert "no answer within the timeout" in str(raised.value)
    assert client.token_requests == 0
