"""No secret ever shows up in an error, its chain, a log line or output, whatever fails.

Every error path of the client and the settings runs with distinctive secrets: the client
secret, the webhook api_key, and the access tokens the sandbox actually issued. Where NewStore
itself echoes a secret back in an error message, it must be scrubbed before we show it.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from client_helpers import (
    TENANT,
    WEBHOOK,
    RecordingTransport,
    closed_port,
    make_app,
    make_client,
    make_env,
)

from reconciler.errors import (
    AuthError,
    BlockedError,
    ConflictError,
    IPBlockedError,
    ReconcilerError,
    RejectedError,
    RetryBudgetExhausted,
    UnreachableError,
)
from reconciler.model import WebhookProbe
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.probe import probe_webhook
from reconciler.newstore.settings import BY_KEY, REGISTRY
from reconciler.sandbox.app import WEBHOOK_PATH, SandboxApp

CLIENT_SECRET = "CLIENT-SECRET-leaktest-7f3a9c"
WRONG_SECRET = "WRONG-SECRET-leaktest-55aa01"
API_KEY = "WEBHOOK-KEY-leaktest-0b8e41d2c6"
LIVE_KEY = "LIVE-WEBHOOK-KEY-leaktest-93d1f0"  # what NewStore holds, read in clear by a GET
HOOK = {**WEBHOOK, "api_key": API_KEY}
PROBE = WebhookProbe(products=("1000061",), fulfillment_locations=("US01",))

OMS = f"/{TENANT}/v0/config/sales_order/external_oms"
HOOK_PATH = f"/{TENANT}/v0/config/availability/webhook"
ATP = f"/{TENANT}/v0/config/routing/uses_external_atp"
TOKEN = f"/auth/realms/{TENANT}/protocol/openid-connect/token"
PROBE_URL = f"http://127.0.0.1{WEBHOOK_PATH}"


@pytest.fixture
def app() -> SandboxApp:
    return make_app(client_secret=CLIENT_SECRET, webhook_api_key=API_KEY)


def client_for(app: SandboxApp, secret: str = CLIENT_SECRET, **env: Any) -> NewStoreClient:
    return make_client(app, make_env(client_secret=secret, retry_attempts=2, **env))


def issued_tokens(app: SandboxApp) -> list[str]:
    return list(app._tokens)


def first_token(app: SandboxApp, client: NewStoreClient) -> str:
    BY_KEY["external_atp"].read(client)
    (token,) = issued_tokens(app)
    return token


# -- the error paths: each returns the error it provoked ---------------------------------------


def wrong_client_secret(app: SandboxApp) -> ReconcilerError:
    with client_for(app, WRONG_SECRET) as client, pytest.raises(AuthError) as caught:
        BY_KEY["external_oms"].read(client)
    return caught.value


def token_endpoint_echoes_the_secret(app: SandboxApp) -> ReconcilerError:
    message = f"bad client_secret={CLIENT_SECRET}"
    app.set_faults([{"path": TOKEN, "status": 401, "message": message}])
    with client_for(app) as client, pytest.raises(AuthError) as caught:
        BY_KEY["external_oms"].read(client)
    return caught.value


def token_endpoint_down(app: SandboxApp) -> ReconcilerError:
    message = f"upstream said {CLIENT_SECRET}"
    app.set_faults([{"path": TOKEN, "status": 503, "message": message, "times": None}])
    with client_for(app) as client, pytest.raises(RetryBudgetExhausted) as caught:
        BY_KEY["external_oms"].read(client)
    return caught.value


def token_refused_twice(app: SandboxApp) -> ReconcilerError:
    with client_for(app) as client:
        token = first_token(app, client)
        message = f"token {token} is not valid"
        app.set_faults([{"path": ATP, "status": 401, "message": message, "times": 2}])
        with pytest.raises(AuthError) as caught:
            BY_KEY["external_atp"].read(client)
    return caught.value


def ip_blocked(app: SandboxApp) -> ReconcilerError:
    app.set_faults([{"path": OMS, "status": 403, "body": "html"}])
    with client_for(app) as client, pytest.raises(IPBlockedError) as caught:
        BY_KEY["external_oms"].read(client)
    return caught.value


def server_echoes_the_token(app: SandboxApp) -> ReconcilerError:
    with client_for(app) as client:
        token = first_token(app, client)
        message = f"Authorization: Bearer {token}"
        app.set_faults([{"path": OMS, "status": 503, "message": message, "times": None}])
        with pytest.raises(RetryBudgetExhausted) as caught:
            BY_KEY["external_oms"].write(client, {"enabled": True})
    return caught.value


def webhook_put_echoes_the_api_key(app: SandboxApp) -> ReconcilerError:
    message = f"api_key {API_KEY} is not accepted"
    app.set_faults([{"path": HOOK_PATH, "method": "PUT", "status": 400, "message": message}])
    with client_for(app) as client, pytest.raises(RejectedError) as caught:
        BY_KEY["availability_webhook"].write(client, dict(HOOK))
    return caught.value


def webhook_put_echoes_the_live_key_it_replaces(app: SandboxApp) -> ReconcilerError:
    app.seed(TENANT, {"availability_webhook": {**HOOK, "api_key": LIVE_KEY}})
    message = f"api_key {LIVE_KEY} is still in use by another integration"
    app.set_faults([{"path": HOOK_PATH, "method": "PUT", "status": 400, "message": message}])
    with client_for(app) as client:
        assert BY_KEY["availability_webhook"].read(client)["api_key"] == LIVE_KEY
        with pytest.raises(RejectedError) as caught:
            BY_KEY["availability_webhook"].write(client, dict(HOOK))
    assert "is still in use" in str(caught.value)  # NewStore's words are kept, the key is not
    return caught.value


def webhook_put_invalid(app: SandboxApp) -> ReconcilerError:
    with client_for(app) as client, pytest.raises(RejectedError) as caught:
        BY_KEY["availability_webhook"].write(client, {**HOOK, "timeout": 999})
    return caught.value


def webhook_put_keeps_dropping(app: SandboxApp) -> ReconcilerError:
    app.set_faults([{"path": HOOK_PATH, "drop_connection": True, "times": None}])
    with client_for(app) as client, pytest.raises(RetryBudgetExhausted) as caught:
        BY_KEY["availability_webhook"].write(client, dict(HOOK))
    return caught.value


def webhook_put_conflicts(app: SandboxApp) -> ReconcilerError:
    message = f"conflict for key {API_KEY}"
    # Every time: since issue 13 a single 409 on the PUT is re-read and retried.
    app.set_faults([{"path": HOOK_PATH, "status": 409, "message": message, "times": None}])
    with client_for(app) as client, pytest.raises(ConflictError) as caught:
        BY_KEY["availability_webhook"].write(client, dict(HOOK))
    return caught.value


def oms_conflicts_forever(app: SandboxApp) -> ReconcilerError:
    message = f"concurrent update {CLIENT_SECRET}"
    app.set_faults(
        [{"path": OMS, "method": "POST", "status": 409, "message": message, "times": None}]
    )
    with client_for(app) as client, pytest.raises(ConflictError) as caught:
        BY_KEY["external_oms"].write(client, {"enabled": True})
    return caught.value


def redirect_carrying_the_token(app: SandboxApp) -> ReconcilerError:
    from werkzeug.wrappers import Response

    holder: dict[str, str] = {}

    def wsgi(environ: Any, start_response: Any) -> Any:
        if environ["PATH_INFO"] == ATP and holder:
            location = f"https://elsewhere.example/?token={holder['token']}&key={API_KEY}"
            return Response(status=302, headers={"Location": location})(environ, start_response)
        return app(environ, start_response)

    import httpx

    transport = RecordingTransport(httpx.WSGITransport(app=wsgi))
    env = make_env(client_secret=CLIENT_SECRET)
    with make_client(app, env, transport=transport) as client:
        BY_KEY["external_oms"].read(client)
        holder["token"] = issued_tokens(app)[0]
        with pytest.raises(RejectedError) as caught:
            BY_KEY["external_atp"].read(client)
    return caught.value


def connection_refused(app: SandboxApp) -> ReconcilerError:
    env = make_env(f"http://127.0.0.1:{closed_port()}", client_secret=CLIENT_SECRET)
    env = dataclasses.replace(env, connection=dataclasses.replace(env.connection, retry_attempts=2))
    with NewStoreClient(env, backoff=0.01) as client, pytest.raises(UnreachableError) as caught:
        BY_KEY["availability_webhook"].write(client, dict(HOOK))
    return caught.value


def probe_refused(app: SandboxApp) -> ReconcilerError:
    message = f"key {API_KEY} refused"
    app.set_faults([{"path": WEBHOOK_PATH, "status": 401, "message": message}])
    with pytest.raises(BlockedError) as caught:
        probe_webhook(
            f"http://127.0.0.1{WEBHOOK_PATH}", API_KEY, PROBE, 5, transport=app.transport()
        )
    return caught.value


def probe_wrong_key(app: SandboxApp) -> ReconcilerError:
    with pytest.raises(BlockedError) as caught:
        probe_webhook(PROBE_URL, CLIENT_SECRET, PROBE, 5, transport=app.transport())
    return caught.value


def probe_invalid_body(app: SandboxApp) -> ReconcilerError:
    app.set_faults([{"path": WEBHOOK_PATH, "status": 200, "message": API_KEY}])
    with pytest.raises(BlockedError) as caught:
        probe_webhook(
            f"http://127.0.0.1{WEBHOOK_PATH}", API_KEY, PROBE, 5, transport=app.transport()
        )
    return caught.value


def probe_unreachable(app: SandboxApp) -> ReconcilerError:
    with pytest.raises(BlockedError) as caught:
        probe_webhook(f"http://127.0.0.1:{closed_port()}/hook", API_KEY, PROBE, 2)
    return caught.value


PATHS: list[Callable[[SandboxApp], ReconcilerError]] = [
    wrong_client_secret,
    token_endpoint_echoes_the_secret,
    token_endpoint_down,
    token_refused_twice,
    ip_blocked,
    server_echoes_the_token,
    webhook_put_echoes_the_api_key,
    webhook_put_echoes_the_live_key_it_replaces,
    webhook_put_invalid,
    webhook_put_keeps_dropping,
    webhook_put_conflicts,
    oms_conflicts_forever,
    redirect_carrying_the_token,
    connection_refused,
    probe_refused,
    probe_wrong_key,
    probe_invalid_body,
    probe_unreachable,
]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def _texts(exc: BaseException) -> Iterator[str]:
    for link in _chain(exc):
        yield str(link)
        yield repr(link)
        yield from (repr(arg) for arg in link.args)
        yield repr(vars(link))
    yield "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("provoke", PATHS, ids=[p.__name__ for p in PATHS])
def test_no_secret_in_any_error_path(
    app: SandboxApp,
    provoke: Callable[[SandboxApp], ReconcilerError],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    exc = provoke(app)
    out, err = capsys.readouterr()

    secrets = [CLIENT_SECRET, WRONG_SECRET, API_KEY, LIVE_KEY, *issued_tokens(app)]
    texts = [*_texts(exc), caplog.text, out, err]
    texts += [repr(record.args) for record in caplog.records]
    for secret in secrets:
        for text in texts:
            assert secret not in text
    assert str(exc)  # a message was produced at all


def test_no_secret_in_logs_of_a_successful_run(
    app: SandboxApp, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with client_for(app) as client:
        for setting in REGISTRY:
            setting.read(client)
        BY_KEY["availability_webhook"].write(client, dict(HOOK))
        assert BY_KEY["availability_webhook"].read(client)["api_key"] == API_KEY
        BY_KEY["external_oms"].write(client, {"enabled": True})
        BY_KEY["availability_webhook"].delete(client)
        texts = [repr(client), repr(client.env), repr(client.env.connection)]
    probe_webhook(PROBE_URL, API_KEY, PROBE, 5, transport=app.transport())
    out, err = capsys.readouterr()

    assert "→ 200" in caplog.text  # the HTTP log ran at all
    texts += [caplog.text, out, err]
    for secret in [CLIENT_SECRET, API_KEY, *issued_tokens(app)]:
        for text in texts:
            assert secret not in text
