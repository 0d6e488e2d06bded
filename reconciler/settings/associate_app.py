"""Associate App `ui_configurations.use_new_om_ui`, inside `/api/v1/associate-app/config`.

The document is large and strictly validated, and only PUT of the whole document has
documented semantics (PATCH's merge rules are not). So a write is: GET the document right
before writing (there is no ETag to guard with), change that one field, PUT everything back
with every other key exactly as read, in the same order. The reconciler never creates the
document: it has required sections the reconciler knows nothing about.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from reconciler.errors import RejectedError
from reconciler.model import Fields, Value
from reconciler.settings.base import Setting

if TYPE_CHECKING:
    import httpx

    from reconciler.newstore.client import NewStoreClient

SECTION = "ui_configurations"
FIELD = "use_new_om_ui"
# 404: no document yet (the app runs on its defaults). 422 "Configuration file is not
# readable" is not that: a document exists that NewStore cannot read, so what the app shows is
# unknown, and reading it as false would judge rule 3 on an invented value.
NO_DOCUMENT = 404
UNREADABLE = 422


class AssociateApp(Setting):
    key = "associate_app"
    path = "/api/v1/associate-app/config"
    deletable = False
    default: ClassVar[Value] = {"use_new_om_ui": False}

    def read(self, client: NewStoreClient) -> Value:
        response = self._get(client)
        if response.status_code == NO_DOCUMENT:
            # No readable document: the app runs on its defaults, i.e. the NewStore order UI.
            return {FIELD: False}
        ui = self._document(client, response).get(SECTION)
        enabled = ui.get(FIELD) if isinstance(ui, dict) else None
        if enabled is not None and not isinstance(enabled, bool):
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                self.path,
                f"unexpected answer: {SECTION}.{FIELD} is not true/false",
                response=response,
            )
        return {FIELD: bool(enabled)}

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        from reconciler.newstore.problem import request_id_of

        response = self._get(client)
        if response.status_code == NO_DOCUMENT:
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                self.path,
                "the tenant has no readable Associate App configuration document to change",
                response=response,
                hint="Create it in NewStore first (it has required sections the reconciler "
                f"does not manage); the reconciler only sets {SECTION}.{FIELD}.",
            )
        document = self._document(client, response)
        ui = document.get(SECTION)
        if not isinstance(ui, dict):
            ui = document[SECTION] = {}
        ui[FIELD] = bool(value[FIELD])
        response = client.request(self.key, "PUT", self.path, json=document, ok=(200, 201, 204))
        return request_id_of(response)

    def _get(self, client: NewStoreClient) -> httpx.Response:
        response = client.request(self.key, "GET", self.path, ok=(200, NO_DOCUMENT, UNREADABLE))
        if response.status_code == UNREADABLE:
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                self.path,
                "NewStore cannot read the tenant's Associate App configuration (422), so whether "
                f"{SECTION}.{FIELD} is on is unknown; nothing is judged or written on a guess",
                response=response,
                hint="Fix or replace the document in NewStore, then run again.",
            )
        return response

    def _document(self, client: NewStoreClient, response: httpx.Response) -> dict[str, Any]:
        document = client.body(self.key, response)
        if not isinstance(document, dict):
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                self.path,
                "unexpected answer: the configuration document is not a JSON object",
                response=response,
            )
        return document
