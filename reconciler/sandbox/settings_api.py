"""The settings APIs of the sandbox: the handlers of the endpoint table's shapes.

Each endpoint of `endpoints.ENDPOINTS` is served by the handler of its shape and the method
(WRAPPED GET/POST, BARE GET/PUT/DELETE, DOCUMENT GET/PUT/PATCH/DELETE), with the entry's hooks
for what differs. A handler takes the tenant's state (the caller holds the lock and has
authorised the request) and answers the response and whether the state changed; validation is
the entry's (`sandbox.validate`). The Associate App documents take PATCH as an RFC 7386 merge
patch, validated on the merged result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeAlias

from werkzeug.wrappers import Request, Response

from reconciler.clock import now_iso
from reconciler.sandbox.endpoints import BARE, DOCUMENT, WRAPPED, Absent, Endpoint
from reconciler.sandbox.responses import (
    empty,
    json_body,
    json_response,
    mask_key,
    merge_patch,
    parse_body,
    problem,
)
from reconciler.sandbox.state import TenantState

Result: TypeAlias = tuple[Response, bool]  # the response, and whether the state changed
Handler: TypeAlias = Callable[[Endpoint, TenantState, Request, str], Result]


class SettingsAPI:
    """The settings endpoints of one sandbox. `mask_webhook_api_key`: GET/PUT of the webhook
    configs answer the api_key masked."""

    def __init__(self, *, mask_webhook_api_key: bool) -> None:
        self.mask_webhook_api_key = mask_webhook_api_key
        self._handlers: dict[tuple[str, str], Handler] = {
            (WRAPPED, "GET"): self._get_wrapped,
            (WRAPPED, "POST"): self._post_wrapped,
            (BARE, "GET"): self._get_bare,
            (BARE, "PUT"): self._put_bare,
            (BARE, "DELETE"): self._delete,
            (DOCUMENT, "GET"): self._get_document,
            (DOCUMENT, "PUT"): self._put_document,
            (DOCUMENT, "PATCH"): self._patch_document,
            (DOCUMENT, "DELETE"): self._delete,
        }

    def handle(self, entry: Endpoint, state: TenantState, request: Request, rid: str) -> Result:
        """Answer `request` (a method routing admitted for `entry`)."""
        method = "GET" if request.method == "HEAD" else request.method
        return self._handlers[(entry.shape, method)](entry, state, request, rid)

    def _masked_key(self, state: TenantState, key: str) -> str:
        """The api_key as GET answers it: clear, masked but for its last four characters,
        (option "edges") but for its first and last four, or (option "full") wholly masked."""
        option = state.options["mask_webhook_api_key"]
        if option == "full":
            # Nothing of the key left to compare: what a client must re-assert to be sure of.
            return "*" * max(len(key), 20)
        if option == "edges":
            return key[:4] + "*" * max(len(key) - 8, 4) + key[-4:]
        if self.mask_webhook_api_key or option:
            return mask_key(key)
        return key

    def _shown(self, entry: Endpoint, state: TenantState, value: Any) -> Any:
        return entry.show(value, lambda key: self._masked_key(state, key))

    # -- WRAPPED: {"value": .., "updated_at": ..} ------------------------------------------------

    def _get_wrapped(
        self, entry: Endpoint, state: TenantState, request: Request, rid: str
    ) -> Result:
        value = _current(entry, state, request)
        if value is None and entry.absent is not None:
            return _absent(entry.absent, rid), False
        shown = self._shown(entry, state, value)
        if entry.unwrapped_when is not None and entry.unwrapped_when(state.options):
            return json_response(shown), False
        updated_at = state.updated_at.get(entry.state_key)
        if updated_at is None and entry.updated_at_required:
            # The spec requires a date-time even for a tenant where nobody set it yet.
            updated_at = state.created_at
        return json_response({"value": shown, "updated_at": updated_at}), False

    def _post_wrapped(
        self, entry: Endpoint, state: TenantState, request: Request, rid: str
    ) -> Result:
        body, problems = parse_body(request, entry.write_problems)
        if problems:
            return _bad_request(entry, rid, problems), False
        _set(entry, state, request, entry.store(body["value"]))
        return empty(200), True

    # -- BARE: the object itself, 204 when there is none -----------------------------------------

    def _get_bare(self, entry: Endpoint, state: TenantState, request: Request, rid: str) -> Result:
        value = _current(entry, state, request)
        if value is None:
            return _absent(entry.absent or Absent(204), rid), False
        return json_response(self._shown(entry, state, value)), False

    def _put_bare(self, entry: Endpoint, state: TenantState, request: Request, rid: str) -> Result:
        body, problems = parse_body(request, entry.write_problems)
        if problems:
            return _bad_request(entry, rid, problems), False
        stored = entry.store(body)
        _set(entry, state, request, stored)
        return json_response(self._shown(entry, state, stored)), True

    def _delete(self, entry: Endpoint, state: TenantState, request: Request, rid: str) -> Result:
        value = _current(entry, state, request)
        if value is None:
            absent = entry.absent or Absent(404, "Not found.")
            if entry.delete_absent is not None:
                absent = entry.delete_absent(state.options)
            return _absent(absent, rid), False
        _set(entry, state, request, None)
        # A document's DELETE answers the document it removed; a config's, nothing.
        return (json_response(value) if entry.shape == DOCUMENT else empty(200)), True

    # -- DOCUMENT: the Associate App documents (strict schema, whole-document writes) ----------

    def _get_document(
        self, entry: Endpoint, state: TenantState, request: Request, rid: str
    ) -> Result:
        value = _current(entry, state, request)
        if value is None:
            # (NewStore's 422 "Configuration file is not readable" is a document it cannot
            # read: script it with a fault rule.)
            return _absent(entry.absent or Absent(404, "Not found."), rid), False
        return json_response(value), False

    def _put_document(
        self, entry: Endpoint, state: TenantState, request: Request, rid: str
    ) -> Result:
        doc = _checked_document(entry, request, rid)
        if isinstance(doc, tuple):
            return doc
        _set(entry, state, request, doc)
        return json_response(doc), True

    def _patch_document(
        self, entry: Endpoint, state: TenantState, request: Request, rid: str
    ) -> Result:
        # The spec does not say how PATCH merges; the sandbox applies a JSON merge patch
        # (RFC 7386: objects merge, null removes a key, anything else replaces) and validates
        # the result as a whole, as PUT does.
        base = _current(entry, state, request)
        if base is None:
            return self._get_document(entry, state, request, rid)
        merged = _checked_document(entry, request, rid, patching=base)
        if isinstance(merged, tuple):
            return merged
        _set(entry, state, request, merged)
        return json_response(merged), True


def _current(entry: Endpoint, state: TenantState, request: Request) -> Any:
    """The entry's stored value (a per-store entry's: the requested store's), None if unset."""
    value = state.values[entry.state_key]
    if entry.per_store:
        return value.get(request.environ["sandbox.store"])
    return value


def _set(entry: Endpoint, state: TenantState, request: Request, value: Any) -> None:
    """Store `value` (None: remove it) and, for a stamped entry, when."""
    if entry.per_store:
        documents = state.values[entry.state_key]
        store = request.environ["sandbox.store"]
        if value is None:
            documents.pop(store, None)
        else:
            documents[store] = value
    else:
        state.values[entry.state_key] = value
    if entry.stamped:
        state.updated_at[entry.state_key] = now_iso()


def _absent(absent: Absent, rid: str) -> Response:
    if absent.message is None:
        return empty(absent.status)
    return problem(absent.status, rid, error_code="not_found", message=absent.message)


def _bad_request(entry: Endpoint, rid: str, problems: list[str]) -> Response:
    if entry.errors == "messages":
        return problem(400, rid, messages=problems)
    return problem(400, rid, error_code="bad_request", message=" ".join(problems))


def _checked_document(
    entry: Endpoint, request: Request, rid: str, *, patching: dict[str, Any] | None = None
) -> dict[str, Any] | Result:
    """The document a PUT (or, `patching` a document, a PATCH) asks for, or NewStore's answer
    refusing it: 400 for a body that is not JSON, 422 for a document that fails the strict
    schema (a PATCH is validated on the merged result, as a PUT is)."""
    try:
        body = json_body(request)
    except ValueError:
        message = "Invalid JSON. Received configuration could not be parsed."
        return problem(400, rid, error_code="bad_request", message=message), False
    doc = copy.deepcopy(body) if patching is None else merge_patch(patching, body)
    problems = entry.write_problems(doc)
    if problems:
        return problem(422, rid, messages=problems), False
    valid: dict[str, Any] = doc  # the schema admits only an object
    return valid
