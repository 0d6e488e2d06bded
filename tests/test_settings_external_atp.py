"""External ATP flag: null reads as off; writes are `{"value": bool}`."""

from __future__ import annotations

import pytest
from client_helpers import TENANT, make_app, make_client

from reconciler.errors import RejectedError
from reconciler.newstore.settings import BY_KEY
from reconciler.sandbox.app import SandboxApp

ATP = BY_KEY["external_atp"]


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


@pytest.mark.parametrize(("live", "read"), [(None, False), (False, False), (True, True)])
def test_read(app: SandboxApp, live: bool | None, read: bool) -> None:
    app.seed(TENANT, {"uses_external_atp": live})
    with make_client(app) as client:
        assert ATP.read(client) == {"enabled": read}


@pytest.mark.parametrize("enabled", [True, False])
def test_write(app: SandboxApp, enabled: bool) -> None:
    with make_client(app) as client:
        request_id = ATP.write(client, {"enabled": enabled})
        assert ATP.read(client) == {"enabled": enabled}
    assert request_id
    assert app.state(TENANT)["uses_external_atp"] is enabled
    assert [(h["method"], h["status"]) for h in app.history(TENANT)] == [("POST", 200)]


def test_a_rejected_write_carries_newstores_messages(app: SandboxApp) -> None:
    path = f"/{TENANT}/v0/config/routing/uses_external_atp"
    app.set_faults([{"method": "POST", "path": path, "status": 400, "message": "Nope."}])
    with make_client(app) as client, pytest.raises(RejectedError) as caught:
        ATP.write(client, {"enabled": True})
    assert caught.value.status == 400
    assert "NewStore said: Nope (bad_request)." in str(caught.value)
    assert app.state(TENANT)["uses_external_atp"] is None
