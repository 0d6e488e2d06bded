"""Failures become one readable NewStoreError: NewStore's message, request id, where."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

import httpx
import pytest
from client_helpers import TENANT, RecordingTransport, make_app, make_client, make_env

from reconciler.errors import AuthError, ConfigError, RejectedError
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.settings import BY_KEY
from reconciler.sandbox.app import SandboxApp

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ATP = "/v0/config/routing/uses_external_atp"
WEBHOOK = "/v0/config/availability/webhook"


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


def test_messages_shape(app: SandboxApp) -> None:
    # {messages: [...], request_id}
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        client.request("external_atp", "POST", ATP, json={"value": "yes"})
    err = caught.value
    assert err.status == 400
    assert "boolean" in err.detail
    assert err.request_id == client.last_request_id
    assert str(err).startswith(f"[{TENANT}-test] external_atp: NewStore rejected the call (POST ")
    assert f"/{TENANT}{ATP} → 400)" in str(err)
    assert f"Request id: {err.request_id}." in str(err)


def test_error_code_and_message_shape(app: SandboxApp) -> None:
    # {error_code, message, request_id}
    body = {"url": "https://x.example/", "external_identifier": "product_id", "timeout": 15}
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        client.request("availability_webhook", "PUT", WEBHOOK, json=body)
    assert "Please provide api_key (bad_request)" in caught.value.detail
    assert "(bad_request)" in caught.value.detail
    assert caught.value.request_id


def test_message_only_shape(app: SandboxApp) -> None:
    # {message, request_id}
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        client.request("external_atp", "PATCH", ATP, json={"value": True})
    assert caught.value.status == 405
    assert caught.value.detail == f"PATCH is not allowed on /{TENANT}{ATP}"


def test_message_and_data_shape(app: SandboxApp) -> None:
    # {message, data}: the sample webhook's error shape, reached through the same client.
    env = make_env()
    connection = dataclasses.replace(env.connection, base_url="http://127.0.0.1/_sandbox")
    env = dataclasses.replace(env, connection=connection)
    with make_client(app, env) as client, pytest.raises(AuthError) as caught:
        client.request("probe", "POST", "/webhook/availabilities", json={"products": []})
    assert caught.value.status == 401
    assert caught.value.detail.startswith("The Authorization header does not hold")
    assert caught.value.detail.endswith("api key")  # the empty `data` adds nothing


def test_injected_message_and_code_pass_through(app: SandboxApp) -> None:
    path = f"/{TENANT}{ATP}"
    app.set_faults(
        [{"path": path, "status": 400, "error_code": "nope", "message": "Not today.", "times": 1}]
    )
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        BY_KEY["external_atp"].read(client)
    assert "NewStore said: Not today (nope)." in str(caught.value)


def _redirecting(app: SandboxApp, location: str) -> object:
    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"].endswith("uses_external_atp"):
            start_response("302 Found", [("Location", location), ("Content-Length", "0")])
            return [b""]
        return app(environ, start_response)

    return wsgi


def test_redirects_are_not_followed(app: SandboxApp) -> None:
    recording = RecordingTransport(
        httpx.WSGITransport(app=_redirecting(app, "https://elsewhere.example/steal"))  # type: ignore[arg-type]
    )
    with make_client(app, transport=recording) as client, pytest.raises(RejectedError) as caught:
        BY_KEY["external_atp"].read(client)

    assert "redirected to elsewhere.example" in str(caught.value)
    assert caught.value.status == 302
    assert {url.host for url in recording.urls} == {"127.0.0.1"}
    assert len(recording.urls) == 2  # the token, the API call; never the Location


def test_plain_http_is_refused_for_a_remote_host() -> None:
    env = make_env("http://acme.p.newstore.net")
    with pytest.raises(ConfigError) as caught:
        NewStoreClient(env)
    assert "connection.base_url must be https" in str(caught.value)
    assert env.file in str(caught.value)


@pytest.mark.parametrize(
    "host", ["http://localhost:8765", "http://127.0.0.2:8765", "http://[::1]:1"]
)
def test_plain_http_is_accepted_for_loopback(host: str) -> None:
    NewStoreClient(make_env(host)).close()


def test_a_missing_ca_bundle_is_a_config_error() -> None:
    env = make_env("https://acme.p.newstore.net")
    connection = dataclasses.replace(env.connection, ca_bundle="/nonexistent/ca.pem")
    with pytest.raises(ConfigError) as caught:
        NewStoreClient(dataclasses.replace(env, connection=connection))
    assert "/nonexistent/ca.pem" in str(caught.value)


def test_a_wrong_token_url_says_so(app: SandboxApp) -> None:
    env = make_env()
    connection = dataclasses.replace(env.connection, token_url="http://127.0.0.1/auth/token")
    client = make_client(app, dataclasses.replace(env, connection=connection))
    with client, pytest.raises(AuthError) as caught:
        BY_KEY["external_atp"].read(client)
    assert "there is no token endpoint at 127.0.0.1/auth/token" in str(caught.value)
    assert caught.value.environment == env.name


def test_a_non_json_success_body_is_rejected_clearly(app: SandboxApp) -> None:
    path = f"/{TENANT}{ATP}"
    app.set_faults([{"method": "GET", "path": path, "status": 200, "body": "html"}])
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        BY_KEY["external_atp"].read(client)
    assert "not JSON" in str(caught.value)
    assert caught.value.path == path
