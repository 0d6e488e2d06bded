"""Availability (ATP) webhook config: `/v0/config/availability/webhook`.

GET answers 200 with the config or 204 when none exists (ABSENT). The value is normalised to the
four managed fields; anything else NewStore adds is server-managed. NewStore may return the
api_key masked: then it reads as `Masked` (what the mask left visible, e.g. the last four
characters, which a desired key must match, or it is a real change) or, when nothing is left
visible, as UNKNOWN (never a change by itself). PUT replaces the whole config; DELETE removes
it and tolerates "already gone".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from reconciler.errors import RejectedError
from reconciler.model import ABSENT, UNKNOWN, Fields, Masked, Value
from reconciler.newstore.settings.base import Setting, retry_on_conflict

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient

FIELDS = ("url", "api_key", "external_identifier", "timeout")
MIN_API_KEY_LENGTH = 20  # NewStore's own minimum: anything shorter cannot be the real key


def is_masked(api_key: Any) -> bool:
    """Whether NewStore hid the api_key (it returns "****", "ab••••", or a short stub)."""
    return (
        not isinstance(api_key, str)
        or "*" in api_key
        or "•" in api_key
        or len(api_key) < MIN_API_KEY_LENGTH
    )


# Fewer visible characters than this (in total) are not compared: a one-character "suffix" of
# a mask such as "****x" is more likely decoration than the key's own end.
_MIN_VISIBLE = 2


def masked_value(api_key: Any) -> Masked | Any:
    """A masked api_key as what can still be compared: `Masked(prefix, suffix)` with the
    characters the mask left visible on either side, or UNKNOWN when none are (a short stub
    with no mask characters cannot tell its start from its end)."""
    if not isinstance(api_key, str):
        return UNKNOWN
    stars = [i for i, c in enumerate(api_key) if c in "*•"]
    if not stars:
        return UNKNOWN
    prefix, suffix = api_key[: stars[0]], api_key[stars[-1] + 1 :]
    if len(prefix) + len(suffix) < _MIN_VISIBLE:
        return UNKNOWN
    return Masked(prefix, suffix)


class AvailabilityWebhook(Setting):
    key = "availability_webhook"
    path = "/v0/config/availability/webhook"
    secret_fields = frozenset({"api_key"})
    field_order = FIELDS
    deletable = True
    default: ClassVar[Value] = ABSENT
    field_defaults: ClassVar[Mapping[str, Any]] = {"external_identifier": "product_id"}
    url_fields = frozenset({"url"})
    url_query_allowed = True
    integer_fields = frozenset({"timeout"})
    schema: ClassVar[Mapping[str, Any]] = {
        "title": "Availability (ATP) webhook config",
        "description": (
            "The webhook NewStore calls for availability when external ATP is on: a mapping"
            " (it must exist with exactly these values) or `absent` (it must not exist: "
            "delete it). Omit to leave unmanaged."
        ),
        "if": {
            "type": "string",
        },
        "then": {
            "const": "absent",
            "errorMessage": "must be a mapping (url, api_key, timeout) or `absent`",
        },
        "else": {
            "$ref": "#/$defs/availability_webhook",
        },
    }
    schema_defs: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "availability_webhook": {
            "title": "Availability webhook config",
            "type": "object",
            "additionalProperties": False,
            "required": ["url", "api_key", "timeout"],
            "properties": {
                "url": {
                    "title": "Webhook URL",
                    "description": (
                        "Absolute URL NewStore POSTs availability requests to. Must be https, "
                        "except for loopback hosts."
                    ),
                    "type": "string",
                    "format": "uri",
                    "minLength": 1,
                },
                "api_key": {
                    "title": "API key",
                    "description": (
                        "Secret sent as the `Authorization` header, at least 20 characters: "
                        "must be exactly one `${NAME}` reference, never a literal."
                    ),
                    "type": "string",
                    "minLength": 20,
                },
                "external_identifier": {
                    "title": "External identifier",
                    "description": (
                        "How the webhook identifies products. Only `product_id` is supported "
                        "(the default)."
                    ),
                    "const": "product_id",
                    "errorMessage": "only `product_id` is supported",
                },
                "timeout": {
                    "title": "Webhook timeout (seconds)",
                    "description": "Whole seconds NewStore waits for the webhook, 5-60.",
                    "type": "integer",
                    "minimum": 5,
                    "maximum": 60,
                },
            },
        },
    }

    def read(self, client: NewStoreClient) -> Value:
        response = client.request(self.key, "GET", self.path, ok=(200, 204))
        if response.status_code == 204:
            return ABSENT
        body = client.body(self.key, response)
        if body is None:
            return ABSENT
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                self.path,
                "unexpected answer: expected the webhook config object",
                response=response,
            )
        value: Fields = {name: body.get(name) for name in FIELDS}
        if is_masked(value["api_key"]):
            value["api_key"] = masked_value(value["api_key"])
        return value

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        # lazy: start-up time (httpx; `validate` loads the settings, never the client)
        from reconciler.newstore.problem import request_id_of

        if value.get("api_key") is UNKNOWN or isinstance(value.get("api_key"), Masked):
            raise ValueError("cannot write a webhook config whose api_key is unknown")
        desired = {name: value[name] for name in FIELDS}

        def send() -> str | None:
            response = client.request(self.key, "PUT", self.path, json=desired, ok=(200, 201, 204))
            return request_id_of(response)

        # 409: another update won the race. Done if it set what we want; a masked api_key
        # cannot be compared, so that case is sent again (a "set to this value" PUT).
        return retry_on_conflict(send, lambda: self.read(client) == desired)

    def delete(self, client: NewStoreClient) -> str | None:
        # lazy: start-up time (httpx; `validate` loads the settings, never the client)
        from reconciler.newstore.problem import request_id_of

        # NewStore does not say what DELETE answers when nothing is configured; "gone" is gone.
        response = client.request(self.key, "DELETE", self.path, ok=(200, 204, 404))
        return request_id_of(response)
