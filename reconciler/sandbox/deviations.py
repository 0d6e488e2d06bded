"""Where the sandbox deliberately differs from NewStore's published specs, and why: the one list.

The property-based conformance test (tests/test_sandbox_schemathesis.py) runs schemathesis over the
vendored specs against the sandbox; it applies exactly these adjustments and nothing else, so a
difference that is not listed here fails the suite.
"""

from __future__ import annotations

from typing import Final

SPEC_ADJUSTMENTS: Final[dict[str, str]] = {
    "store path parameter": (
        "The Associate App spec writes the store path as `/config/{$storeId}` and declares no "
        "path parameter; the test renames it `{storeId}` and declares it, drawn from three store "
        "ids (so that a document one request writes is one another request reads), so that "
        "requests can be generated at all."
    ),
    "request bodies required": (
        "The Associate App PUT and PATCH operations do not mark their request body required, "
        "but a missing body cannot be parsed and is answered 400 (documented: 'Invalid JSON'); "
        "the test marks the body required so that generated requests are ones NewStore accepts."
    ),
}

# (method, path template as in the spec) -> {status: the deviation that explains it}: answers to
# schema-valid requests that are not 2xx, and why that is right.
EXPECTED_REJECTIONS: Final[dict[tuple[str, str], dict[int, str]]] = {
    ("GET", "/config/{$storeId}"): {404: "no store document"},
    ("PATCH", "/config"): {422: "PATCH merge"},
    ("PATCH", "/config/{$storeId}"): {404: "no store document", 422: "PATCH merge"},
    ("DELETE", "/config/{$storeId}"): {404: "no store document"},
    ("POST", "/config/sales_order/external_order_webhook"): {400: "webhook url needs a host"},
    ("GET", "/config/sales_order/external_order_webhook"): {404: "order webhook never set"},
}

DEVIATIONS: Final[dict[str, str]] = {
    "401 without a token": (
        "Every operation but the Associate App GETs needs a bearer token, and the sandbox answers "
        "401 when it is missing, as NewStore does; the specs omit 401. The conformance test "
        "always sends a token."
    ),
    "external_identifier only product_id": (
        "PUT /v0/config/availability/webhook refuses any external_identifier but `product_id` "
        "(400): the documentation says only product_id is supported, the schema allows any "
        "string."
    ),
    "webhook url needs a host": (
        "The order and availability webhook `url`s must be absolute URIs with a host (400 "
        "otherwise): NewStore calls them; the schemas' `format: uri` also admits `urn:x`."
    ),
    "order webhook never set": (
        "GET /v0/config/sales_order/external_order_webhook on a tenant that never set it answers "
        "404 (covered by the spec's `default` response); the spec's 200 requires a value."
    ),
    "no store document": (
        "GET, PATCH and DELETE of a store without a document of its own answer 404, as GET of a "
        "tenant without a global document does; the spec lists only 200 and 422 ('Configuration "
        "file is not readable'), which the reconciler treats as a document NewStore cannot read "
        "(an error, never 'off'). The spec does not say whether GET then returns the global "
        "document instead."
    ),
    "PATCH merge": (
        "PATCH applies a JSON merge patch (RFC 7386) and validates the result as a whole; the "
        "spec does not say how NewStore merges. So a schema-valid patch whose merged document is "
        "not (`hide_selling: true` into a document whose `release_toggles` lack the "
        "`drawer_navigation` it then needs) is answered 422, as a PUT of that document is."
    ),
}
