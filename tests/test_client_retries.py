"""Transient failures are retried inside the budget; everything else fails at once."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from client_helpers import (
    TENANT,
    RecordingTransport,
    api_requests,
    closed_port,
    make_app,
    make_client,
    make_env,
)

from reconciler.errors import RejectedError, RetryBudgetExhausted, UnreachableError
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.problem import parse_retry_after
from reconciler.newstore.settings import BY_KEY
from reconciler.sandbox.app import SandboxApp

OMS_PATH = f"/{TENANT}/v0/config/sales_order/external_oms"
ATP_PATH = f"/{TENANT}/v0/config/routing/uses_external_atp"
EXTERNAL_OMS = BY_KEY["external_oms"]
EXTERNAL_ATP = BY_KEY["external_atp"]


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_are_retried(
    app: SandboxApp, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    app.set_faults([{"method": "POST", "path": OMS_PATH, "status": status, "times": 2}])
    with caplog.at_level(logging.INFO, "reconciler.http"), make_client(app) as client:
        request_id = EXTERNAL_OMS.write(client, {"enabled": True})

    assert request_id
    assert app.state(TENANT)["external_oms"] == {"enabled": True}
    assert [s for m, _, s in api_requests(app) if m == "POST"] == [status, status, 200]
    assert f"NewStore answered {status}; attempt 1 of 5, retrying in" in caplog.text
    assert "attempt 2 of 5" in caplog.text


def test_a_write_whose_answer_was_lost_is_sent_again(app: SandboxApp) -> None:
    # The sandbox commits the write, then drops the connection: the client cannot know it
    # landed, and setting the same value again is harmless.
    app.set_faults([{"method": "POST", "path": OMS_PATH, "drop_connection": True, "times": 1}])
    with make_client(app) as client:
        assert EXTERNAL_OMS.write(client, {"enabled": True})

    writes = app.history(TENANT)
    assert len(writes) == 2
    assert [w["state_after"]["external_oms"] for w in writes] == [{"enabled": True}] * 2


def test_a_connection_dropped_before_the_answer_is_retried_for_reads(app: SandboxApp) -> None:
    app.set_faults(
        [{"method": "GET", "path": ATP_PATH, "status": 503, "drop_connection": True, "times": 3}]
    )
    with make_client(app) as client:
        assert EXTERNAL_ATP.read(client) == {"enabled": False}
    assert len(api_requests(app)) == 4


def test_retry_after_in_seconds_is_honoured(
    app: SandboxApp, caplog: pytest.LogCaptureFixture
) -> None:
    app.set_faults([{"path": ATP_PATH, "status": 429, "retry_after": 1, "times": 1}])
    with caplog.at_level(logging.INFO, "reconciler.http"), make_client(app) as client:
        assert EXTERNAL_ATP.read(client) == {"enabled": False}
    assert "retrying in 1.00 s (Retry-After)" in caplog.text


def test_retry_after_as_an_http_date_is_honoured(
    app: SandboxApp, caplog: pytest.LogCaptureFixture
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    app.set_faults([{"path": ATP_PATH, "status": 429, "retry_after": when, "times": 1}])
    with caplog.at_level(logging.INFO, "reconciler.http"), make_client(app) as client:
        assert EXTERNAL_ATP.read(client) == {"enabled": False}
    assert "(Retry-After)" in caplog.text
    assert "retrying in 0.00 s" not in caplog.text


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    past = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(past) == 0.0
    future = parse_retry_after(format_datetime(datetime.now(UTC) + timedelta(hours=1), True))
    assert future is not None and 3500 < future <= 3600
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_exhausted_attempts_name_the_count_status_and_request_id(app: SandboxApp) -> None:
    app.set_faults([{"path": ATP_PATH, "status": 503, "times": None}])
    env = make_env(retry_attempts=3)
    with make_client(app, env) as client, pytest.raises(RetryBudgetExhausted) as caught:
        EXTERNAL_ATP.read(client)

    err = caught.value
    assert "gave up after 3 attempts" in str(err)
    assert "NewStore answered 503" in str(err)
    assert err.status == 503
    assert err.request_id and f"Request id: {err.request_id}." in str(err)
    assert err.environment == env.name
    assert len(api_requests(app)) == 3


def test_a_retry_after_beyond_the_budget_fails_at_once(app: SandboxApp) -> None:
    # Issue 13: waiting out part of the budget and asking again was refused again; now the
    # request is not retried, and the message names the wait and the setting to raise.
    app.set_faults([{"path": ATP_PATH, "status": 429, "retry_after": 3600, "times": None}])
    env = make_env(retry_max_seconds=0.3)
    with make_client(app, env) as client, pytest.raises(RetryBudgetExhausted) as caught:
        EXTERNAL_ATP.read(client)
    message = str(caught.value)
    assert "gave up after 1 attempt in" in message
    assert "NewStore asked to wait 3600 s before retrying (Retry-After)" in message
    assert "connection.retry.max_seconds" in message
    assert caught.value.status == 429
    assert len(api_requests(app)) == 1


def test_dropped_connections_exhaust_into_a_clear_error(app: SandboxApp) -> None:
    app.set_faults([{"path": ATP_PATH, "drop_connection": True, "times": None}])
    env = make_env(retry_attempts=2)
    with make_client(app, env) as client, pytest.raises(RetryBudgetExhausted) as caught:
        EXTERNAL_ATP.read(client)
    message = str(caught.value)
    assert "gave up after 2 attempts" in message
    assert "the connection dropped before an answer arrived" in message
    assert caught.value.status is None


def test_a_refused_connection_is_retried_then_reported() -> None:
    # Issue 13: an UnreachableError (a TransportError) naming host:port, not an exhausted
    # retry budget with advice to run again later; retried once whatever `attempts` says.
    port = closed_port()
    env = make_env(f"http://127.0.0.1:{port}", retry_attempts=2)
    client = NewStoreClient(env, limiter=HostLimiter(), backoff=0.01)
    with client, pytest.raises(UnreachableError) as caught:
        EXTERNAL_ATP.read(client)
    assert "gave up after 2 attempts" in str(caught.value)
    assert "could not connect" in str(caught.value)
    assert f"127.0.0.1:{port}: connection refused" in str(caught.value)


def test_a_server_error_is_not_retried(app: SandboxApp) -> None:
    app.set_faults([{"path": ATP_PATH, "status": 500, "times": None}])
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        EXTERNAL_ATP.read(client)
    assert caught.value.status == 500
    assert "internal_server_error" in str(caught.value)
    assert len(api_requests(app)) == 1


def test_a_429_pauses_every_client_of_the_host(
    app: SandboxApp, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = HostLimiter()
    app.set_faults([{"path": ATP_PATH, "status": 429, "retry_after": 1, "times": 1}])
    first = make_client(app, make_env(retry_attempts=1), limiter=limiter)
    with first, pytest.raises(RetryBudgetExhausted):
        EXTERNAL_ATP.read(first)
    assert limiter.paused_for() > 0

    second = make_client(app, limiter=limiter)
    with caplog.at_level(logging.INFO, "reconciler.http"), second:
        assert EXTERNAL_OMS.read(second) == {"enabled": False}
    assert "host paused after a 429, waited" in caplog.text
    assert limiter.paused_for() == 0


def test_limiters_are_shared_per_host() -> None:
    assert HostLimiter.for_host("acme.p.newstore.net") is HostLimiter.for_host(
        "acme.p.newstore.net"
    )
    assert HostLimiter.for_host("acme.p.newstore.net") is not HostLimiter.for_host(
        "other.p.newstore.net"
    )


def test_max_concurrency_bounds_requests_in_flight() -> None:
    app = make_app(latency_ms=20)
    limiter = HostLimiter(max_concurrency=1)
    recording = RecordingTransport(app.transport())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with make_client(app, transport=recording, limiter=limiter) as client:
                EXTERNAL_ATP.read(client)
                EXTERNAL_OMS.read(client)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(recording.urls) == 12  # 4 tokens + 8 reads
    assert recording.max_in_flight == 1
