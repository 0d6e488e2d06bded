"""Faults that end a request for good, and the one that ends a whole host for the run:
the IP-block circuit breaker, the retry time budget, and addresses where nothing answers."""

from __future__ import annotations

import httpx
import pytest
from client_helpers import (
    TENANT,
    api_requests,
    closed_port,
    make_app,
    make_client,
    make_env,
    token_requests,
)

from reconciler.errors import (
    HostBlockedError,
    IPBlockedError,
    RetryBudgetExhausted,
    UnreachableError,
)
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.settings import BY_KEY, SECRET_KEYS
from reconciler.sandbox.app import SandboxApp

ATP_PATH = f"/{TENANT}/v0/config/routing/uses_external_atp"
TOKEN_PATH = f"/auth/realms/{TENANT}/protocol/openid-connect/token"
EXTERNAL_ATP = BY_KEY["external_atp"]
EXTERNAL_OMS = BY_KEY["external_oms"]


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


@pytest.mark.parametrize("path", [ATP_PATH, TOKEN_PATH], ids=["api", "token endpoint"])
def test_an_ip_block_stops_every_client_of_the_host(app: SandboxApp, path: str) -> None:
    limiter = HostLimiter()
    app.set_faults([{"path": path, "status": 403, "body": "html", "times": None}])
    with make_client(app, limiter=limiter) as first, pytest.raises(IPBlockedError):
        EXTERNAL_ATP.read(first)
    assert limiter.blocked_at is not None
    sent = len(app.requests(TENANT))

    app.clear_faults()  # even once NewStore would answer again, this run sends nothing more
    with make_client(app, limiter=limiter) as second, pytest.raises(HostBlockedError) as caught:
        EXTERNAL_OMS.read(second)
    assert len(app.requests(TENANT)) == sent, "no request after the block"
    message = str(caught.value)
    assert f"blocked this IP at {limiter.blocked_at:%H:%M:%S} UTC" in message
    assert "ask NewStore support to lift it" in message
    assert second.blocked_at == limiter.blocked_at


def test_another_host_is_not_stopped_by_a_block(app: SandboxApp) -> None:
    blocked, other = HostLimiter(), HostLimiter()
    app.set_faults([{"path": ATP_PATH, "status": 403, "body": "html", "times": 1}])
    with make_client(app, limiter=blocked) as client, pytest.raises(IPBlockedError):
        EXTERNAL_ATP.read(client)
    with make_client(app, limiter=other) as client:
        assert EXTERNAL_ATP.read(client) == {"enabled": False}
    assert other.blocked_at is None


def test_the_time_budget_ends_retrying_before_the_attempts_do(app: SandboxApp) -> None:
    app.set_faults([{"path": ATP_PATH, "status": 503, "times": None}])
    env = make_env(retry_attempts=20, retry_max_seconds=0.3)
    client = NewStoreClient(
        env, transport=app.transport(), limiter=HostLimiter(), backoff=0.05, secret_keys=SECRET_KEYS
    )
    with client, pytest.raises(RetryBudgetExhausted) as caught:
        EXTERNAL_ATP.read(client)
    message = str(caught.value)
    assert "the 0.3 s retry budget (connection.retry.max_seconds) ran out" in message
    # 0.05, 0.1, 0.2 s (+ jitter) fill the budget long before 20 attempts.
    assert 2 <= len(api_requests(app)) < 20


def test_a_retry_after_within_the_budget_is_waited_out(app: SandboxApp) -> None:
    app.set_faults([{"path": ATP_PATH, "status": 429, "retry_after": 0, "times": 2}])
    with make_client(app, make_env(retry_max_seconds=5)) as client:
        assert EXTERNAL_ATP.read(client) == {"enabled": False}
    assert [s for _, _, s in api_requests(app)] == [429, 429, 200]


def test_a_refused_connection_is_tried_twice_and_names_host_port_and_fix() -> None:
    port = closed_port()
    env = make_env(f"http://127.0.0.1:{port}", retry_attempts=20)
    calls: list[httpx.Request] = []

    class Counting(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            calls.append(request)
            return super().handle_request(request)

    client = NewStoreClient(env, transport=Counting(), limiter=HostLimiter(), backoff=0.01)
    with client, pytest.raises(UnreachableError) as caught:
        EXTERNAL_ATP.read(client)
    assert len(calls) == 2, "the first attempt and one retry, not 20"
    message = str(caught.value)
    assert f"could not connect to 127.0.0.1:{port}: connection refused" in message
    # The token endpoint is the first thing asked for: its setting is named.
    assert "Check connection.token_url (host and port) and that the server is running." in message
    assert "run again later" not in message


def test_an_unknown_host_names_the_host_and_base_url() -> None:
    env = make_env("https://acme-typo.p.newstore.example")

    def unresolvable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    calls = 0

    def counted(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if request.url.path.startswith("/auth/"):
            return httpx.Response(200, json={"access_token": "t" * 20, "expires_in": 300})
        return unresolvable(request)

    client = NewStoreClient(
        env, transport=httpx.MockTransport(counted), limiter=HostLimiter(), backoff=0.01
    )
    with client, pytest.raises(UnreachableError) as caught:
        EXTERNAL_ATP.read(client)
    message = str(caught.value)
    assert "could not connect to acme-typo.p.newstore.example:443: unknown host" in message
    assert "Check the host name in connection.base_url" in message
    assert calls == 3, "one token request, two attempts at the API"


def test_a_token_block_counts_once(app: SandboxApp) -> None:
    limiter = HostLimiter()
    app.set_faults([{"path": TOKEN_PATH, "status": 403, "body": "html", "times": None}])
    with make_client(app, limiter=limiter) as client:
        for setting in (EXTERNAL_ATP, EXTERNAL_OMS):
            with pytest.raises(IPBlockedError):
                setting.read(client)
    assert token_requests(app) == 1
