"""Transport security: TLS is verified by default, redirects are never followed, plain http is
refused off this machine, and the access token only ever goes to the environment's own API
origin (never to the token endpoint, a webhook, or a host a redirect names).

The servers are local: the sandbox behind a WSGI wrapper that records every request's headers
(served over HTTPS with a self-signed certificate where TLS is the point), and small servers
that answer with redirects. Assertions are on what each server *received*.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import OFF, seed
from click.testing import Result
from werkzeug.serving import make_server

from reconciler.errors import ConfigError
from reconciler.model import Connection, Environment
from reconciler.newstore.client import NewStoreClient
from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.state import default_associate_app_config
from reliability.cli_run import assert_clear_error, invoke
from reliability.servers import Answer, Certificate, Seen, json_answer, self_signed, serve
from reliability.summary import count

SECRETS = {
    "SANDBOX_CLIENT_SECRET": "sandbox-secret",
    "ATP_KEY": DEFAULT_WEBHOOK_API_KEY,
    "ORDER_KEY": "transport-order-webhook-key-01",
}


@dataclass
class Received:
    """What one listening port received: (method, path, Authorization header or None)."""

    url: str
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bearers(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(m, p) for m, p, auth in self.requests if auth and auth.startswith("Bearer")]

    def all(self) -> list[tuple[str, str, str | None]]:
        with self.lock:
            return list(self.requests)


@contextmanager
def serve_sandbox(app: SandboxApp, tls: ssl.SSLContext | None = None) -> Iterator[Received]:
    """`app` on its own 127.0.0.1 port (HTTPS with `tls`), recording every request's headers.
    Serving one app on several ports gives several origins that share one NewStore."""
    received: Received

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        with received.lock:
            received.requests.append(
                (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("HTTP_AUTHORIZATION"))
            )
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, wsgi, threaded=True, ssl_context=tls)
    received = Received(f"{'https' if tls else 'http'}://127.0.0.1:{server.port}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def write_env(
    directory: Path,
    tenant: str,
    api: str,
    *,
    token: str | None = None,
    hook: str | None = None,
    extra_connection: str = "",
) -> Path:
    """An environment turning everything on, `api` as base_url host, `token` the token_url's."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{tenant}.yaml"
    path.write_text(
        f"""\
tenant: {tenant}
connection:
  base_url: {api}/{tenant}
  token_url: {token or api}/auth/realms/{tenant}/protocol/openid-connect/token
  client_id: sandbox
  client_secret: ${{SANDBOX_CLIENT_SECRET}}
  timeout: 3
  retry:
    attempts: 2
    max_seconds: 2
{extra_connection}external_oms:
  enabled: true
availability_webhook:
  url: {hook or api}{WEBHOOK_PATH}
  api_key: ${{ATP_KEY}}
  timeout: 5
external_atp:
  enabled: true
external_order_webhook:
  url: https://oms.acme.example/newstore
  api_key: ${{ORDER_KEY}}
associate_app:
  use_new_om_ui: true
gates:
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
"""
    )
    return path


def run(directory: Path, *args: str, **env: str) -> Result:
    return invoke(directory, *args, env={**SECRETS, **env})


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def app() -> SandboxApp:
    app = SandboxApp(SandboxConfig())
    seed(app, "tls", OFF)
    return app


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # journals
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


# --- TLS ---------------------------------------------------------------------------------------


def test_a_self_signed_certificate_is_refused_by_default(
    app: SandboxApp, cert: Certificate, tmp_path: Path
) -> None:
    with serve_sandbox(app, cert.server_context()) as server:
        directory = tmp_path / "environments"
        write_env(directory, "tls", server.url)
        for args in (("plan",), ("apply", "--auto-approve"), ("drift",), ("dump", "tls")):
            result = run(directory, *args)
            assert_clear_error(result, names=["tls"])
            assert "TLS certificate verification failed" in result.stderr, result.stderr
        assert server.all() == [], "not one request got through the handshake"
    assert app.history("tls") == []
    count("transport security", "untrusted TLS refused (commands)", 4)


@pytest.mark.parametrize("how", ["ca_bundle", "SSL_CERT_FILE"])
def test_a_trusted_certificate_is_accepted(
    app: SandboxApp, cert: Certificate, tmp_path: Path, how: str
) -> None:
    with serve_sandbox(app, cert.server_context()) as server:
        directory = tmp_path / "environments"
        if how == "ca_bundle":
            write_env(directory, "tls", server.url, extra_connection=f"  ca_bundle: {cert.cert}\n")
            env = {}
        else:
            write_env(directory, "tls", server.url)
            env = {"SSL_CERT_FILE": str(cert.cert)}
        result = run(directory, "apply", "--auto-approve", **env)
        assert result.exit_code == 0, result.output
        # The probe went to the webhook over the same TLS, trusting the same certificate.
        assert ("POST", WEBHOOK_PATH, DEFAULT_WEBHOOK_API_KEY) in server.all()
        assert run(directory, "plan", "--detailed-exitcode", **env).exit_code == 0
    count("transport security", "trusted TLS accepted (ca_bundle, SSL_CERT_FILE)")


def test_a_trusted_certificate_for_another_host_is_refused(app: SandboxApp, tmp_path: Path) -> None:
    wrong = self_signed(tmp_path, "elsewhere", hosts=("only-other.example",))
    with serve_sandbox(app, wrong.server_context()) as server:
        directory = tmp_path / "environments"
        write_env(directory, "tls", server.url, extra_connection=f"  ca_bundle: {wrong.cert}\n")
        result = run(directory, "plan")
        assert_clear_error(result, names=["tls"])
        assert "TLS certificate verification failed" in result.stderr
        assert server.all() == []
    count("transport security", "certificate for another host refused")


def test_the_webhook_probe_verifies_tls_too(
    app: SandboxApp, cert: Certificate, tmp_path: Path
) -> None:
    with serve_sandbox(app) as api, serve_sandbox(app, cert.server_context()) as hook:
        directory = tmp_path / "environments"
        write_env(directory, "tls", api.url, hook=hook.url)
        result = run(directory, "apply", "--auto-approve")
        assert result.exit_code == 3, result.output
        assert "TLS certificate verification failed" in result.stderr
        assert hook.all() == []
    count("transport security", "untrusted TLS refused (webhook probe)")


# --- redirects ---------------------------------------------------------------------------------


class Redirecting:
    """A NewStore that hands out tokens, then answers `status` + Location: `target` to API
    calls (or to the token request itself, with `on_token`)."""

    def __init__(self, status: int, target: str, *, on_token: bool = False) -> None:
        self.status, self.target, self.on_token = status, target, on_token

    def __call__(self, seen: Seen) -> Answer:
        if seen.path.startswith("/auth/") and not self.on_token:
            return json_answer(200, '{"access_token": "tok-redirect-test", "expires_in": 600}')
        location = self.target + seen.path
        return Answer(self.status, (("Location", location),), b"")


def _nothing(seen: Seen) -> Answer:
    return json_answer(200, "{}")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("on_token", [False, True], ids=["api", "token endpoint"])
def test_redirects_are_not_followed(tmp_path: Path, status: int, on_token: bool) -> None:
    with serve(_nothing) as elsewhere:
        with serve(Redirecting(status, elsewhere.url, on_token=on_token)) as newstore:
            directory = tmp_path / "environments"
            write_env(directory, "redirect", newstore.url)
            for args in (("plan",), ("apply", "--auto-approve"), ("dump", "redirect")):
                result = run(directory, *args)
                assert_clear_error(result, names=["redirect"])
            assert newstore.seen(), "the redirecting host was asked"
        assert elsewhere.seen() == [], "nothing, token or secret, reached the other host"
    count("transport security", "redirects not followed (status x api/token x 3 commands)", 3)


class RedirectingWrites:
    """A NewStore that reads like a fresh tenant and answers every write 307 (which, followed,
    would resend the body, the webhook api_key included) towards `target`."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, seen: Seen) -> Answer:
        if seen.path.startswith("/auth/"):
            return json_answer(200, '{"access_token": "tok-redirect-test", "expires_in": 600}')
        if seen.method != "GET":
            return Answer(307, (("Location", self.target + seen.path),), b"")
        if seen.path.endswith("/webhook"):
            return Answer(204)
        if seen.path.endswith("/external_oms"):
            return json_answer(200, '{"value": {"enabled": false}, "updated_at": "2025-01-01"}')
        if seen.path.endswith("/uses_external_atp"):
            return json_answer(200, '{"value": false, "updated_at": null}')
        return json_answer(200, json.dumps(default_associate_app_config()))


def test_a_redirect_on_a_write_is_not_followed(tmp_path: Path) -> None:
    with serve(_nothing) as elsewhere:
        with serve(RedirectingWrites(elsewhere.url)) as newstore:
            directory = tmp_path / "environments"
            write_env(directory, "redirect", newstore.url, hook="http://127.0.0.1:9")
            result = run(directory, "apply", "--auto-approve")
            assert_clear_error(result, names=["redirect"])
            assert "redirected to 127.0.0.1; redirects are not followed" in result.stderr
            writes = [
                (s.method, s.path)
                for s in newstore.seen()
                if s.method != "GET" and not s.path.startswith("/auth/")
            ]
            assert writes == [("POST", "/redirect/v0/config/sales_order/external_oms")]
        assert elsewhere.seen() == []
    count("transport security", "redirect of a write not followed")


# --- plain http, and where the token goes --------------------------------------------------------

NOT_LOOPBACK = [
    "http://example.com",
    "http://10.0.0.1",
    "http://192.168.1.10:8765",
    "http://127.0.0.1.nip.io",
    "http://localhost.example",
    "http://[::ffff:127.0.0.1]",
    "http://0.0.0.0:8765",
]


@pytest.mark.parametrize("url", NOT_LOOPBACK)
@pytest.mark.parametrize("key", ["base_url", "token_url", "webhook url"])
def test_plain_http_is_refused_off_this_machine(tmp_path: Path, url: str, key: str) -> None:
    directory = tmp_path / "environments"
    loopback = "http://127.0.0.1:9"
    write_env(
        directory,
        "plain",
        url if key == "base_url" else loopback,
        token=url if key == "token_url" else loopback,
        hook=url if key == "webhook url" else loopback,
    )
    for args in (("validate",), ("plan",), ("apply", "--auto-approve")):
        result = run(directory, *args)
        assert_clear_error(result, names=[str(directory / "plain.yaml")])
        assert "must use https" in result.stderr, result.stderr
    count("transport security", "plain http off loopback refused (url x key x command)", 3)


@pytest.mark.parametrize("url", NOT_LOOPBACK)
def test_the_client_itself_refuses_plain_http(url: str) -> None:
    """Defence in depth, for an Environment built without the config loader."""
    env = Environment(
        name="plain",
        file="plain.yaml",
        tenant="plain",
        connection=Connection(f"{url}/plain", f"{url}/token", "sandbox", "sandbox-secret"),
        desired={},
    )
    with pytest.raises(ConfigError, match="must be https"):
        NewStoreClient(env)


def test_the_token_goes_only_to_the_api_origin(app: SandboxApp, tmp_path: Path) -> None:
    """Token endpoint, API and webhook on three origins of one sandbox: the bearer token is
    seen by the API origin only; the token endpoint gets the client credentials (its job) and
    the webhook its api_key, neither a bearer token."""
    with (
        serve_sandbox(app) as api,
        serve_sandbox(app) as identity,
        serve_sandbox(app) as webhook,
    ):
        directory = tmp_path / "environments"
        write_env(directory, "tls", api.url, token=identity.url, hook=webhook.url)
        for args in (("plan", "--probe"), ("apply", "--auto-approve"), ("drift",), ("dump", "tls")):
            result = run(directory, *args)
            assert result.exit_code in (0, 2), result.output
        assert api.bearers() and all(not p.startswith("/auth/") for _, p in api.bearers())
        assert {p for _, p, _ in identity.all()} == {
            "/auth/realms/tls/protocol/openid-connect/token"
        }
        assert [auth for _, _, auth in identity.all()] == [None] * len(identity.all())
        assert {(m, p, a) for m, p, a in webhook.all()} == {
            ("POST", WEBHOOK_PATH, DEFAULT_WEBHOOK_API_KEY)
        }
    count("transport security", "bearer token seen only by the API origin (4 commands)")
