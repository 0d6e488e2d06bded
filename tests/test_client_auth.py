"""OAuth2 client credentials against the sandbox: one token per client, refresh, refusals."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from client_helpers import TENANT, api_requests, make_app, make_client, make_env, token_requests

from reconciler.errors import AuthError, IPBlockedError
from reconciler.model import Value
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.settings import BY_KEY, REGISTRY
from reconciler.sandbox.app import SandboxApp

ATP_PATH = f"/{TENANT}/v0/config/routing/uses_external_atp"
TOKEN_PATH = f"/auth/realms/{TENANT}/protocol/openid-connect/token"


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


def test_one_token_serves_every_read_and_write_of_a_run(app: SandboxApp) -> None:
    with make_client(app) as client:
        for setting in REGISTRY:
            setting.read(client)
        BY_KEY["external_oms"].write(client, {"enabled": True})
        BY_KEY["external_atp"].write(client, {"enabled": False})
        for setting in REGISTRY:
            setting.read(client)

        assert client.token_requests == 1
    assert token_requests(app) == 1
    # One GET per setting, twice, and the two writes.
    assert len(api_requests(app)) == 2 * len(REGISTRY) + 2
    # 404: the external order webhook of a tenant that never set it.
    assert {status for _, _, status in api_requests(app)} == {200, 204, 404}


def test_each_client_fetches_its_own_token(app: SandboxApp) -> None:
    for _ in range(2):
        with make_client(app) as client:
            REGISTRY[2].read(client)
    assert token_requests(app) == 2


def test_a_token_is_renewed_before_it_expires() -> None:
    app = make_app(token_ttl=1)
    with make_client(app) as client:
        REGISTRY[2].read(client)
        time.sleep(1.0)  # past the renewal margin (10% of 1 s), not necessarily past expiry
        REGISTRY[2].read(client)

        assert client.token_requests == 2
    # Renewed ahead of time: NewStore never had to refuse an expired token.
    assert [status for _, _, status in api_requests(app)] == [200, 200]


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_fetched_again_once(app: SandboxApp, status: int) -> None:
    app.set_faults([{"method": "GET", "path": ATP_PATH, "status": status, "times": 1}])
    with make_client(app) as client:
        assert REGISTRY[2].read(client) == {"enabled": False}
        assert client.token_requests == 2
    assert api_requests(app) == [("GET", ATP_PATH, status), ("GET", ATP_PATH, 200)]


@pytest.mark.parametrize("status", [401, 403])
def test_a_token_refused_twice_is_an_auth_error(app: SandboxApp, status: int) -> None:
    app.set_faults([{"method": "GET", "path": ATP_PATH, "status": status, "times": 2}])
    with make_client(app) as client, pytest.raises(AuthError) as caught:
        REGISTRY[2].read(client)

    err = caught.value
    assert err.status == status
    assert err.setting == "external_atp"
    assert err.path == ATP_PATH
    assert err.request_id and err.request_id in str(err)
    assert "also after fetching a new one" in str(err)
    assert token_requests(app) == 2
    assert len(api_requests(app)) == 2


def test_a_non_json_403_is_the_ip_block_and_stops_at_once(app: SandboxApp) -> None:
    app.set_faults(
        [{"method": "GET", "path": ATP_PATH, "status": 403, "body": "html", "times": None}]
    )
    with make_client(app) as client, pytest.raises(IPBlockedError) as caught:
        REGISTRY[2].read(client)

    message = str(caught.value)
    assert "30,000 requests per 5 minutes" in message
    assert "Wait 5 minutes" in message
    assert "<html>" not in message
    assert api_requests(app) == [("GET", ATP_PATH, 403)]
    assert token_requests(app) == 1


def test_wrong_credentials_name_the_token_host_and_client_id_only(app: SandboxApp) -> None:
    env = make_env(client_id="reconciler-ci", client_secret="not-the-sandbox-secret")
    with make_client(app, env) as client, pytest.raises(AuthError) as caught:
        REGISTRY[0].read(client)

    message = str(caught.value)
    assert "the token endpoint 127.0.0.1 refused client id 'reconciler-ci'" in message
    assert "invalid_client" in message
    assert "not-the-sandbox-secret" not in message
    assert "Invalid client credentials" not in message  # the token endpoint's prose stays out
    assert caught.value.status == 401
    assert api_requests(app) == []


def test_a_struggling_token_endpoint_is_retried(app: SandboxApp) -> None:
    app.set_faults([{"method": "POST", "path": TOKEN_PATH, "status": 503, "times": 2}])
    with make_client(app) as client:
        assert REGISTRY[2].read(client) == {"enabled": False}
        assert client.token_requests == 1
    assert token_requests(app) == 3


def test_the_token_never_leaves_the_api_host(app: SandboxApp) -> None:
    from client_helpers import RecordingTransport

    recording = RecordingTransport(app.transport())
    with make_client(app, transport=recording) as client:
        for setting in REGISTRY:
            setting.read(client)

    hosts = {url.host for url in recording.urls}
    assert hosts == {"127.0.0.1"}
    # The token request itself carries no bearer token; every API request does.
    assert recording.authorized == [False] + [True] * len(REGISTRY)


def test_a_non_json_403_from_the_token_endpoint_is_the_ip_block(app: SandboxApp) -> None:
    app.set_faults([{"path": TOKEN_PATH, "status": 403, "body": "html", "times": None}])
    with make_client(app) as client, pytest.raises(IPBlockedError) as caught:
        REGISTRY[2].read(client)
    assert "Wait 5 minutes" in str(caught.value)
    assert token_requests(app) == 1
    assert api_requests(app) == []


def _read_side_by_side(client: NewStoreClient) -> list[Value]:
    """Every setting read at once on one client, as `read_live` does; a hang fails, not waits."""
    with ThreadPoolExecutor(max_workers=len(REGISTRY)) as pool:
        futures = [pool.submit(setting.read, client) for setting in REGISTRY]
        return [future.result(timeout=30) for future in futures]


@pytest.mark.parametrize(
    ("fault", "fetches"),
    [
        # A slow token endpoint: every read arrives while the first fetch is under way.
        ({"latency_ms": 200, "times": None}, 1),
        # The first fetch fails slowly while the others wait; one of them then fetches the
        # token everyone uses, the failed fetch's own retry included.
        ({"status": 503, "latency_ms": 200, "times": 1}, 2),
    ],
    ids=["slow", "first-fails"],
)
def test_reads_side_by_side_share_one_token(
    app: SandboxApp, fault: dict[str, Any], fetches: int
) -> None:
    app.set_faults([{"path": TOKEN_PATH, **fault}])
    with make_client(app) as client:
        values = _read_side_by_side(client)
        assert client.token_requests == 1
    assert values[2] == {"enabled": False}
    assert token_requests(app) == fetches
    assert len(api_requests(app)) == len(REGISTRY)
