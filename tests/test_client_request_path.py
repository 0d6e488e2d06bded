"""The client's lighter request path keeps what matters: a proxy named in the environment is
still used (over a real proxy on 127.0.0.1), a cookie a response sets is never sent back, and
requests go to exactly base_url + path."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.settings.external_oms import ExternalOMS
from reconciler.sandbox.app import SandboxApp
from reconciler.sandbox.server import running
from tests.client_helpers import TENANT, RecordingTransport, make_app, make_client, make_env


@contextmanager
def forward_proxy() -> Iterator[tuple[str, list[str]]]:
    """A plain-HTTP forward proxy on 127.0.0.1 that relays absolute-form requests and records
    each request line it relayed."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _relay(self) -> None:
            seen.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "proxy-connection", "connection", "content-length")
            }
            with httpx.Client(trust_env=False) as upstream:
                answer = upstream.request(self.command, self.path, headers=headers, content=body)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = do_DELETE = _relay

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_proxy_in_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    with running(app) as base, forward_proxy() as (proxy, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        env = make_env(base)
        with NewStoreClient(env, limiter=HostLimiter(), backoff=0.01) as client:
            assert ExternalOMS().read(client) == {"enabled": False}
    assert f"GET {base}/{TENANT}/v0/config/sales_order/external_oms" in seen
    assert any(line.startswith("POST ") and "/token" in line for line in seen)


def test_without_a_proxy_variable_nothing_goes_through_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = make_app()
    with running(app) as base, forward_proxy() as (_proxy, seen):
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        with NewStoreClient(make_env(base), limiter=HostLimiter(), backoff=0.01) as client:
            assert ExternalOMS().read(client) == {"enabled": False}
    assert seen == []


class SetsCookies(httpx.BaseTransport):
    """The sandbox, with a session cookie on every answer."""

    def __init__(self, app: SandboxApp) -> None:
        self.inner = RecordingTransport(app.transport())
        self.cookie_headers: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.cookie_headers.append(request.headers.get("cookie"))
        response = self.inner.handle_request(request)
        response.headers["Set-Cookie"] = "session=tracked; Path=/"
        return response


def test_a_cookie_a_response_sets_is_never_sent_back() -> None:
    app = make_app()
    transport = SetsCookies(app)
    with make_client(app, transport=transport) as client:
        for _ in range(3):
            assert ExternalOMS().read(client) == {"enabled": False}
    assert len(transport.cookie_headers) == 4  # the token, then three reads
    assert transport.cookie_headers == [None] * 4


def test_requests_go_to_base_url_plus_path() -> None:
    app = make_app()
    transport = RecordingTransport(app.transport())
    with make_client(app, transport=transport) as client:
        ExternalOMS().read(client)
        ExternalOMS().read(client)
    api = [str(u) for u in transport.urls if "/token" not in str(u)]
    assert api == [f"http://127.0.0.1/{TENANT}/v0/config/sales_order/external_oms"] * 2
