"""External order webhook: `/v0/config/sales_order/external_order_webhook`.

NewStore calls it (a base URL it adds routes to) for external order details and purchase
history, which the Associate App's new order UI shows. GET answers
`{"value": {url, api_key, timeout}, "updated_at": ..}`; a tenant that never set it gets no value
(404, 204 or `value: null`), which reads as ABSENT. POST sets the whole value; 409
`concurrent_update_on_tenant_setting` is re-read and retried. There is no DELETE, so the file
cannot say `absent`. The api_key is secret and may come back masked: handled exactly like the
availability webhook's (the shared `is_masked` and `masked_value`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from reconciler.errors import RejectedError
from reconciler.model import ABSENT, Fields, Value, unreadable
from reconciler.newstore.settings.availability_webhook import is_masked, masked_value
from reconciler.newstore.settings.base import Setting, retry_on_conflict

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient

FIELDS = ("url", "api_key", "timeout")
DEFAULT_TIMEOUT = 15  # the spec: "the default is 15 and the maximum allowed value is 25"


class ExternalOrderWebhook(Setting):
    key = "external_order_webhook"
    path = "/v0/config/sales_order/external_order_webhook"
    secret_fields = frozenset({"api_key"})
    field_order = FIELDS
    deletable = False
    default: ClassVar[Value] = ABSENT
    field_defaults: ClassVar[Mapping[str, Any]] = {"timeout": DEFAULT_TIMEOUT}
    url_fields = frozenset({"url"})
    integer_fields = frozenset({"timeout"})
    schema: ClassVar[Mapping[str, Any]] = {
        "title": "External order webhook config",
        "description": (
            "The webhook NewStore calls (a base URL it adds routes to) for external order "
            "details and purchase history, which the Associate App's new order UI shows. "
            "NewStore's API has no DELETE for it, so `absent` is not allowed; omit to leave"
            " unmanaged. Needed while `use_new_om_ui` is true anywhere (rule 4)."
        ),
        "if": {
            "type": "string",
        },
        "then": {
            "not": True,
            "errorMessage": (
                "NewStore's API cannot delete the external order webhook, so `absent` is "
                "not allowed: give a mapping (url, api_key, timeout), or remove the key to "
                "leave it unmanaged"
            ),
        },
        "else": {
            "$ref": "#/$defs/external_order_webhook",
        },
    }
    schema_defs: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "external_order_webhook": {
            "title": "External order webhook config",
            "type": "object",
            "additionalProperties": False,
            "required": ["url", "api_key"],
            "properties": {
                "url": {
                    "title": "Webhook base URL",
                    "description": (
                        "Base URL NewStore adds the order routes to. Must be https, except for "
                        "loopback hosts."
                    ),
                    "type": "string",
                    "format": "uri",
                    "minLength": 1,
                },
                "api_key": {
                    "title": "API key",
                    "description": (
                        "Secret NewStore sends to the webhook, at least 20 characters (a "
                        "shorter one cannot be told apart from NewStore's masked answers): must"
                        " be exactly one `${NAME}` reference, never a literal."
                    ),
                    "type": "string",
                    "minLength": 20,
                },
                "timeout": {
                    "title": "Webhook timeout (seconds)",
                    "description": (
                        "Whole seconds NewStore waits for the webhook, 1-25 (default 15)."
                    ),
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 25,
                },
            },
        },
    }

    def read(self, client: NewStoreClient) -> Value:
        response = client.request(self.key, "GET", self.path, ok=(200, 204, 404))
        if response.status_code in (204, 404):
            return ABSENT
        body = client.body(self.key, response)
        inner: Any = body.get("value") if isinstance(body, dict) else "?"
        if inner is None:
            return ABSENT
        if not isinstance(inner, dict) or not isinstance(inner.get("url"), str):
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                self.path,
                'unexpected answer: expected {"value": {"url": .., "api_key": .., ..}}',
                response=response,
            )
        value: Fields = {
            "url": inner["url"],
            "api_key": inner.get("api_key"),
            "timeout": inner.get("timeout", DEFAULT_TIMEOUT),
        }
        if is_masked(value["api_key"]):
            # What the mask leaves visible is compared with the desired key, as for the
            # availability webhook (the same helpers).
            value["api_key"] = masked_value(value["api_key"])
        return value

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        # lazy: start-up time (httpx; `validate` loads the settings, never the client)
        from reconciler.newstore.problem import request_id_of

        if unreadable(value.get("api_key")):
            raise ValueError("cannot write an order webhook config whose api_key is unknown")
        desired = {name: value[name] for name in FIELDS}

        def send() -> str | None:
            response = client.request(
                self.key, "POST", self.path, json={"value": desired}, ok=(200, 201, 204)
            )
            return request_id_of(response)

        # 409 concurrent_update_on_tenant_setting: someone else wrote at the same time.
        return retry_on_conflict(send, lambda: self.read(client) == desired)
