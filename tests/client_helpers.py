"""Environments, clients and sandboxes for the client and settings tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from reconciler.model import Connection, Environment
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.sandbox.app import SandboxApp, SandboxConfig
from reconciler.sandbox.server import running

TENANT = "acme"
IN_PROCESS = "http://127.0.0.1"
API_KEY = "sandbox-webhook-api-key-0001"
WEBHOOK = {
    "url": "https://atp.acme.example/availabilities",
    "api_key": "atp-key-aaaaaaaaaaaaaaaaaaaaaaaa",
    "external_identifier": "product_id",
    "timeout": 15,
}


def make_app(**config: Any) -> SandboxApp:
    return SandboxApp(SandboxConfig(**config))


def make_env(
    server: str = IN_PROCESS,
    tenant: str = TENANT,
    *,
    client_id: str = "sandbox",
    client_secret: str = "sandbox-secret",
    timeout: float = 5.0,
    retry_attempts: int = 5,
    retry_max_seconds: float = 20.0,
) -> Environment:
    return Environment(
        name=f"{tenant}-test",
        file=f"environments/{tenant}-test.yaml",
        tenant=tenant,
        connection=Connection(
            base_url=f"{server}/{tenant}",
            token_url=f"{server}/auth/realms/{tenant}/protocol/openid-connect/token",
            client_id=client_id,
            client_secret=client_secret,
            timeout=timeout,
            retry_attempts=retry_attempts,
            retry_max_seconds=retry_max_seconds,
        ),
        desired={},
    )


def make_client(
    app: SandboxApp,
    env: Environment | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    limiter: HostLimiter | None = None,
) -> NewStoreClient:
    """An in-process client with its own limiter (a 429 in one test never pauses another)."""
    return NewStoreClient(
        env or make_env(),
        transport=transport or app.transport(),
        limiter=limiter or HostLimiter(),
        backoff=0.01,
    )


@contextmanager
def live_client(app: SandboxApp, **env: Any) -> Iterator[NewStoreClient]:
    """A client talking to the sandbox over a real socket on 127.0.0.1."""
    with (
        running(app) as base_url,
        NewStoreClient(make_env(base_url, **env), limiter=HostLimiter(), backoff=0.01) as client,
    ):
        yield client


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def api_requests(app: SandboxApp, tenant: str = TENANT) -> list[tuple[str, str, int]]:
    """(method, path, status) of every API request the tenant received (token requests not)."""
    return [
        (r["method"], r["path"], r["status"])
        for r in app.requests(tenant)
        if not r["path"].startswith("/auth/")
    ]


def token_requests(app: SandboxApp, tenant: str = TENANT) -> int:
    return sum(1 for r in app.requests(tenant) if r["path"].startswith("/auth/"))


class RecordingTransport(httpx.BaseTransport):
    """Passes requests on, noting each one's URL and the most requests in flight at once."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.urls: list[httpx.URL] = []
        self.authorized: list[bool] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.urls.append(request.url)
            self.authorized.append("authorization" in request.headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = self.inner.handle_request(request)
            response.read()
            return response
        finally:
            with self._lock:
                self.in_flight -= 1


# --------------------------------------------------------------------------------------------
# raw HTTP servers: scripted bytes on a socket

Handler = Callable[[socket.socket, int], None]
"""Serves one accepted connection; the int counts the connections accepted before it."""


@contextmanager
def raw_server(handler: Handler) -> Iterator[tuple[str, list[int]]]:
    """A listener on 127.0.0.1 running `handler` per connection; yields (base URL, the list
    of accepted connections' numbers)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[int] = []
    conns: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            number = len(accepted)
            accepted.append(number)
            conns.append(conn)
            threading.Thread(target=_run, args=(handler, conn, number), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        stop.set()
        thread.join()
        for conn in conns:  # a handler still waiting on its client is let go
            conn.close()
        listener.close()


def _run(handler: Handler, conn: socket.socket, number: int) -> None:
    try:
        handler(conn, number)
    except OSError:
        pass
    finally:
        conn.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data
