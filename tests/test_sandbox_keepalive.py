"""The sandbox over 127.0.0.1 keeps connections alive, as NewStore does, without mixing requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.server import bind

TENANT = "acme-staging"
OMS = f"/{TENANT}/v0/config/sales_order/external_oms"
ATP = f"/{TENANT}/v0/config/routing/uses_external_atp"
HOOK = f"/{TENANT}/v0/config/availability/webhook"
TOKEN = f"/auth/realms/{TENANT}/protocol/openid-connect/token"
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "sandbox",
    "client_secret": "sandbox-secret",
}
HOOK_BODY = {
    "url": "https://atp.acme.example/availabilities",
    "api_key": "a-webhook-key-of-20-chars",
    "external_identifier": "product_id",
    "timeout": 15,
}
ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


def _local_port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried `response`."""
    port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


def test_every_kind_of_answer_keeps_the_connection(live_sandbox: tuple[SandboxApp, str]) -> None:
    sandbox, base_url = live_sandbox
    sandbox.set_faults([{"method": "GET", "path": ATP, "status": 503, "body": "html", "times": 1}])
    with httpx.Client(base_url=base_url, limits=ONE_CONNECTION, timeout=10) as client:
        token = client.post(TOKEN, data=CREDENTIALS)
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        responses = [
            token,
            # Refused before its body is read: the rest of the body must not become the next
            # request's first line.
            client.post(OMS, json={"value": {"enabled": True}}),
            client.post(OMS, json={"value": {"enabled": True}}, headers=bearer),
            client.get(OMS, headers=bearer),
            client.get(HOOK, headers=bearer),  # 204: nothing configured
            client.put(HOOK, json=HOOK_BODY, headers=bearer),
            client.get(ATP, headers=bearer),  # the fault rule's non-JSON 503
            client.get(f"/{TENANT}/no/such/endpoint", headers=bearer),
            client.get(f"/_sandbox/tenants/{TENANT}/state"),
        ]
        ports = {_local_port(r) for r in responses}
    assert [r.status_code for r in responses] == [200, 401, 200, 200, 204, 200, 503, 404, 200]
    assert len(ports) == 1
    for response in responses:
        assert "close" not in response.headers.get("connection", "")
        if response.status_code != 204:
            assert int(response.headers["content-length"]) == len(response.content)
    assert sandbox.state(TENANT)["external_oms"] == {"enabled": True}
    assert sandbox.state(TENANT)["availability_webhook"]["url"] == HOOK_BODY["url"]


def test_an_oversized_body_is_refused_and_its_connection_closed(
    live_sandbox: tuple[SandboxApp, str],
) -> None:
    _, base_url = live_sandbox
    with httpx.Client(base_url=base_url, limits=ONE_CONNECTION, timeout=10) as client:
        token = client.post(TOKEN, data=CREDENTIALS)
        first_port = _local_port(token)
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        refused = client.post(OMS, content=b"x" * (2 * 1024 * 1024), headers=bearer)
        after = client.get(OMS, headers=bearer)
        after_port = _local_port(after)
    assert refused.status_code == 413
    assert refused.headers["connection"] == "close"
    assert after.status_code == 200
    assert after_port != first_port


def test_stopping_the_server_closes_its_idle_connections() -> None:
    first = SandboxApp(SandboxConfig())
    with httpx.Client(limits=ONE_CONNECTION, timeout=10) as client:
        with running(first) as base_url:
            assert client.post(base_url + TOKEN, data=CREDENTIALS).status_code == 200
        # The pooled connection was closed with the server: the client cannot reach the
        # stopped server's app through it.
        with pytest.raises(httpx.ConnectError):
            client.post(base_url + TOKEN, data=CREDENTIALS)
    assert len(first.requests(TENANT)) == 1


def _serving_threads(sandbox: SandboxApp) -> list[str]:
    """Records the name of the thread serving each request (threads are named uniquely)."""
    names: list[str] = []
    sandbox.before_request = lambda request: names.append(threading.current_thread().name)
    return names


def test_a_handler_thread_serves_one_connection_after_another() -> None:
    sandbox = SandboxApp(SandboxConfig())
    names = _serving_threads(sandbox)
    server = bind(sandbox)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    try:
        base_url = f"http://127.0.0.1:{server.port}"
        for _ in range(10):
            with httpx.Client(base_url=base_url, timeout=10) as client:
                assert client.get(f"/_sandbox/tenants/{TENANT}/state").status_code == 200
            # The next connection comes once this one's thread is idle again.
            _wait_until(lambda: server._idle == 1)  # type: ignore[attr-defined]
        (idle,) = [t for t in threading.enumerate() if t.name in names]
    finally:
        server.shutdown()
        serving.join()
        server.server_close()
    assert len(names) == 10
    assert len(set(names)) == 1
    idle.join(timeout=30)  # closing the server ended it, without its 60 s wait
    assert not idle.is_alive()


def test_connections_at_once_each_get_a_thread(live_sandbox: tuple[SandboxApp, str]) -> None:
    sandbox, base_url = live_sandbox
    names = _serving_threads(sandbox)
    clients = [httpx.Client(base_url=base_url, timeout=10) for _ in range(4)]
    try:
        for _ in range(3):  # four connections open at once, each kept alive
            for client in clients:
                assert client.get(f"/_sandbox/tenants/{TENANT}/state").status_code == 200
    finally:
        for client in clients:
            client.close()
    assert len(set(names)) == 4
    # Each connection kept its own thread: request k of every client on a different one.
    assert [len(set(names[i : i + 4])) for i in range(0, 12, 4)] == [4, 4, 4]


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)
