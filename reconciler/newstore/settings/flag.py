"""The shape every NewStore on/off flag shares: `GET|POST <path>`, no DELETE.

NewStore answers `{"value": <flag>, "updated_at": ..}` and takes `{"value": <flag>}`, where
`<flag>` is a boolean (`wire_field = None`, e.g. `uses_external_atp`) or an object holding one
(`wire_field = "enabled"`: `{"value": {"enabled": bool}}`, e.g. `external_oms`). A flag never
set (null, missing) reads as off, so "off" is a write of false, never a delete. The file says
`<key>: {enabled: bool}`. A flag module declares `key`, `path`, the words of its schema
(`title`, `description`, `enabled_description`) and what differs; `Flag` does the reading,
writing, checking and the schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from reconciler.errors import RejectedError
from reconciler.model import Fields, Value
from reconciler.newstore.settings.base import Setting, retry_on_conflict

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient

_UNEXPECTED = object()


class Flag(Setting):
    deletable = False
    default: ClassVar[Value] = {"enabled": False}
    field_order = ("enabled",)
    # None: the value is the boolean itself; a name: the value is `{name: bool}`.
    wire_field: ClassVar[str | None] = None
    # Whether an answer without "value" is the flag's value itself (an older, flat shape).
    flat_answers: ClassVar[bool] = False
    # Whether a 409 (a concurrent update won) is re-read and retried (`retry_on_conflict`).
    retries_conflicts: ClassVar[bool] = False
    # The words of its schema (`file_schema`): what the flag is, and what `enabled: true` does.
    title: ClassVar[str]
    description: ClassVar[str]
    enabled_description: ClassVar[str]

    def file_schema(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": f"{self.description} Omit to leave unmanaged.",
            "type": "object",
            "additionalProperties": False,
            "required": ["enabled"],
            "properties": {
                "enabled": {
                    "title": "Enabled",
                    "description": self.enabled_description,
                    "type": "boolean",
                }
            },
        }

    def enabled_of(self, value: Any) -> bool | None:
        """The flag in NewStore's `value` (what GET wraps, POST sends): True/False, or None when
        it is not a flag at all. Never set (null, or the field missing) is off."""
        if self.wire_field is not None and value is not None:
            value = value.get(self.wire_field) if isinstance(value, dict) else _UNEXPECTED
        if value is None:
            return False
        return value if isinstance(value, bool) else None

    def read(self, client: NewStoreClient) -> Value:
        response = client.request(self.key, "GET", self.path, ok=(200, 204))
        body = client.body(self.key, response)
        wrapped = isinstance(body, dict) and ("value" in body or not self.flat_answers)
        enabled = self.enabled_of(body.get("value") if wrapped else body)
        if enabled is None:
            expected = (
                '{"value": true|false|null}'
                if self.wire_field is None
                else f'{{"value": {{"{self.wire_field}": true|false}}}}'
            )
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                self.path,
                f"unexpected answer: expected {expected}",
                response=response,
            )
        return {"enabled": enabled}

    def wire_value(self, enabled: bool) -> Any:
        """NewStore's `value` for the flag `enabled`."""
        return enabled if self.wire_field is None else {self.wire_field: enabled}

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        # lazy: start-up time (httpx; `validate` loads the settings, never the client)
        from reconciler.newstore.problem import request_id_of

        desired = {"enabled": bool(value["enabled"])}
        body = {"value": self.wire_value(desired["enabled"])}

        def send() -> str | None:
            response = client.request(self.key, "POST", self.path, json=body, ok=(200, 201, 204))
            return request_id_of(response)

        if not self.retries_conflicts:
            return send()
        # 409 concurrent_update_on_tenant_setting: someone else wrote at the same time.
        return retry_on_conflict(send, lambda: self.read(client) == desired)
