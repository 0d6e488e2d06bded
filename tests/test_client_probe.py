"""The webhook-probe gate against the sandbox's sample availability webhook."""

from __future__ import annotations

import pytest
from client_helpers import API_KEY, closed_port, make_app

from reconciler.errors import BlockedError
from reconciler.model import WebhookProbe
from reconciler.newstore.probe import probe_webhook
from reconciler.sandbox.app import WEBHOOK_PATH, SandboxApp
from reconciler.sandbox.server import running

PROBE = WebhookProbe(products=("1000061", "10000211"), fulfillment_locations=("US01",))
URL = f"http://127.0.0.1{WEBHOOK_PATH}"


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


def test_a_healthy_webhook_passes(app: SandboxApp) -> None:
    summary = probe_webhook(URL, API_KEY, PROBE, 5, transport=app.transport())
    assert summary.startswith("200 in ")
    assert summary.endswith(" ms, 2 availabilities")
    assert app.webhook_requests() == [
        {"seq": 1, "method": "POST", "path": WEBHOOK_PATH, "status": 200}
    ]


def test_a_refused_api_key_blocks(app: SandboxApp) -> None:
    wrong = "not-the-webhook-api-key-0000"
    with pytest.raises(BlockedError) as caught:
        probe_webhook(URL, wrong, PROBE, 5, transport=app.transport())
    message = str(caught.value)
    assert f"webhook probe to {URL}: answered 401, expected 200" in message
    assert "refused the api_key" in message
    assert wrong not in message
    assert caught.value.exit_code == 3
    assert len(app.webhook_requests()) == 1  # a health check: no retries


def test_an_invalid_body_blocks(app: SandboxApp) -> None:
    # A 200 whose body is a problem document, not {"availabilities": [...]}.
    app.set_faults([{"path": WEBHOOK_PATH, "status": 200}])
    with pytest.raises(BlockedError) as caught:
        probe_webhook(URL, API_KEY, PROBE, 5, transport=app.transport())
    assert "invalid answer body: missing the `availabilities` list" in str(caught.value)


def test_a_server_error_blocks(app: SandboxApp) -> None:
    app.set_faults([{"path": WEBHOOK_PATH, "status": 503}])
    with pytest.raises(BlockedError) as caught:
        probe_webhook(URL, API_KEY, PROBE, 5, transport=app.transport())
    assert "answered 503, expected 200" in str(caught.value)


def test_a_slow_webhook_blocks_over_a_socket(app: SandboxApp) -> None:
    app.set_faults([{"path": WEBHOOK_PATH, "latency_ms": 800}])
    with running(app) as base, pytest.raises(BlockedError) as caught:
        probe_webhook(base + WEBHOOK_PATH, API_KEY, PROBE, 0.2)
    assert "no answer within 0.2 s" in str(caught.value)
    assert "every item as unavailable" in str(caught.value)


def test_a_slow_webhook_blocks_in_process(app: SandboxApp) -> None:
    # No socket, so no read timeout fires: the total time is checked after the answer.
    app.set_faults([{"path": WEBHOOK_PATH, "latency_ms": 300}])
    with pytest.raises(BlockedError) as caught:
        probe_webhook(URL, API_KEY, PROBE, 0.1, transport=app.transport())
    assert "beyond the 0.1 s timeout" in str(caught.value)


def test_a_healthy_webhook_passes_over_a_socket(app: SandboxApp) -> None:
    with running(app) as base:
        summary = probe_webhook(base + WEBHOOK_PATH, API_KEY, PROBE, 5)
    assert summary.endswith("2 availabilities")


def test_an_unreachable_webhook_blocks() -> None:
    with pytest.raises(BlockedError) as caught:
        probe_webhook(f"http://127.0.0.1:{closed_port()}/x", API_KEY, PROBE, 2)
    assert "could not connect" in str(caught.value)
