"""The sandbox's endpoint table (`reconciler.sandbox.endpoints`) is what the sandbox serves:
every entry is an operation of its vendored NewStore spec, the admin state's keys are the
table's, and an entry without a check of its own validates against its spec's request schema."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from reconciler.newstore.settings import REGISTRY
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.endpoints import ENDPOINTS, STATE_KEYS, WRAPPED, Endpoint
from reconciler.sandbox.validate import load_spec
from reconciler.sandbox.values import state_to_values

TENANT = "acme"


def test_every_entry_is_an_operation_of_its_spec() -> None:
    for entry in ENDPOINTS:
        operations = load_spec(entry.spec)["paths"].get(entry.spec_path)
        assert operations is not None, f"{entry.name}: {entry.spec_path} not in {entry.spec}"
        documented = {method.upper() for method in operations}
        assert set(entry.methods) <= documented, entry.name


def test_names_paths_and_state_keys_are_unique() -> None:
    for attribute in ("name", "path", "state_key"):
        values = [getattr(entry, attribute) for entry in ENDPOINTS]
        assert len(values) == len(set(values)), attribute


def test_admin_state_has_one_key_per_entry(sandbox: SandboxApp) -> None:
    assert tuple(sandbox.state(TENANT)) == STATE_KEYS
    assert tuple(entry.state_key for entry in ENDPOINTS) == STATE_KEYS


def test_every_entry_is_routed(sandbox_http: httpx.Client, sandbox_auth: Any) -> None:
    """GET of every entry answers as its shape says (never a routing 404/405)."""
    sandbox_http.headers.update(sandbox_auth(sandbox_http, TENANT))
    for entry in ENDPOINTS:
        path = f"/{TENANT}{entry.path}".replace("<store>", "S1")
        response = sandbox_http.get(path)
        assert response.status_code in (200, 204, 404), (entry.name, response.text)
        if response.status_code == 404:
            assert response.json()["error_code"] == "not_found", entry.name
        elif entry.shape == WRAPPED:
            assert set(response.json()) >= {"value", "updated_at"}, entry.name


@pytest.mark.parametrize(
    ("body", "valid"),
    [({"value": True}, True), ({"value": "yes"}, False), ({}, False), ([], False)],
)
def test_an_entry_without_a_check_validates_against_its_spec(body: Any, valid: bool) -> None:
    entry = Endpoint(
        name="enable_automatic_rerouting",
        path="/v0/config/routing/enable_automatic_rerouting",
        methods=("GET", "POST"),
        state_key="enable_automatic_rerouting",
        spec="configuration-inventory-fulfillment-logistic_order_config.yaml",
        shape=WRAPPED,
    )
    assert entry.spec_path == "/config/routing/enable_automatic_rerouting"
    assert (entry.write_problems(body) == []) is valid
    if isinstance(body, dict) and "value" in body:
        assert (entry.seed_problems(body["value"]) == []) is valid


def test_a_sandbox_state_reads_as_every_registered_setting(sandbox: SandboxApp) -> None:
    """`state_to_values` (the rule checks over sandbox states) covers REGISTRY: a flag setting
    through the table entry of its path, the others by name."""
    values = state_to_values(sandbox.state(TENANT))
    assert list(values) == [setting.key for setting in REGISTRY]
    for setting in REGISTRY:
        assert values[setting.key] == setting.default, setting.key
