"""Associate App use_new_om_ui: one field changed, the rest of the document untouched."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from client_helpers import TENANT, api_requests, make_app, make_client

from reconciler.errors import RejectedError
from reconciler.newstore.settings import BY_KEY
from reconciler.sandbox.app import SandboxApp
from reconciler.sandbox.state import default_associate_app_config

APP = BY_KEY["associate_app"]
PATH = f"/{TENANT}/api/v1/associate-app/config"


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


def _document(app: SandboxApp) -> Any:
    return app.state(TENANT)["associate_app_config"]


@pytest.mark.parametrize("value", [True, False])
def test_read(app: SandboxApp, value: bool) -> None:
    doc = default_associate_app_config()
    doc["ui_configurations"]["use_new_om_ui"] = value
    app.seed(TENANT, {"associate_app_config": doc})
    with make_client(app) as client:
        assert APP.read(client) == {"use_new_om_ui": value}


def test_a_missing_field_or_section_reads_as_false(app: SandboxApp) -> None:
    doc = default_associate_app_config()
    del doc["ui_configurations"]["use_new_om_ui"]
    app.seed(TENANT, {"associate_app_config": doc})
    with make_client(app) as client:
        assert APP.read(client) == {"use_new_om_ui": False}
        del doc["ui_configurations"]
        app.seed(TENANT, {"associate_app_config": doc})
        assert APP.read(client) == {"use_new_om_ui": False}


@pytest.mark.parametrize("value", [True, False])
def test_write_changes_only_the_one_field(app: SandboxApp, value: bool) -> None:
    before = default_associate_app_config()
    before["ui_configurations"]["use_new_om_ui"] = not value
    app.seed(TENANT, {"associate_app_config": before})
    with make_client(app) as client:
        assert APP.write(client, {"use_new_om_ui": value})
        assert APP.read(client) == {"use_new_om_ui": value}

    after = _document(app)
    expected = copy.deepcopy(before)
    expected["ui_configurations"]["use_new_om_ui"] = value
    # Serialised without sorting: same keys, same values, same order, at every level.
    assert json.dumps(after) == json.dumps(expected)
    assert api_requests(app)[:2] == [("GET", PATH, 200), ("PUT", PATH, 200)]


def test_write_creates_the_section_when_missing(app: SandboxApp) -> None:
    before = default_associate_app_config()
    del before["ui_configurations"]
    app.seed(TENANT, {"associate_app_config": before})
    with make_client(app) as client:
        APP.write(client, {"use_new_om_ui": True})

    after = _document(app)
    assert after.pop("ui_configurations") == {"use_new_om_ui": True}
    assert json.dumps(after) == json.dumps(before)


def test_write_rereads_right_before_writing(app: SandboxApp) -> None:
    with make_client(app) as client:
        APP.read(client)
        # Someone edits another part of the document after our read...
        edited = default_associate_app_config()
        edited["last_published_release"] = "9.9.9"
        app.seed(TENANT, {"associate_app_config": edited})
        APP.write(client, {"use_new_om_ui": True})
    # ...and the write keeps their edit.
    assert _document(app)["last_published_release"] == "9.9.9"
    assert _document(app)["ui_configurations"]["use_new_om_ui"] is True


@pytest.mark.parametrize("operation", ["read", "write"])
def test_no_global_document_is_unknown_never_false(app: SandboxApp, operation: str) -> None:
    """Issue 25.4: a 404 on the global document is unknown, like 422, never "off"."""
    app.seed(TENANT, {"associate_app_config": None})
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        if operation == "read":
            APP.read(client)
        else:
            APP.write(client, {"use_new_om_ui": True})

    message = str(caught.value)
    assert "no Associate App configuration document for the tenant (404)" in message
    assert "whether ui_configurations.use_new_om_ui is on is unknown" in message
    assert "create it in NewStore" in message
    # Issue 13: the sandbox answers a missing document 404 (422 means unreadable, below).
    assert caught.value.status == 404
    assert caught.value.request_id
    assert app.history(TENANT) == []


@pytest.mark.parametrize("operation", ["read", "write"])
def test_an_unreadable_document_is_an_error_not_false(app: SandboxApp, operation: str) -> None:
    app.set_faults(
        [
            {
                "method": "GET",
                "path": PATH,
                "status": 422,
                "message": "Configuration file is not readable.",
            }
        ]
    )
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        if operation == "read":
            APP.read(client)
        else:
            APP.write(client, {"use_new_om_ui": False})
    message = str(caught.value)
    assert "cannot read the tenant's Associate App configuration (422)" in message
    assert "Configuration file is not readable" in message
    assert caught.value.status == 422
    assert app.history(TENANT) == []


def test_a_document_newstore_refuses_is_reported(app: SandboxApp) -> None:
    app.set_faults([{"method": "PUT", "path": PATH, "status": 422, "message": "Invalid schema."}])
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        APP.write(client, {"use_new_om_ui": True})
    assert caught.value.status == 422
    assert "Invalid schema" in str(caught.value)
