"""Associate App `ui_configurations.use_new_om_ui`, globally (`/api/v1/associate-app/config`)
and in the store documents the file lists (`/api/v1/associate-app/config/{storeId}`).

A store's own document replaces the global one for that store; deleting it gives the store the
global one again. The value is flat: `use_new_om_ui` (the global document) and, per managed
store, `stores.<id>.use_new_om_ui`: true/false, or None when the store has no document of its
own (it follows the global one). NewStore cannot list stores, so only the listed ones are read.

The documents are large and strictly validated, and only PUT of a whole document has documented
semantics (PATCH's merge rules are not). So a write is: GET the document right before writing
(there is no ETag to guard with), change that one field, PUT everything back with every other key
exactly as read, in the same order, then GET it again: the document read back may differ from the
one sent only at the managed field (anything else means NewStore or someone else changed it, and
is reported). The reconciler never creates the global document (it has required sections the
reconciler knows nothing about); a missing store document is created from the global one, which
is what the store shows until then.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from reconciler import jsonexact
from reconciler.diffing import changed_paths
from reconciler.errors import ChangedUnderneath, RejectedError
from reconciler.model import ABSENT, Fields, Value
from reconciler.newstore.settings.base import Setting

if TYPE_CHECKING:
    import httpx

    from reconciler.newstore.client import NewStoreClient

SECTION = "ui_configurations"
FIELD = "use_new_om_ui"
STORE_PREFIX = "stores."
# 404 on a store's document: it has none of its own and follows the global one. On the global
# document a 404 is unknown, like 422 "Configuration file is not readable": a tenant's app
# always has one, so a 404 there is NewStore failing to find it (or a transient error), and
# reading it as false would judge rules 3 and 4 on an invented value.
NO_DOCUMENT = 404
UNREADABLE = 422


def store_field(store: str) -> str:
    """The flat field name of a store's flag: `stores.<id>.use_new_om_ui`."""
    return f"{STORE_PREFIX}{store}.{FIELD}"


def store_of(name: str) -> str | None:
    """The store id of a flat field name, or None for the global flag."""
    if not name.startswith(STORE_PREFIX):
        return None
    return name[len(STORE_PREFIX) : -len(FIELD) - 1]


def _shown(flag: bool | None, store: str | None) -> str:
    if flag is None:
        return "404, no document of its own" if store is not None else "404"
    return f"{SECTION}.{FIELD} {'true' if flag else 'false'}"


def managed_stores(value: Value) -> list[str]:
    """The store ids `value` manages, in the order it lists them."""
    if value is ABSENT:
        return []
    return [store for store in map(store_of, value) if store is not None]


class AssociateApp(Setting):
    key = "associate_app"
    path = "/api/v1/associate-app/config"
    deletable = False
    default: ClassVar[Value] = {FIELD: False}
    field_order = (FIELD,)

    # -- the file -------------------------------------------------------------------------------

    def from_file(self, fields: Mapping[str, Any]) -> Value:
        value: Fields = {FIELD: bool(fields[FIELD])}
        stores = fields.get("stores") or {}
        for store in sorted(stores):
            entry = stores[store]
            value[store_field(store)] = bool(entry[FIELD]) if isinstance(entry, dict) else None
        return value

    def to_file(self, value: Fields) -> dict[str, Any]:
        out: dict[str, Any] = {FIELD: value.get(FIELD, False)}
        stores = {
            store: "absent"
            if value[store_field(store)] is None
            else {FIELD: value[store_field(store)]}
            for store in managed_stores(value)
        }
        if stores:
            out["stores"] = stores
        return out

    def notes(self, desired: Value) -> list[str]:
        listed = managed_stores(desired)
        which = f"checked: {', '.join(listed)}" if listed else "no store is listed"
        return [
            "associate_app: NewStore's API cannot list stores, so only the store documents "
            f"listed under associate_app.stores were checked ({which}); any other store with a "
            "document of its own may still have use_new_om_ui on"
        ]

    # -- reading --------------------------------------------------------------------------------

    def store_path(self, store: str) -> str:
        return f"{self.path}/{quote(store, safe='')}"

    def read(self, client: NewStoreClient) -> Value:
        return self.read_managed(client, ABSENT)

    def read_managed(self, client: NewStoreClient, desired: Value) -> Value:
        value: Fields = {FIELD: self._flag(client, self._global(client))}
        for store in managed_stores(desired):
            path = self.store_path(store)
            doc = self._get(client, path)
            value[store_field(store)] = None if doc is None else self._flag(client, doc, path)
        return value

    def _global(self, client: NewStoreClient) -> dict[str, Any]:
        """The tenant's global document; a 404 is an error (module docstring)."""
        document = self._get(client, self.path)
        assert document is not None  # _get raises on the global document's 404
        return document

    def _get(self, client: NewStoreClient, path: str) -> dict[str, Any] | None:
        """The document at `path`, or None when a store has none of its own (it follows the
        global one). An unreadable one, or no global one, is an error."""
        response = client.request(self.key, "GET", path, ok=(200, NO_DOCUMENT, UNREADABLE))
        status = response.status_code
        if status == NO_DOCUMENT and path != self.path:
            return None
        if status in (NO_DOCUMENT, UNREADABLE):
            store = path.rsplit("/", 1)[1] if path != self.path else None
            whose = "the tenant's" if store is None else f"store {store}'s"
            what = (
                f"NewStore cannot read {whose} Associate App configuration (422)"
                if status == UNREADABLE
                else "NewStore has no Associate App configuration document for the tenant (404)"
            )
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                path,
                f"{what}, so whether {SECTION}.{FIELD} is on is unknown; nothing is judged or "
                "written on a guess",
                response=response,
                hint="Fix or replace the document in NewStore, then run again."
                if status == UNREADABLE
                else "A 404 that passes goes away on a new run. If the tenant really has no "
                "document, create it in NewStore (it has required sections the reconciler does "
                f"not manage; the reconciler only sets {SECTION}.{FIELD}).",
            )
        return self._document(client, response, path)

    def _flag(self, client: NewStoreClient, document: dict[str, Any], path: str = "") -> bool:
        ui = document.get(SECTION)
        enabled = ui.get(FIELD) if isinstance(ui, dict) else None
        if enabled is not None and not isinstance(enabled, bool):
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                path or self.path,
                f"unexpected answer: {SECTION}.{FIELD} is not true/false",
            )
        return bool(enabled)

    # -- writing --------------------------------------------------------------------------------

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        return self.write_over(client, value, ABSENT)

    def write_over(self, client: NewStoreClient, value: Fields, before: Value) -> str | None:
        """Each document whose flag differs from `value` is rewritten (or, for a store whose
        value is None, deleted). The order inside the step cannot break a rule: each document
        moves from its before value to its after value, both of which keep the rules.

        Every document is read before the first write, and each read must agree with `before`
        (what the caller read just before, the step's re-read): a store found to have no
        document of its own where `before` saw one would otherwise get a copy of the global
        one PUT over its own. A contradiction is read again (`client.confirm`); if it persists,
        ChangedUnderneath, and nothing of the step is written."""
        seen: Mapping[str, Any] = before if before is not ABSENT else {}
        global_doc = self._read_agreeing(client, self.path, seen, value, FIELD)
        assert global_doc is not None  # _get raises on the global document's 404
        stores = {
            store: self._read_agreeing(
                client, self.store_path(store), seen, value, store_field(store), store
            )
            for store in managed_stores(value)
        }
        for store, doc in [(None, global_doc), *stores.items()]:
            self._check_verifiable(client, doc, store)
        request_id: str | None = None
        if self._flag(client, global_doc) != bool(value[FIELD]):
            global_doc, request_id = self._put(client, self.path, global_doc, bool(value[FIELD]))
        for store, doc in stores.items():
            path, want = self.store_path(store), value[store_field(store)]
            if want is None:
                if doc is not None:
                    request_id = self._delete(client, path) or request_id
                continue
            if doc is not None and self._flag(client, doc, path) == want:
                continue
            # A store without a document shows the global one: its copy changes nothing else.
            base = doc if doc is not None else copy.deepcopy(global_doc)
            _, request_id = self._put(client, path, base, bool(want))
        return request_id

    def _check_verifiable(
        self, client: NewStoreClient, document: dict[str, Any] | None, store: str | None
    ) -> None:
        """Refuse, before any write, a document the read-back could not compare: nothing may
        be written that cannot be verified afterwards."""
        levels = 0 if document is None else jsonexact.depth(document)
        if levels <= jsonexact.MAX_DEPTH:
            return
        whose = "the tenant's" if store is None else f"store {store}'s"
        path = self.path if store is None else self.store_path(store)
        raise client.error(
            RejectedError,
            self.key,
            "GET",
            path,
            f"{whose} Associate App document nests {levels} levels deep, more than the "
            f"{jsonexact.MAX_DEPTH} levels the reconciler can verify after writing it; nothing "
            "of this step was written",
            hint=f"Flatten the document in NewStore, or set {SECTION}.{FIELD} there by hand.",
        )

    def _read_agreeing(
        self,
        client: NewStoreClient,
        path: str,
        seen: Mapping[str, Any],
        value: Fields,
        name: str,
        store: str | None = None,
    ) -> dict[str, Any] | None:
        """The document at `path`, read until it agrees with `seen[name]` (when `seen` has it):
        its flag, or None for a store without a document of its own. One already at the
        target (`value[name]`: a concurrent apply got there first) agrees too."""

        def flat(doc: dict[str, Any] | None) -> bool | None:
            return None if doc is None else self._flag(client, doc, path)

        def agrees(doc: dict[str, Any] | None) -> bool:
            return name not in seen or flat(doc) in (seen[name], value[name])

        doc, reads = client.confirm(lambda: self._get(client, path), agrees)
        if not agrees(doc):
            whose = "the tenant's global document" if store is None else f"store {store}'s document"
            raise ChangedUnderneath(
                f"[{client.env.name}] {self.key} changed underneath: {whose} was read just "
                f"before as {_shown(seen[name], store)}, and NewStore now answers "
                f"{_shown(flat(doc), store)} ({reads} reads). Another apply or a hand edit "
                "changed it since it was read (or NewStore answers inconsistently); nothing of "
                "this step was written. Review a fresh plan."
            )
        return doc

    def _put(
        self, client: NewStoreClient, path: str, document: dict[str, Any], enabled: bool
    ) -> tuple[dict[str, Any], str | None]:
        # lazy: start-up time (httpx; `validate` loads the settings, never the client)
        from reconciler.newstore.problem import request_id_of

        sent = copy.deepcopy(document)
        ui = sent.get(SECTION)
        if not isinstance(ui, dict):
            ui = sent[SECTION] = {}
        ui[FIELD] = enabled
        response = client.request(
            self.key, "PUT", path, json=sent, ok=(200, 201, 204), exact_json=True
        )
        request_id = request_id_of(response)
        try:
            got = self._get(client, path)
        except RejectedError as exc:
            raise replace(
                exc,
                message=f"the document was written (request {request_id or 'id unknown'}) but "
                f"cannot be read back to verify it: {exc.message}",
                hint=f"{SECTION}.{FIELD} was written; review the document in NewStore before "
                "running again.",
            ) from None
        self._verify(client, path, sent, got, request_id)
        return sent, request_id

    def _delete(self, client: NewStoreClient, path: str) -> str | None:
        # lazy: start-up time (httpx; `validate` loads the settings, never the client)
        from reconciler.newstore.problem import request_id_of

        # A store without a document of its own (404): already gone.
        response = client.request(self.key, "DELETE", path, ok=(200, 204, NO_DOCUMENT))
        request_id = request_id_of(response)
        if self._get(client, path) is not None:
            raise client.error(
                RejectedError,
                self.key,
                "DELETE",
                path,
                "the store's document is still there after NewStore accepted its deletion",
                response=response,
            )
        return request_id

    def _verify(
        self,
        client: NewStoreClient,
        path: str,
        sent: dict[str, Any],
        got: dict[str, Any] | None,
        request_id: str | None,
    ) -> None:
        """The document read back must be the one sent: it differs from the one read before
        only at the managed field. Anything else moved (NewStore normalised it, or someone
        wrote in between): reported by path, never by value."""
        if got is None:
            moved = ["the whole document (it is gone)"]
        else:
            moved = [path or "the whole document" for path in changed_paths(sent, got)]
        if moved:
            shown = ", ".join(moved[:10]) + (
                f" and {len(moved) - 10} more" if len(moved) > 10 else ""
            )
            raise client.error(
                RejectedError,
                self.key,
                "PUT",
                path,
                f"the document read back after the write differs from the one written at {shown} "
                f"(request {request_id or 'id unknown'}): NewStore or someone else changed it",
                hint=f"{SECTION}.{FIELD} was written; review the document in NewStore before "
                "running again.",
            )

    def _document(
        self, client: NewStoreClient, response: httpx.Response, path: str
    ) -> dict[str, Any]:
        # Exact: the document goes back as it came, numbers to the digit (`jsonexact`).
        document = client.body(self.key, response, exact=True)
        if not isinstance(document, dict):
            raise client.error(
                RejectedError,
                self.key,
                "GET",
                path,
                "unexpected answer: the configuration document is not a JSON object",
                response=response,
            )
        return document
