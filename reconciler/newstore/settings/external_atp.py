"""External ATP flag: `POST /v0/config/routing/uses_external_atp`.

NewStore answers `{"value": bool|null, "updated_at": ..}`; null means off (NewStore computes
ATP from its own stock). Written as `{"value": bool}`. No DELETE: "off" is `false`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from reconciler.errors import RejectedError
from reconciler.model import Fields, Value
from reconciler.newstore.settings.base import Setting

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient


class ExternalATP(Setting):
    key = "external_atp"
    path = "/v0/config/routing/uses_external_atp"
    deletable = False
    default: ClassVar[Value] = {"enabled": False}

    def read(self, client: NewStoreClient) -> Value:
        response = client.request(self.key, "GET", self.path, ok=(200, 204))
        body = client.body(self.key, response)
        enabled = body.get("value") if isinstance(body, dict) else body
        if enabled is None:
            return {"enabled": False}
        if not isinstance(enabled, bool):
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                self.path,
                'unexpected answer: expected {"value": true|false|null}',
                response=response,
            )
        return {"enabled": enabled}

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        # lazy: start-up time (httpx; `validate` loads the settings, never the client)
        from reconciler.newstore.problem import request_id_of

        response = client.request(
            self.key,
            "POST",
            self.path,
            json={"value": bool(value["enabled"])},
            ok=(200, 201, 204),
        )
        return request_id_of(response)
