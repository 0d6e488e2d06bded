"""External OMS flag: `POST /v0/config/sales_order/external_oms`.

NewStore answers in a wrapped shape (`{"value": {"enabled": ..}, "updated_at": ..}`); an older
spec version answered flat (`{"enabled": ..}`); both are read. Never set (missing or null)
reads as off. There is no DELETE: "off" is `enabled: false`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from reconciler.errors import RejectedError
from reconciler.model import Fields, Value
from reconciler.newstore.settings.base import Setting, retry_on_conflict

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient


class ExternalOMS(Setting):
    key = "external_oms"
    path = "/v0/config/sales_order/external_oms"
    deletable = False
    default: ClassVar[Value] = {"enabled": False}

    def read(self, client: NewStoreClient) -> Value:
        response = client.request(self.key, "GET", self.path, ok=(200, 204))
        body = client.body(self.key, response)
        # Wrapped shape first; the legacy flat shape has `enabled` at the top.
        inner: Any = body.get("value") if isinstance(body, dict) and "value" in body else body
        if inner is None:
            return {"enabled": False}
        enabled = inner.get("enabled") if isinstance(inner, dict) else "?"
        if enabled is None:
            return {"enabled": False}
        if not isinstance(enabled, bool):
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                self.path,
                'unexpected answer: expected {"value": {"enabled": true|false}}',
                response=response,
            )
        return {"enabled": enabled}

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        # lazy: start-up time (httpx; `validate` loads the settings, never the client)
        from reconciler.newstore.problem import request_id_of

        desired = {"enabled": bool(value["enabled"])}

        def send() -> str | None:
            response = client.request(
                self.key, "POST", self.path, json={"value": desired}, ok=(200, 201, 204)
            )
            return request_id_of(response)

        # 409 concurrent_update_on_tenant_setting: someone else wrote at the same time.
        return retry_on_conflict(send, lambda: self.read(client) == desired)
