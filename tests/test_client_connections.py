"""Which connections the clients open, seen from the server (the sandbox on 127.0.0.1, each
request's client port): the token endpoint's shared by every environment of a run, each
environment's API its own; and an environment's reads, started once its token is in hand."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from typing import Any, cast

import httpx
import pytest
from client_helpers import TENANT, api_requests, make_app, make_env, token_requests

from reconciler.core.plan import Status, plan_environments
from reconciler.model import Environment
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.http import close_shared
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.settings import BY_KEY, REGISTRY
from reconciler.sandbox.app import SandboxApp
from reconciler.sandbox.server import running

TENANTS = ("acme", "bravo", "charlie")


class ClientPorts:
    """The sandbox, noting the client port of the connection that carried each request."""

    def __init__(self, app: SandboxApp) -> None:
        self.app = app
        self.seen: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            self.seen.append((environ["PATH_INFO"], int(environ["REMOTE_PORT"])))
        return cast(Iterable[bytes], self.app(environ, start_response))

    def ports(self, *, token: bool) -> set[int]:
        return {port for path, port in self.seen if ("/token" in path) == token}


def _env(base: str, tenant: str) -> Environment:
    """`tenant` on the sandbox at `base`, its token endpoint on another host name (localhost),
    as NewStore's identity host is another host than the tenant's."""
    env = make_env(base, tenant)
    token_url = env.connection.token_url.replace("127.0.0.1", "localhost")
    return dataclasses.replace(
        env, connection=dataclasses.replace(env.connection, token_url=token_url)
    )


@pytest.fixture(autouse=True)
def _fresh_shared_pool() -> Iterable[None]:
    close_shared()  # no connection left over from another test
    yield
    close_shared()


def test_environments_fetch_their_tokens_over_one_shared_connection() -> None:
    served = ClientPorts(make_app())
    with running(cast(SandboxApp, served)) as base:
        for tenant in TENANTS:
            env = _env(base, tenant)
            with NewStoreClient(env, limiter=HostLimiter(), backoff=0.01) as client:
                assert BY_KEY["external_oms"].read(client) == {"enabled": False}
                assert BY_KEY["external_atp"].read(client) == {"enabled": False}
    assert sum("/token" in path for path, _ in served.seen) == len(TENANTS)
    assert len(served.ports(token=True)) == 1, "one connection to the token host for all three"
    # Each environment's API connection is its own (reused for its second read), closed with
    # its client: three environments, three connections.
    assert len(served.ports(token=False)) == len(TENANTS)


def test_a_run_closes_the_connections_an_earlier_one_left_to_the_token_host() -> None:
    served = ClientPorts(make_app())
    with running(cast(SandboxApp, served)) as base:
        for _ in range(2):
            close_shared()  # what every run of the API and the CLI does first
            with NewStoreClient(_env(base, TENANT), limiter=HostLimiter()) as client:
                BY_KEY["external_oms"].read(client)
    assert len(served.ports(token=True)) == 2


def test_a_plan_reads_every_setting_after_one_token_request_without_waiting_twice() -> None:
    app = make_app()
    served = ClientPorts(app)
    with running(cast(SandboxApp, served)) as base:
        desired = {s.key: s.default for s in REGISTRY}
        env = dataclasses.replace(_env(base, TENANT), desired=desired)
        run = plan_environments([env])
    assert run.environments[0].status is not Status.ERROR, run.environments[0].error
    assert token_requests(app) == 1
    assert sorted(method for method, _, _ in api_requests(app)) == ["GET"] * len(REGISTRY)
    # The token first, then the GETs: no GET went out before the token's answer.
    assert "/token" in served.seen[0][0]


def test_a_refused_token_stops_an_environment_before_any_read() -> None:
    app = make_app()
    with running(app) as base:
        desired = {s.key: s.default for s in REGISTRY}
        env = dataclasses.replace(
            make_env(base, TENANT, client_secret="not-the-sandbox-secret"), desired=desired
        )
        run = plan_environments([env])
    plan = run.environments[0]
    assert plan.status is Status.ERROR
    assert "refused client id 'sandbox'" in (plan.error or "")
    # One refusal is enough: the other four reads are never started, so they do not each
    # ask the token endpoint again (they did, one after the other, when all five started
    # at once and four of them waited for the first one's token).
    assert token_requests(app) == 1
    assert api_requests(app) == []


def test_a_connection_goes_back_once_and_carries_one_request_at_a_time() -> None:
    """An answer's connection is back in the pool once its answer is in hand, whatever the
    caller then does with the answer (closing it twice once put the connection on the idle
    stack twice: two requests would then take it at once); it carries the next request, and
    two requests in flight at once go over two connections (the server holds both answers
    until both requests have arrived: on one connection the second would never arrive)."""
    from reconciler.newstore.pool import Transport
    from reconciler.newstore.transport import ssl_context

    app = make_app()
    both_in = threading.Barrier(2, timeout=30)
    holding = threading.Event()

    class Held(ClientPorts):
        def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if holding.is_set():
                both_in.wait()
            return super().__call__(environ, start_response)

    served = Held(app)
    with running(cast(SandboxApp, served)) as base, Transport(ssl_context(None)) as pool:
        url = f"{base}/_sandbox/tenants/{TENANT}/state"
        origin = ("http", "127.0.0.1", int(base.rsplit(":", 1)[1]))
        first = pool.handle_request(httpx.Request("GET", url))
        assert pool.idle(origin) == 1
        first.read()
        first.close()
        first.close()
        assert pool.idle(origin) == 1
        pool.handle_request(httpx.Request("GET", url)).read()
        assert len(served.ports(token=False)) == 1, "the second request reused the connection"
        holding.set()
        answers: list[httpx.Response] = []
        threads = [
            threading.Thread(
                target=lambda: answers.append(pool.handle_request(httpx.Request("GET", url)))
            )
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [answer.status_code for answer in answers] == [200, 200]
    assert not both_in.broken
    assert len({port for _, port in served.seen[2:]}) == 2, "two at once, two connections"
