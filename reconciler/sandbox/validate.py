"""Request-body validation, as NewStore's published specs define it.

Each check returns every problem found (empty list = valid), phrased like NewStore's own
messages. The Associate App document and the availability webhook request are validated
against the schemas in the vendored spec files (`specs/`, verbatim copies of
`../shared/newstore-api/openapi/`, see `specs/SOURCE.md`), so the sandbox cannot drift from
the spec by hand-copying.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

SPECS_DIR = Path(__file__).with_name("specs")
ASSOCIATE_APP_SPEC = "configuration-apps-associate-app-config-api_config.yaml"
AVAILABILITY_HOOK_SPEC = "webhooks-availability_hook.yaml"
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
STORE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_MESSAGES = 20


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def check_external_oms(body: Any) -> list[str]:
    """POST /v0/config/sales_order/external_oms: `{"value": {"enabled": bool}}`."""
    if not isinstance(body, dict):
        return ["The request body must be a JSON object."]
    if "value" not in body:
        return ["Missing required property: value."]
    value = body["value"]
    if not isinstance(value, dict):
        return ["Property value must be an object."]
    if "enabled" not in value:
        return ["Missing required property: value.enabled."]
    if not isinstance(value["enabled"], bool):
        return ["Property value.enabled must be a boolean."]
    return []


def check_webhook_config(body: Any) -> list[str]:
    """PUT /v0/config/availability/webhook: all four fields required; unknown fields ignored
    (the spec does not forbid them)."""
    if not isinstance(body, dict):
        return ["The request body must be a JSON object."]
    problems = [
        f"Please provide {key}."
        for key in ("url", "api_key", "external_identifier", "timeout")
        if key not in body
    ]
    url = body.get("url")
    if "url" in body:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or not _SCHEME_RE.fullmatch(parts.scheme) or not parts.netloc:
            problems.append("url must be an absolute URI.")
    api_key = body.get("api_key")
    if "api_key" in body and not (isinstance(api_key, str) and len(api_key) >= 20):
        problems.append("api_key must be a string of at least 20 characters.")
    if "external_identifier" in body and body["external_identifier"] != "product_id":
        problems.append("external_identifier: currently only 'product_id' is supported.")
    timeout = body.get("timeout")
    if "timeout" in body and not (_is_int(timeout) and 5 <= timeout <= 60):
        problems.append("timeout must be an integer between 5 and 60.")
    return problems


def check_order_webhook(body: Any) -> list[str]:
    """POST /v0/config/sales_order/external_order_webhook: `{"value": {url, api_key, timeout?}}`
    (url an absolute URI, api_key non-empty, timeout an integer of at most 25)."""
    if not isinstance(body, dict):
        return ["The request body must be a JSON object."]
    value = body.get("value")
    if not isinstance(value, dict):
        return ["Please provide value as an object."]
    problems = [f"Please provide value.{key}." for key in ("url", "api_key") if key not in value]
    url = value.get("url")
    if "url" in value:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or not _SCHEME_RE.fullmatch(parts.scheme) or not parts.netloc:
            problems.append("value.url must be an absolute URI.")
    api_key = value.get("api_key")
    if "api_key" in value and not (isinstance(api_key, str) and api_key):
        problems.append("value.api_key must be a non-empty string.")
    timeout = value.get("timeout")
    if "timeout" in value and not (_is_int(timeout) and timeout <= 25):
        problems.append("value.timeout must be an integer of at most 25.")
    return problems


def check_external_atp(body: Any) -> list[str]:
    """POST /v0/config/routing/uses_external_atp: `{"value": bool}`."""
    if not isinstance(body, dict):
        return ["request body: expected a JSON object"]
    if "value" not in body:
        return ["value: field required"]
    if not isinstance(body["value"], bool):
        return ["value: value could not be parsed to a boolean"]
    return []


def check_associate_app(doc: Any) -> list[str]:
    """PUT /api/v1/associate-app/config: the spec's strict `configSchema`."""
    return _schema_problems(_associate_app_validator(), doc)


def check_availability_request(body: Any) -> list[str]:
    """POST {webhook url}: the request body NewStore sends to an availability webhook."""
    return _schema_problems(_availability_request_validator(), body)


def request_problems(spec: str, path: str, method: str, body: Any) -> list[str]:
    """A request body's problems against the request schema of `method path` in `spec` (an
    endpoint without a check of its own)."""
    return _schema_problems(_request_validator(spec, path, method.lower()), body)


def _schema_problems(validator: Validator, doc: Any) -> list[str]:
    problems = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{where}: {error.message}")
        if len(problems) == _MAX_MESSAGES:
            break
    return problems


@functools.cache
def load_spec(name: str) -> dict[str, Any]:
    # lazy: start-up time (the specs are read on first use)
    import yaml

    with (SPECS_DIR / name).open(encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.safe_load(fh)
    return doc


@functools.cache
def _associate_app_validator() -> Validator:
    # lazy: start-up time (jsonschema)
    from jsonschema import Draft202012Validator

    schema = load_spec(ASSOCIATE_APP_SPEC)["components"]["schemas"]["configSchema"]
    validator: Validator = Draft202012Validator(schema)
    return validator


@functools.cache
def _availability_request_validator() -> Validator:
    # lazy: start-up time (jsonschema)
    from jsonschema import Draft202012Validator

    operation = load_spec(AVAILABILITY_HOOK_SPEC)["paths"]["/availabilities"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    validator: Validator = Draft202012Validator(schema)
    return validator


@functools.cache
def _request_validator(spec: str, path: str, method: str) -> Validator:
    # lazy: start-up time (jsonschema)
    from jsonschema import Draft202012Validator

    operation = load_spec(spec)["paths"][path][method]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    validator: Validator = Draft202012Validator(schema)
    return validator
