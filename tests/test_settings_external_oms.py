"""External OMS flag: both answer shapes, the wrapped write, and 409 races."""

from __future__ import annotations

import pytest
from client_helpers import TENANT, api_requests, make_app, make_client

from reconciler.errors import ConflictError
from reconciler.newstore.settings import BY_KEY
from reconciler.sandbox.app import SandboxApp

OMS = BY_KEY["external_oms"]
PATH = f"/{TENANT}/v0/config/sales_order/external_oms"


@pytest.fixture
def app() -> SandboxApp:
    return make_app()


@pytest.mark.parametrize("shape", ["wrapped", "flat"])
@pytest.mark.parametrize("enabled", [True, False])
def test_both_answer_shapes_read_the_same(app: SandboxApp, shape: str, enabled: bool) -> None:
    app.seed(
        TENANT, {"external_oms": {"enabled": enabled}, "options": {"external_oms_shape": shape}}
    )
    with make_client(app) as client:
        assert OMS.read(client) == {"enabled": enabled}


def test_never_set_reads_as_off(app: SandboxApp) -> None:
    app.seed(TENANT, {"external_oms": None})
    with make_client(app) as client:
        assert OMS.read(client) == {"enabled": False}


@pytest.mark.parametrize("enabled", [True, False])
def test_write_sets_the_value(app: SandboxApp, enabled: bool) -> None:
    app.seed(TENANT, {"external_oms": {"enabled": not enabled}})
    with make_client(app) as client:
        request_id = OMS.write(client, {"enabled": enabled})
        assert OMS.read(client) == {"enabled": enabled}

    assert request_id
    assert app.state(TENANT)["external_oms"] == {"enabled": enabled}
    assert [h["method"] for h in app.history(TENANT)] == ["POST"]


def test_a_lost_race_is_re_read_and_retried(app: SandboxApp) -> None:
    app.set_faults([{"method": "POST", "path": PATH, "status": 409, "times": 1}])
    with make_client(app) as client:
        assert OMS.write(client, {"enabled": True})

    assert api_requests(app) == [("POST", PATH, 409), ("GET", PATH, 200), ("POST", PATH, 200)]
    assert app.state(TENANT)["external_oms"] == {"enabled": True}


def test_a_race_won_by_the_same_value_needs_no_second_write(app: SandboxApp) -> None:
    app.seed(TENANT, {"external_oms": {"enabled": True}})
    app.set_faults([{"method": "POST", "path": PATH, "status": 409, "times": 1}])
    with make_client(app) as client:
        assert OMS.write(client, {"enabled": True}) is None

    assert api_requests(app) == [("POST", PATH, 409), ("GET", PATH, 200)]


def test_races_that_keep_coming_back_are_a_conflict_error(app: SandboxApp) -> None:
    app.set_faults([{"method": "POST", "path": PATH, "status": 409, "times": None}])
    with make_client(app) as client, pytest.raises(ConflictError) as caught:
        OMS.write(client, {"enabled": True})

    err = caught.value
    assert "kept losing a concurrent update (409), 3 attempts" in str(err)
    assert "concurrent_update_on_tenant_setting" in str(err)
    assert err.request_id and err.request_id in str(err)
    assert err.setting == "external_oms"
    assert [m for m, _, _ in api_requests(app)] == ["POST", "GET"] * 3
    assert app.state(TENANT)["external_oms"] is None
