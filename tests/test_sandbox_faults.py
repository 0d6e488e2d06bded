"""Faults on demand: scripted rules, dropped connections, random faults, and concurrency."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from reconciler.errors import ConfigError
from reconciler.sandbox import SandboxApp, SandboxConfig, running

TENANT = "acme-staging"
OMS = f"/{TENANT}/v0/config/sales_order/external_oms"
ATP = f"/{TENANT}/v0/config/routing/uses_external_atp"
TOKEN = f"/auth/realms/{TENANT}/protocol/openid-connect/token"
WEBHOOK = "/_sandbox/webhook/availabilities"
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "sandbox",
    "client_secret": "sandbox-secret",
}
PROBE = {
    "products": [{"product_id": "1000061", "external_identifier": "1000061"}],
    "fulfillment_locations": ["US01"],
}

Auth = Callable[[httpx.Client, str], dict[str, str]]


@pytest.fixture
def api(sandbox_http: httpx.Client, sandbox_auth: Auth) -> httpx.Client:
    sandbox_http.headers.update(sandbox_auth(sandbox_http, TENANT))
    return sandbox_http


def test_rule_fires_exactly_times_times(api: httpx.Client, sandbox: SandboxApp) -> None:
    sandbox.set_faults([{"method": "GET", "path": OMS, "status": 503, "times": 3}])
    first = api.get(OMS)
    assert first.status_code == 503
    assert sandbox.faults()[0]["times"] == 2
    rest = [api.get(OMS).status_code for _ in range(4)]
    assert rest == [503, 503, 200, 200]
    assert sandbox.faults() == []


def test_rules_match_method_and_glob_first_match_wins(
    api: httpx.Client, sandbox: SandboxApp, sandbox_auth: Auth
) -> None:
    sandbox.set_faults(
        [
            {"method": "POST", "path": "/acme-*/v0/config/sales_order/external_oms", "status": 409},
            {"path": "/acme-*/v0/config/*", "status": 500, "times": 2},
        ]
    )
    other = {"Authorization": sandbox_auth(api, "beta")["Authorization"]}
    assert api.get("/beta/v0/config/sales_order/external_oms", headers=other).status_code == 200
    posted = api.post(OMS, json={"value": {"enabled": True}})
    assert posted.status_code == 409
    assert posted.json()["error_code"] == "concurrent_update_on_tenant_setting"
    assert [api.get(ATP).status_code for _ in range(3)] == [500, 500, 200]
    assert sandbox.state(TENANT)["external_oms"] is None


def test_times_null_never_runs_out(api: httpx.Client, sandbox: SandboxApp) -> None:
    sandbox.set_faults([{"path": ATP, "status": 502, "times": None}])
    assert {api.get(ATP).status_code for _ in range(5)} == {502}
    assert sandbox.faults()[0]["times"] is None


@pytest.mark.parametrize("retry_after", [7, 0, "Wed, 21 Oct 2037 07:28:00 GMT"])
def test_retry_after_in_seconds_or_http_date(
    api: httpx.Client, sandbox: SandboxApp, retry_after: int | str
) -> None:
    sandbox.set_faults([{"path": ATP, "status": 429, "retry_after": retry_after}])
    response = api.get(ATP)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(retry_after)
    assert response.json()["error_code"] == "too_many_requests"
    assert response.json()["request_id"] == response.headers["X-Request-ID"]


def test_faulted_write_is_in_history_and_changes_nothing(
    api: httpx.Client, sandbox: SandboxApp
) -> None:
    sandbox.set_faults([{"method": "POST", "path": ATP, "status": 503}])
    assert api.post(ATP, json={"value": True}).status_code == 503
    [entry] = sandbox.history(TENANT)
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", ATP, 503)
    assert entry["state_after"]["uses_external_atp"] is None


def test_html_body_is_not_json(api: httpx.Client, sandbox: SandboxApp) -> None:
    sandbox.set_faults([{"path": OMS, "status": 403, "body": "html"}])
    response = api.get(OMS)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["X-Request-ID"]
    with pytest.raises(ValueError):
        response.json()


def test_faults_hit_token_and_webhook_but_never_admin(
    sandbox_http: httpx.Client, sandbox: SandboxApp
) -> None:
    sandbox.set_faults([{"path": "/*", "status": 503, "times": None}])
    assert sandbox_http.post(TOKEN, data=CREDENTIALS).status_code == 503
    key = {"Authorization": sandbox.config.webhook_api_key}
    assert sandbox_http.post(WEBHOOK, json=PROBE, headers=key).status_code == 503
    assert sandbox_http.get(f"/_sandbox/tenants/{TENANT}/state").status_code == 200
    assert sandbox_http.delete("/_sandbox/faults").status_code == 200
    assert sandbox_http.post(WEBHOOK, json=PROBE, headers=key).status_code == 200
    assert [r["status"] for r in sandbox.requests(TENANT)] == [503]


def test_rule_without_status_only_adds_latency(api: httpx.Client, sandbox: SandboxApp) -> None:
    sandbox.set_faults([{"path": OMS, "latency_ms": 20}])
    assert api.get(OMS).status_code == 200
    assert sandbox.faults() == []


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 500},
        {"path": "no-slash", "status": 500},
        {"path": OMS, "status": 99},
        {"path": OMS, "times": 0},
        {"path": OMS, "retry_after": -1},
        {"path": OMS, "retry_after": "soon"},
        {"path": OMS, "drop_connection": "yes"},
        {"path": OMS, "body": "xml"},
        {"path": OMS, "stauts": 500},
    ],
)
def test_invalid_rules_are_refused_whole(
    sandbox_http: httpx.Client, sandbox: SandboxApp, rule: dict[str, Any]
) -> None:
    sandbox.set_faults([{"path": ATP, "status": 500}])
    with pytest.raises(ConfigError, match=r"rules\[1\]"):
        sandbox.set_faults([{"path": OMS}, rule])
    response = sandbox_http.post("/_sandbox/faults", json={"rules": [rule]})
    assert response.status_code == 400
    assert "rules[0]" in response.json()["message"]
    assert [r["path"] for r in sandbox.faults()] == [ATP]


def test_fault_admin_endpoints(sandbox_http: httpx.Client) -> None:
    rules = [{"path": OMS, "status": 500, "times": 2}, {"method": "post", "path": ATP}]
    posted = sandbox_http.post("/_sandbox/faults", json={"rules": rules})
    assert posted.status_code == 200
    listed = sandbox_http.get("/_sandbox/faults").json()["rules"]
    assert [(r["method"], r["path"], r["times"]) for r in listed] == [
        ("*", OMS, 2),
        ("POST", ATP, 1),
    ]
    assert sandbox_http.delete("/_sandbox/faults").json() == {"rules": []}
    assert sandbox_http.get("/_sandbox/faults").json() == {"rules": []}


# -- dropped connections -------------------------------------------------------------------------


def _assert_dropped_after_commit(client: httpx.Client, sandbox: SandboxApp) -> None:
    sandbox.set_faults([{"method": "POST", "path": OMS, "drop_connection": True}])
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(OMS, json={"value": {"enabled": True}})
    assert sandbox.state(TENANT)["external_oms"] == {"enabled": True}
    assert sandbox.history(TENANT)[-1]["status"] == 200
    # The server is fine afterwards, and the client sees the committed write.
    assert client.get(OMS).json()["value"] == {"enabled": True}


def test_drop_connection_in_process(api: httpx.Client, sandbox: SandboxApp) -> None:
    _assert_dropped_after_commit(api, sandbox)


def test_drop_connection_over_tcp(
    live_sandbox: tuple[SandboxApp, str], sandbox_auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, base_url = live_sandbox
    with httpx.Client(base_url=base_url, timeout=10) as client:
        client.headers.update(sandbox_auth(client, TENANT))
        _assert_dropped_after_commit(client, sandbox)
    # The handler thread logs after the client saw the drop: let it finish (the client closed
    # its connections, so keep-alive threads end too).
    for thread in threading.enumerate():
        if thread.name.endswith("(process_request_thread)"):
            thread.join(timeout=5)
    # werkzeug logs "Error on request" with a traceback for anything but a dropped connection.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_drop_with_status_drops_before_commit(api: httpx.Client, sandbox: SandboxApp) -> None:
    sandbox.set_faults([{"path": OMS, "status": 500, "drop_connection": True}])
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(OMS, json={"value": {"enabled": True}})
    assert sandbox.state(TENANT)["external_oms"] is None


# -- random faults -------------------------------------------------------------------------------


def _run_sequence(seed: int | None, rate: float = 0.5) -> list[tuple[int, str | None]]:
    app = SandboxApp(SandboxConfig(fault_rate=rate, seed=seed))
    outcomes = []
    with httpx.Client(transport=app.transport(), base_url="http://sandbox.local") as client:
        for i in range(40):
            response = client.post(TOKEN, data=CREDENTIALS) if i % 4 == 0 else client.get(OMS)
            outcomes.append((response.status_code, response.headers.get("Retry-After")))
    return outcomes


def test_fault_rate_is_reproducible_for_a_seed() -> None:
    first = _run_sequence(seed=1234)
    assert first == _run_sequence(seed=1234)
    assert first != _run_sequence(seed=4321)
    faulted = [(s, r) for s, r in first if s in (429, 503)]
    assert 0 < len(faulted) < len(first)
    assert {r for _, r in faulted} <= {"0", "1"}
    # Unfaulted: a token (200) or a GET without a token (401).
    assert {s for s, _ in first} - {429, 503} <= {200, 401}


def test_fault_rate_spares_admin_and_webhook() -> None:
    app = SandboxApp(SandboxConfig(fault_rate=1.0, seed=1))
    with httpx.Client(transport=app.transport(), base_url="http://sandbox.local") as client:
        assert {client.get(OMS).status_code for _ in range(10)} <= {429, 503}
        assert client.get(f"/_sandbox/tenants/{TENANT}/state").status_code == 200
        key = {"Authorization": app.config.webhook_api_key}
        assert client.post(WEBHOOK, json=PROBE, headers=key).status_code == 200


# -- concurrency ---------------------------------------------------------------------------------


class _InFlight:
    """WSGI middleware around the real app: counts the requests inside it at the same time."""

    def __init__(self, app: SandboxApp) -> None:
        self.app, self.now, self.most = app, 0, 0
        self._lock = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return self.app(environ, start_response)
        finally:
            with self._lock:
                self.now -= 1


def test_hundred_slow_requests_run_concurrently(sandbox_auth: Auth) -> None:
    app = SandboxApp(SandboxConfig(latency_ms=200))
    counted = _InFlight(app)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with (
        running(counted) as base_url,  # type: ignore[arg-type]  # any WSGI callable serves
        httpx.Client(base_url=base_url, limits=limits) as client,
    ):
        client.headers.update(sandbox_auth(client, TENANT))
        with ThreadPoolExecutor(max_workers=100) as pool:
            statuses = list(pool.map(lambda _: client.get(OMS).status_code, range(100)))
    assert statuses == [200] * 100
    assert len(app.requests(TENANT)) == 101
    # Measured as overlap, not wall time (a busy machine must not fail it): served one at a
    # time, never more than one request would be inside the app at once.
    assert counted.most >= 10, counted.most
