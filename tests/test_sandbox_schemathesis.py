"""Property-based conformance: schemathesis generates schema-valid requests from the vendored
specs for the paths the reconciler manages, sends them to the in-process sandbox, and checks
that they are accepted and that every response matches the documented status codes and schemas.
The sandbox's deliberate deviations are listed, with reasons, in reconciler/sandbox/deviations.py.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import (
    CoveragePhaseConfig,
    GenerationConfig,
    PhasesConfig,
    ProjectConfig,
    ProjectsConfig,
    SchemathesisConfig,
)

from reconciler.sandbox import SandboxApp
from reconciler.sandbox.deviations import DEVIATIONS, EXPECTED_REJECTIONS, SPEC_ADJUSTMENTS
from reconciler.sandbox.state import default_associate_app_config
from reconciler.sandbox.validate import SPECS_DIR, load_spec

TENANT = "conformance"
HOST = "http://sandbox.local"
ASSOCIATE_APP = "configuration-apps-associate-app-config-api_config.yaml"
SALES_ORDER = "configuration-order-management-sales_order_config.yaml"
STORE_PATH = "/config/{$storeId}"
STORES = ("US01", "US02", "US03")  # few, so that one request's document is another's to read
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 25  # per operation: eleven operations stay well under a minute on 2 cores
EXAMPLES = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _associate_app_spec() -> dict[str, Any]:
    spec = copy.deepcopy(load_spec(ASSOCIATE_APP))
    # SPEC_ADJUSTMENTS["store path parameter"]
    operations = spec["paths"].pop(STORE_PATH)
    parameter = {
        "name": "storeId",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(STORES)},
    }
    operations["parameters"] = [parameter]
    spec["paths"]["/config/{storeId}"] = operations
    # SPEC_ADJUSTMENTS["request bodies required"]
    for path in ("/config", "/config/{storeId}"):
        for method in ("put", "patch"):
            spec["paths"][path][method]["requestBody"]["required"] = True
    return spec


def _sales_order_spec() -> dict[str, Any]:
    spec = copy.deepcopy(load_spec(SALES_ORDER))
    wanted = "/config/sales_order/external_order_webhook"
    spec["paths"] = {wanted: spec["paths"][wanted]}
    return spec


# Positive data only (the hand-written conformance tests cover refusals), no coverage phase (it
# sends unexpected methods and boundary values by the thousand), and an explicit config so no
# schemathesis.toml on the machine changes what runs.
CONFIG = SchemathesisConfig(
    projects=ProjectsConfig(
        default=ProjectConfig(
            generation=GenerationConfig(
                modes=[GenerationMode.POSITIVE], max_examples=MAX_EXAMPLES, deterministic=True
            ),
            phases=PhasesConfig(coverage=CoveragePhaseConfig(enabled=False)),
        )
    )
)
EVERY_OPERATION = {
    ("GET", "/config"),
    ("PUT", "/config"),
    ("PATCH", "/config"),
    ("GET", "/config/{storeId}"),
    ("PUT", "/config/{storeId}"),
    ("PATCH", "/config/{storeId}"),
    ("DELETE", "/config/{storeId}"),
    ("GET", "/config/sales_order/external_order_webhook"),
    ("POST", "/config/sales_order/external_order_webhook"),
}
ASSOCIATE_APP_SCHEMA = schemathesis.openapi.from_dict(_associate_app_spec(), config=CONFIG)
ORDER_WEBHOOK_SCHEMA = schemathesis.openapi.from_dict(_sales_order_spec(), config=CONFIG)


ANSWERS: Counter[tuple[str, str, int]] = Counter()


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    """One sandbox for the module (hypothesis runs many examples per test function)."""
    app = SandboxApp()
    # A store with a document and a configured order webhook from the start: the GETs run
    # before the writes of the same test function.
    app.seed(
        TENANT,
        {
            "associate_app_store_configs": {"US01": default_associate_app_config()},
            "external_order_webhook": {
                "url": "https://oms.example/newstore",
                "api_key": "conformance-order-key-0001",
                "timeout": 15,
            },
        },
    )
    with httpx.Client(transport=app.transport(), base_url=HOST) as client:
        token = client.post(
            f"/auth/realms/{TENANT}/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox",
                "client_secret": "sandbox-secret",
            },
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"  # DEVIATIONS["401 without a token"]
        yield client
    # Every operation was exercised and accepted a schema-valid request at least once.
    accepted = {(method, path) for method, path, status in ANSWERS if 200 <= status < 300}
    assert accepted >= EVERY_OPERATION, f"never accepted: {EVERY_OPERATION - accepted}: {ANSWERS}"


def _send(api: httpx.Client, case: Any, prefix: str) -> None:
    """Send `case` (a schema-valid request) with a token, check the response against the spec,
    and require a 2xx unless deviations.EXPECTED_REJECTIONS explains the answer."""
    kwargs = case.as_transport_kwargs(base_url=f"{HOST}/{TENANT}{prefix}")
    kwargs.pop("cookies", None)
    if "data" in kwargs:  # requests' name for a raw body
        kwargs["content"] = kwargs.pop("data")
    kwargs["headers"] = {**(kwargs.get("headers") or {}), **api.headers}
    response = api.request(**kwargs)
    ANSWERS[case.method.upper(), case.operation.path, response.status_code] += 1
    path = case.operation.path.replace("{storeId}", "{$storeId}")
    expected = EXPECTED_REJECTIONS.get((case.method.upper(), path), {})
    listed = response.status_code in expected
    # A listed rejection may use a status the spec does not document (the deviation says why);
    # everything else about it is still checked.
    checks = [c for c in CHECKS if not (listed and c is status_code_conformance)]
    case.validate_response(response, checks=checks)
    if not response.is_success:
        assert listed, (
            f"{case.method} {path}: a schema-valid request was answered "
            f"{response.status_code}: {response.text[:300]}"
        )
        assert expected[response.status_code] in DEVIATIONS


@ASSOCIATE_APP_SCHEMA.parametrize()
@EXAMPLES
def test_associate_app_config(case: Any, api: httpx.Client) -> None:
    _send(api, case, "/api/v1/associate-app")


@ORDER_WEBHOOK_SCHEMA.parametrize()
@EXAMPLES
def test_external_order_webhook(case: Any, api: httpx.Client) -> None:
    _send(api, case, "/v0")


def test_every_deviation_has_a_reason() -> None:
    assert SPECS_DIR.is_dir()
    for name, reason in {**DEVIATIONS, **SPEC_ADJUSTMENTS}.items():
        assert len(reason) > 40, name
