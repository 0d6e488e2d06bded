"""The sandbox speaks NewStore's published API: every answer validates against the response
schema in NewStore's own OpenAPI files, and every request they call invalid is rejected with
the status they document. Schemas are read from the specs at test time, never copied by hand.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from reconciler.sandbox import SandboxApp
from reconciler.sandbox.validate import SPECS_DIR

# NewStore's specs are vendored in the package (see specs/SOURCE.md), so these tests run on a
# fresh clone; the upstream copy beside the repository, when present, is checked for drift.
SPEC_DIR = SPECS_DIR
UPSTREAM_SPEC_DIR = Path(__file__).parents[2] / "shared/newstore-api/openapi"

SALES_ORDER = "configuration-order-management-sales_order_config.yaml"
WEBHOOK_CONFIG = "configuration-order-management-availability_config_api.yaml"
ROUTING = "configuration-inventory-fulfillment-logistic_order_config.yaml"
ROUTING_PORTAL = "developer-portal-routing-config.yml"
ASSOCIATE_APP = "configuration-apps-associate-app-config-api_config.yaml"
AVAILABILITY_HOOK = "webhooks-availability_hook.yaml"

OMS_PATH = "/config/sales_order/external_oms"
HOOK_PATH = "/config/availability/webhook"
ATP_PATH = "/config/routing/uses_external_atp"
ATP_PORTAL_PATH = "/v0/config/routing/uses_external_atp"
APP_PATH = "/config"

TENANT = "acme-staging"
VALID_HOOK = {
    "url": "https://atp.acme.example/availabilities",
    "api_key": "k" * 20,
    "external_identifier": "product_id",
    "timeout": 15,
}

Auth = Callable[[httpx.Client, str], dict[str, str]]


def _stringify_keys(node: Any) -> Any:
    # YAML reads unquoted status codes as ints; JSON pointers need strings.
    if isinstance(node, dict):
        return {str(k): _stringify_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_stringify_keys(v) for v in node]
    return node


@functools.cache
def _spec(name: str) -> dict[str, Any]:
    with (SPEC_DIR / name).open(encoding="utf-8") as fh:
        doc: dict[str, Any] = _stringify_keys(yaml.safe_load(fh))
    return doc


def _base_path(name: str) -> str:
    doc = _spec(name)
    if "servers" in doc:
        return urlsplit(doc["servers"][0]["url"]).path.rstrip("/")
    return str(doc.get("basePath", "/")).rstrip("/")


def url(name: str, spec_path: str, tenant: str = TENANT) -> str:
    """Our path for a spec path: tenant prefix + the spec's server base path + the path."""
    return f"/{tenant}{_base_path(name)}{spec_path}"


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def assert_conforms(name: str, spec_path: str, response: httpx.Response) -> None:
    """The response's status is documented for the operation, and its body matches."""
    method = response.request.method.lower()
    status = str(response.status_code)
    operation = _spec(name)["paths"][spec_path][method]
    assert status in operation["responses"], (
        f"{method.upper()} {spec_path}: status {status} is not in {name}: {response.text}"
    )
    documented = operation["responses"][status]
    base = ["paths", spec_path, method, "responses", status]
    if "content" in documented:  # OpenAPI 3
        media = response.headers.get("content-type", "").split(";")[0]
        content = documented["content"]
        # Error schemas are filed under application/json in some specs, problem+json in others.
        key = media if media in content else next(iter(content))
        pointer = _pointer(*base, "content", key, "schema")
    elif "schema" in documented:  # Swagger 2
        pointer = _pointer(*base, "schema")
    elif response.is_success:
        assert response.content == b"", f"{status} documents no body, got {response.text!r}"
        return
    else:
        # An error without a documented schema: NewStore's errors still carry a request_id.
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["request_id"] == response.headers["X-Request-ID"]
        return
    uri = f"urn:newstore-spec:{name}"
    resource = Resource.from_contents(_spec(name), default_specification=DRAFT202012)
    validator = Draft202012Validator(
        {"$ref": uri + pointer},
        registry=Registry().with_resource(uri, resource),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(response.json())
    ]
    assert not errors, f"{method.upper()} {spec_path} → {status} breaks {name}: {errors}"


@pytest.fixture
def api(sandbox_http: httpx.Client, sandbox_auth: Auth) -> httpx.Client:
    sandbox_http.headers.update(sandbox_auth(sandbox_http, TENANT))
    return sandbox_http


def test_every_published_spec_is_vendored() -> None:
    vendored = {p.name for p in SPECS_DIR.iterdir() if p.suffix in {".yaml", ".yml"}}
    assert vendored >= {
        SALES_ORDER,
        WEBHOOK_CONFIG,
        ROUTING,
        ROUTING_PORTAL,
        ASSOCIATE_APP,
        AVAILABILITY_HOOK,
    }


def test_vendored_specs_are_verbatim_copies_of_upstream() -> None:
    """Against the digests SOURCE.md records (on any clone), and byte for byte against the
    upstream copy when it sits beside the repository. Never skipped."""
    recorded = dict(
        re.findall(
            r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", (SPECS_DIR / "SOURCE.md").read_text(), re.M
        )
    )
    vendored = sorted(p.name for p in SPECS_DIR.iterdir() if p.suffix in (".yaml", ".yml"))
    assert sorted(recorded) == vendored
    for name, digest in recorded.items():
        assert hashlib.sha256((SPECS_DIR / name).read_bytes()).hexdigest() == digest, name
    if UPSTREAM_SPEC_DIR.is_dir():
        for path in sorted(UPSTREAM_SPEC_DIR.iterdir()):
            assert (SPECS_DIR / path.name).read_bytes() == path.read_bytes(), path.name


# -- external OMS flag ---------------------------------------------------------------------------


def test_external_oms_read_and_write(api: httpx.Client) -> None:
    first = api.get(url(SALES_ORDER, OMS_PATH))
    assert_conforms(SALES_ORDER, OMS_PATH, first)
    assert first.json()["value"] == {"enabled": False}

    written = api.post(url(SALES_ORDER, OMS_PATH), json={"value": {"enabled": True}})
    assert written.status_code == 200
    assert_conforms(SALES_ORDER, OMS_PATH, written)

    after = api.get(url(SALES_ORDER, OMS_PATH))
    assert_conforms(SALES_ORDER, OMS_PATH, after)
    assert after.json()["value"] == {"enabled": True}


@pytest.mark.parametrize(
    "body",
    [{}, {"value": True}, {"value": {}}, {"value": {"enabled": "yes"}}, [], "not json"],
    ids=["empty", "value-not-object", "no-enabled", "enabled-not-bool", "array", "not-json"],
)
def test_external_oms_rejects_invalid_bodies(
    api: httpx.Client, sandbox: SandboxApp, body: Any
) -> None:
    content = body.encode() if isinstance(body, str) else None
    response = api.post(
        url(SALES_ORDER, OMS_PATH),
        content=content,
        json=None if content is not None else body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert_conforms(SALES_ORDER, OMS_PATH, response)
    assert response.json()["request_id"] == response.headers["X-Request-ID"]
    assert sandbox.state(TENANT)["external_oms"] is None


def test_external_oms_flat_shape_option(api: httpx.Client, sandbox: SandboxApp) -> None:
    sandbox.seed(
        TENANT, {"external_oms": {"enabled": True}, "options": {"external_oms_shape": "flat"}}
    )
    assert api.get(url(SALES_ORDER, OMS_PATH)).json() == {"enabled": True}


@pytest.mark.parametrize(("method", "status"), [("GET", 500), ("POST", 409), ("POST", 500)])
def test_external_oms_faulted_errors_match_spec(
    api: httpx.Client, sandbox: SandboxApp, method: str, status: int
) -> None:
    sandbox.set_faults([{"method": method, "path": url(SALES_ORDER, OMS_PATH), "status": status}])
    response = api.request(method, url(SALES_ORDER, OMS_PATH), json={"value": {"enabled": True}})
    assert response.status_code == status
    assert_conforms(SALES_ORDER, OMS_PATH, response)
    if status == 409:
        assert response.json()["error_code"] == "concurrent_update_on_tenant_setting"


# -- availability webhook config -----------------------------------------------------------------


def test_webhook_config_lifecycle(api: httpx.Client) -> None:
    path = url(WEBHOOK_CONFIG, HOOK_PATH)
    none = api.get(path)
    assert none.status_code == 204
    assert_conforms(WEBHOOK_CONFIG, HOOK_PATH, none)

    put = api.put(path, json={**VALID_HOOK, "unknown_field": "ignored"})
    assert put.status_code == 200
    assert_conforms(WEBHOOK_CONFIG, HOOK_PATH, put)
    assert put.json() == VALID_HOOK

    got = api.get(path)
    assert_conforms(WEBHOOK_CONFIG, HOOK_PATH, got)
    assert got.json() == VALID_HOOK

    deleted = api.delete(path)
    assert deleted.status_code == 200
    assert_conforms(WEBHOOK_CONFIG, HOOK_PATH, deleted)
    assert api.get(path).status_code == 204
    # Deleting nothing is undocumented; the sandbox answers like GET does for "none".
    again = api.delete(path)
    assert (again.status_code, again.content) == (204, b"")


def test_webhook_config_masked_key_still_conforms(api: httpx.Client, sandbox: SandboxApp) -> None:
    sandbox.seed(
        TENANT, {"availability_webhook": VALID_HOOK, "options": {"mask_webhook_api_key": True}}
    )
    got = api.get(url(WEBHOOK_CONFIG, HOOK_PATH))
    assert_conforms(WEBHOOK_CONFIG, HOOK_PATH, got)
    assert got.json()["api_key"] != VALID_HOOK["api_key"]
    assert got.json()["api_key"].endswith(VALID_HOOK["api_key"][-4:])
    assert sandbox.state(TENANT)["availability_webhook"] == VALID_HOOK


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in VALID_HOOK.items() if k != key}


@pytest.mark.parametrize(
    "body",
    [
        _without("url"),
        _without("api_key"),
        _without("external_identifier"),
        _without("timeout"),
        {**VALID_HOOK, "api_key": "k" * 19},
        {**VALID_HOOK, "timeout": 4},
        {**VALID_HOOK, "timeout": 61},
        {**VALID_HOOK, "timeout": "15"},
        {**VALID_HOOK, "timeout": 15.5},
        {**VALID_HOOK, "timeout": True},
        {**VALID_HOOK, "url": "not a uri"},
        {**VALID_HOOK, "url": ""},
        {**VALID_HOOK, "external_identifier": "sku"},
        [],
    ],
)
def test_webhook_config_rejects_invalid_bodies(
    api: httpx.Client, sandbox: SandboxApp, body: Any
) -> None:
    response = api.put(url(WEBHOOK_CONFIG, HOOK_PATH), json=body)
    assert response.status_code == 400
    assert_conforms(WEBHOOK_CONFIG, HOOK_PATH, response)
    assert "k" * 19 not in response.text  # a rejected key is not echoed back
    assert sandbox.state(TENANT)["availability_webhook"] is None


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_webhook_config_faulted_500_matches_spec(
    api: httpx.Client, sandbox: SandboxApp, method: str
) -> None:
    sandbox.set_faults([{"path": url(WEBHOOK_CONFIG, HOOK_PATH), "status": 500}])
    response = api.request(method, url(WEBHOOK_CONFIG, HOOK_PATH), json=VALID_HOOK)
    assert response.status_code == 500
    assert_conforms(WEBHOOK_CONFIG, HOOK_PATH, response)


# -- external ATP flag ---------------------------------------------------------------------------


def test_external_atp_read_and_write(api: httpx.Client) -> None:
    never_set = api.get(url(ROUTING, ATP_PATH))
    assert_conforms(ROUTING, ATP_PATH, never_set)
    assert never_set.json() == {"value": None, "updated_at": None}

    written = api.post(url(ROUTING, ATP_PATH), json={"value": True})
    assert written.status_code == 200
    assert_conforms(ROUTING, ATP_PATH, written)
    assert_conforms(ROUTING_PORTAL, ATP_PORTAL_PATH, written)

    after = api.get(url(ROUTING, ATP_PATH))
    assert_conforms(ROUTING, ATP_PATH, after)
    assert_conforms(ROUTING_PORTAL, ATP_PORTAL_PATH, after)
    assert after.json()["value"] is True


def test_both_routing_specs_name_the_same_path() -> None:
    assert url(ROUTING, ATP_PATH) == url(ROUTING_PORTAL, ATP_PORTAL_PATH)


@pytest.mark.parametrize("body", [{}, {"value": "true"}, {"value": None}, {"value": 1}, ["value"]])
def test_external_atp_rejects_invalid_bodies(
    api: httpx.Client, sandbox: SandboxApp, body: Any
) -> None:
    response = api.post(url(ROUTING, ATP_PATH), json=body)
    assert response.status_code == 400
    assert_conforms(ROUTING, ATP_PATH, response)
    assert_conforms(ROUTING_PORTAL, ATP_PORTAL_PATH, response)
    assert response.json()["messages"]
    assert sandbox.state(TENANT)["uses_external_atp"] is None


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_external_atp_faulted_errors_match_spec(
    api: httpx.Client, sandbox: SandboxApp, status: int
) -> None:
    sandbox.set_faults([{"path": url(ROUTING, ATP_PATH), "status": status, "retry_after": 1}])
    response = api.get(url(ROUTING, ATP_PATH))
    assert response.status_code == status
    assert_conforms(ROUTING_PORTAL, ATP_PORTAL_PATH, response)
    assert response.headers["Retry-After"] == "1"


# -- Associate App config ------------------------------------------------------------------------


def test_associate_app_default_document_conforms(api: httpx.Client) -> None:
    got = api.get(url(ASSOCIATE_APP, APP_PATH))
    assert_conforms(ASSOCIATE_APP, APP_PATH, got)
    document = got.json()
    assert document["ui_configurations"].get("use_new_om_ui", False) is False
    # "Realistic": more than the two required sections.
    assert len(document) >= 5


def test_associate_app_put_round_trips(api: httpx.Client) -> None:
    document = api.get(url(ASSOCIATE_APP, APP_PATH)).json()
    document["ui_configurations"]["use_new_om_ui"] = True
    put = api.put(url(ASSOCIATE_APP, APP_PATH), json=document)
    assert put.status_code == 200
    assert_conforms(ASSOCIATE_APP, APP_PATH, put)
    assert api.get(url(ASSOCIATE_APP, APP_PATH)).json() == document


def _app_doc(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from reconciler.sandbox.state import default_associate_app_config

    document = copy.deepcopy(default_associate_app_config())
    change(document)
    return document


@pytest.mark.parametrize(
    "document",
    [
        _app_doc(lambda d: d.update(unknown_section={})),
        _app_doc(lambda d: d["ui_configurations"].update(use_new_om_uii=True)),
        _app_doc(lambda d: d["commerce_components"].pop("barcode_types")),
        _app_doc(lambda d: d.pop("commerce_components")),
        _app_doc(lambda d: d.pop("return_process_configuration")),
        _app_doc(lambda d: d["ui_configurations"].update(use_new_om_ui="yes")),
        _app_doc(
            lambda d: d.update(
                ui_configurations={"hide_selling": True},
                release_toggles={"drawer_navigation": False},
            )
        ),
        {},
    ],
    ids=[
        "unknown-top-level",
        "unknown-nested",
        "missing-nested-required",
        "missing-commerce_components",
        "missing-return_process_configuration",
        "wrong-type",
        "hide_selling-needs-drawer_navigation",
        "empty",
    ],
)
def test_associate_app_rejects_invalid_documents(
    api: httpx.Client, sandbox: SandboxApp, document: dict[str, Any]
) -> None:
    before = sandbox.state(TENANT)["associate_app_config"]
    response = api.put(url(ASSOCIATE_APP, APP_PATH), json=document)
    assert response.status_code == 422
    assert_conforms(ASSOCIATE_APP, APP_PATH, response)
    assert response.json()["messages"]
    assert sandbox.state(TENANT)["associate_app_config"] == before


def test_associate_app_rejects_unparsable_json(api: httpx.Client) -> None:
    response = api.put(
        url(ASSOCIATE_APP, APP_PATH),
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert_conforms(ASSOCIATE_APP, APP_PATH, response)


# -- the sample availability webhook -------------------------------------------------------------

PROBE = {
    "products": [
        {"product_id": "1000061", "external_identifier": "1000061"},
        {"product_id": "10000211", "external_identifier": "10000211"},
    ],
    "fulfillment_locations": ["US01", "US02", "DC01"],
}


def _webhook(client: httpx.Client, body: Any, key: str | None) -> httpx.Response:
    headers = {"Authorization": key} if key is not None else {}
    return client.post("/_sandbox/webhook/availabilities", json=body, headers=headers)


def test_sample_webhook_answers_every_product_and_location(
    sandbox_http: httpx.Client, sandbox: SandboxApp
) -> None:
    response = _webhook(sandbox_http, PROBE, sandbox.config.webhook_api_key)
    assert response.status_code == 200
    assert_conforms(AVAILABILITY_HOOK, "/availabilities", response)
    pairs = {
        (a["product_id"], a["fulfillment_location"]) for a in response.json()["availabilities"]
    }
    assert pairs == {
        (p["product_id"], loc) for p in PROBE["products"] for loc in PROBE["fulfillment_locations"]
    }


@pytest.mark.parametrize(
    "body",
    [
        {"fulfillment_locations": ["US01"]},
        {"products": PROBE["products"]},
        {"products": [{"product_id": "1"}], "fulfillment_locations": ["US01"]},
        {"products": PROBE["products"], "fulfillment_locations": [1]},
        {"products": "1000061", "fulfillment_locations": ["US01"]},
    ],
)
def test_sample_webhook_rejects_invalid_requests(
    sandbox_http: httpx.Client, sandbox: SandboxApp, body: Any
) -> None:
    response = _webhook(sandbox_http, body, sandbox.config.webhook_api_key)
    assert response.status_code == 400
    assert_conforms(AVAILABILITY_HOOK, "/availabilities", response)


@pytest.mark.parametrize(
    "key", [None, "wrong-key-wrong-key-wrong", "Bearer sandbox-webhook-api-key-0001"]
)
def test_sample_webhook_requires_the_api_key(
    sandbox_http: httpx.Client, sandbox: SandboxApp, key: str | None
) -> None:
    response = _webhook(sandbox_http, PROBE, key)
    assert response.status_code == 401
    assert sandbox.config.webhook_api_key not in response.text
    assert [r["status"] for r in sandbox.webhook_requests()] == [401]


def test_associate_app_patch_whose_merged_document_fails_the_schema_is_422(
    api: httpx.Client, sandbox: SandboxApp
) -> None:
    """DEVIATIONS["PATCH merge"]: a schema-valid merge patch whose merged document is not
    (`hide_selling: true` into a document whose `release_toggles` lack the `drawer_navigation`
    it needs) is refused 422, as a PUT of that document would be; the document stays as it was.
    The spec does not say what NewStore answers; schemathesis found the case."""
    document = _app_doc(lambda d: d.update(release_toggles={}))
    document["ui_configurations"]["hide_selling"] = False
    assert api.put(url(ASSOCIATE_APP, APP_PATH), json=document).status_code == 200
    patch = {"ui_configurations": {"hide_selling": True}}
    response = api.patch(url(ASSOCIATE_APP, APP_PATH), json=patch)
    assert response.status_code == 422
    assert_conforms(ASSOCIATE_APP, APP_PATH, response)
    assert any("drawer_navigation" in m for m in response.json()["messages"])
    assert sandbox.state(TENANT)["associate_app_config"] == document
