"""Availability webhook config: 204 is ABSENT, masked keys are UNKNOWN, PUT and DELETE."""

from __future__ import annotations

from typing import Any

import pytest
from client_helpers import TENANT, WEBHOOK, api_requests, make_app, make_client

from reconciler.core.plan import shown_value
from reconciler.model import ABSENT, SENSITIVE, UNKNOWN, Masked
from reconciler.newstore.settings import BY_KEY
from reconciler.newstore.settings.availability_webhook import is_masked, masked_value
from reconciler.sandbox.app import SandboxApp

HOOK = BY_KEY["availability_webhook"]
PATH = f"/{TENANT}/v0/config/availability/webhook"


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


def test_none_configured_reads_as_absent(app: SandboxApp) -> None:
    with make_client(app) as client:
        assert HOOK.read(client) is ABSENT
    assert api_requests(app) == [("GET", PATH, 204)]


def test_read_returns_the_four_fields(app: SandboxApp) -> None:
    app.seed(TENANT, {"availability_webhook": WEBHOOK})
    with make_client(app) as client:
        assert HOOK.read(client) == WEBHOOK


def test_a_masked_api_key_reads_as_what_the_mask_shows(app: SandboxApp) -> None:
    # Since issue 12 the visible suffix is kept (it was UNKNOWN): a desired key that does not
    # end like it cannot be the one NewStore holds.
    app.seed(TENANT, {"availability_webhook": WEBHOOK, "options": {"mask_webhook_api_key": True}})
    with make_client(app) as client:
        value = HOOK.read(client)
    assert value == {**WEBHOOK, "api_key": Masked("", WEBHOOK["api_key"][-4:])}
    assert WEBHOOK["api_key"][-4:] not in repr(value)


@pytest.mark.parametrize(
    ("shown", "expected"),
    [
        ("****************cdef", Masked("", "cdef")),
        ("ab••••••••••••••••••••", Masked("ab", "")),
        ("ab****yz", Masked("ab", "yz")),
        ("********************", UNKNOWN),
        ("****x", UNKNOWN),  # one character is decoration as much as key
        ("short-key", UNKNOWN),  # a stub: its start cannot be told from its end
        (None, UNKNOWN),
    ],
)
def test_masked_value_keeps_only_what_is_visible(shown: Any, expected: Any) -> None:
    assert masked_value(shown) == expected


@pytest.mark.parametrize(
    ("api_key", "masked"),
    [
        ("****************aaaa", True),
        ("ab••••••••••••••••••••", True),
        ("short-key", True),
        (None, True),
        ("atp-key-aaaaaaaaaaaaaaaaaaaaaaaa", False),
    ],
)
def test_is_masked(api_key: Any, masked: bool) -> None:
    assert is_masked(api_key) is masked


@pytest.mark.parametrize("masking", [False, True])
def test_write_puts_the_whole_config(app: SandboxApp, masking: bool) -> None:
    app.seed(TENANT, {"options": {"mask_webhook_api_key": masking}})
    with make_client(app) as client:
        assert HOOK.write(client, dict(WEBHOOK))
    assert app.state(TENANT)["availability_webhook"] == WEBHOOK
    assert [(h["method"], h["status"]) for h in app.history(TENANT)] == [("PUT", 200)]


def test_write_refuses_an_unknown_api_key(app: SandboxApp) -> None:
    with make_client(app) as client, pytest.raises(ValueError, match="unknown"):
        HOOK.write(client, {**WEBHOOK, "api_key": UNKNOWN})
    assert api_requests(app) == []


def test_delete_removes_the_config(app: SandboxApp) -> None:
    app.seed(TENANT, {"availability_webhook": WEBHOOK})
    with make_client(app) as client:
        assert HOOK.delete(client)
        assert HOOK.read(client) is ABSENT
    assert app.state(TENANT)["availability_webhook"] is None


@pytest.mark.parametrize("status", [200, 204, 404])
def test_deleting_what_is_already_gone_is_fine(app: SandboxApp, status: int) -> None:
    app.seed(TENANT, {"options": {"webhook_delete_absent_status": status}})
    with make_client(app) as client:
        HOOK.delete(client)
    assert api_requests(app) == [("DELETE", PATH, status)]


def test_the_api_key_is_the_secret_field_and_fields_keep_the_documented_order() -> None:
    shuffled = {name: WEBHOOK[name] for name in sorted(WEBHOOK, reverse=True)}
    shown = shown_value(HOOK, {**shuffled, "updated_at": "2025-01-01T00:00:00Z"})
    assert shown == {**WEBHOOK, "api_key": SENSITIVE}
    assert list(shown) == ["url", "api_key", "external_identifier", "timeout"]


# --- 409 on PUT (issue 13): re-read, done if it holds the value, else retry (bounded) -----------


def test_a_lost_put_race_is_re_read_and_retried(app: SandboxApp) -> None:
    app.set_faults([{"method": "PUT", "path": PATH, "status": 409, "times": 1}])
    with make_client(app) as client:
        assert HOOK.write(client, dict(WEBHOOK))
    assert api_requests(app) == [("PUT", PATH, 409), ("GET", PATH, 204), ("PUT", PATH, 200)]
    assert app.state(TENANT)["availability_webhook"] == WEBHOOK


def test_a_put_race_won_by_the_same_value_needs_no_second_write(app: SandboxApp) -> None:
    app.seed(TENANT, {"availability_webhook": WEBHOOK})
    app.set_faults([{"method": "PUT", "path": PATH, "status": 409, "times": 1}])
    with make_client(app) as client:
        assert HOOK.write(client, dict(WEBHOOK)) is None
    assert api_requests(app) == [("PUT", PATH, 409), ("GET", PATH, 200)]


def test_put_races_that_keep_coming_back_are_a_conflict_error(app: SandboxApp) -> None:
    from reconciler.errors import ConflictError

    app.set_faults([{"method": "PUT", "path": PATH, "status": 409, "times": None}])
    with make_client(app) as client, pytest.raises(ConflictError) as caught:
        HOOK.write(client, dict(WEBHOOK))
    assert "kept losing a concurrent update (409), 3 attempts" in str(caught.value)
    assert [m for m, _, _ in api_requests(app)] == ["PUT", "GET"] * 3
    assert [h["status"] for h in app.history(TENANT)] == [409] * 3, "no write landed"
