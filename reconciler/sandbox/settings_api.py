"""The settings APIs of the sandbox: one handler per (endpoint, method), as NewStore's specs say.

External OMS, the availability webhook config, uses_external_atp, the external order webhook
and the Associate App documents (global and per store, with PATCH as an RFC 7386 merge patch).
A handler takes the tenant's state (the caller holds the lock and has authorised the request)
and answers the response and whether the state changed; validation is `sandbox.validate`'s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeAlias

from werkzeug.wrappers import Request, Response

from reconciler.clock import now_iso
from reconciler.sandbox import validate
from reconciler.sandbox.responses import (
    empty,
    json_body,
    json_response,
    mask_key,
    merge_patch,
    parse_body,
    problem,
)
from reconciler.sandbox.state import WEBHOOK_FIELDS, TenantState

Result: TypeAlias = tuple[Response, bool]  # the response, and whether the state changed
Handler: TypeAlias = Callable[[TenantState, Request, str], Result]
ORDER_WEBHOOK_DEFAULT_TIMEOUT = 15  # the spec: "the default is 15"


class SettingsAPI:
    """The settings endpoints of one sandbox; `handlers` maps (endpoint, method) to each.
    `mask_webhook_api_key`: GET/PUT of the webhook config answer the api_key masked."""

    def __init__(self, *, mask_webhook_api_key: bool) -> None:
        self.mask_webhook_api_key = mask_webhook_api_key
        self.handlers: dict[tuple[str, str], Handler] = {
            ("external_oms", "GET"): self._get_external_oms,
            ("external_oms", "POST"): self._post_external_oms,
            ("webhook_config", "GET"): self._get_webhook,
            ("webhook_config", "PUT"): self._put_webhook,
            ("webhook_config", "DELETE"): self._delete_webhook,
            ("external_atp", "GET"): self._get_external_atp,
            ("external_atp", "POST"): self._post_external_atp,
            ("associate_app", "GET"): self._get_associate_app,
            ("associate_app", "PUT"): self._put_associate_app,
            ("associate_app", "PATCH"): self._patch_associate_app,
            ("external_order_webhook", "GET"): self._get_order_webhook,
            ("external_order_webhook", "POST"): self._post_order_webhook,
            ("associate_app_store", "GET"): self._get_store_config,
            ("associate_app_store", "PUT"): self._put_store_config,
            ("associate_app_store", "PATCH"): self._patch_store_config,
            ("associate_app_store", "DELETE"): self._delete_store_config,
        }

    def _get_external_oms(self, state: TenantState, request: Request, rid: str) -> Result:
        enabled = bool(state.external_oms and state.external_oms.get("enabled"))
        if state.options["external_oms_shape"] == "flat":
            return json_response({"enabled": enabled}), False
        # The spec requires a date-time even for a tenant where nobody set the flag yet.
        updated_at = state.external_oms_updated_at or state.created_at
        return json_response({"value": {"enabled": enabled}, "updated_at": updated_at}), False

    def _post_external_oms(self, state: TenantState, request: Request, rid: str) -> Result:
        body, problems = parse_body(request, validate.check_external_oms)
        if problems:
            message = " ".join(problems)
            return problem(400, rid, error_code="bad_request", message=message), False
        state.external_oms = {"enabled": body["value"]["enabled"]}
        state.external_oms_updated_at = now_iso()
        return empty(200), True

    def _shown_webhook(self, state: TenantState) -> dict[str, Any]:
        assert state.availability_webhook is not None
        shown = dict(state.availability_webhook)
        shown["api_key"] = self._masked_key(state, str(shown["api_key"]))
        return shown

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

    def _get_webhook(self, state: TenantState, request: Request, rid: str) -> Result:
        if state.availability_webhook is None:
            return empty(204), False
        return json_response(self._shown_webhook(state)), False

    def _put_webhook(self, state: TenantState, request: Request, rid: str) -> Result:
        body, problems = parse_body(request, validate.check_webhook_config)
        if problems:
            message = " ".join(problems)
            return problem(400, rid, error_code="bad_request", message=message), False
        state.availability_webhook = {key: body[key] for key in WEBHOOK_FIELDS}
        return json_response(self._shown_webhook(state)), True

    def _delete_webhook(self, state: TenantState, request: Request, rid: str) -> Result:
        if state.availability_webhook is not None:
            state.availability_webhook = None
            return empty(200), True
        status = state.options["webhook_delete_absent_status"]
        if status == 404:
            message = "No webhook configuration found."
            return problem(404, rid, error_code="not_found", message=message), False
        return empty(status), False

    def _get_external_atp(self, state: TenantState, request: Request, rid: str) -> Result:
        body = {"value": state.uses_external_atp, "updated_at": state.uses_external_atp_updated_at}
        return json_response(body), False

    def _post_external_atp(self, state: TenantState, request: Request, rid: str) -> Result:
        body, problems = parse_body(request, validate.check_external_atp)
        if problems:
            return problem(400, rid, messages=problems), False
        state.uses_external_atp = body["value"]
        state.uses_external_atp_updated_at = now_iso()
        return empty(200), True

    def _get_associate_app(self, state: TenantState, request: Request, rid: str) -> Result:
        if state.associate_app_config is None:
            # No document yet. (NewStore's 422 "Configuration file is not readable" is a
            # document it cannot read: script it with a fault rule.)
            message = "No Associate App configuration exists for this tenant."
            return problem(404, rid, error_code="not_found", message=message), False
        return json_response(state.associate_app_config), False

    def _put_associate_app(self, state: TenantState, request: Request, rid: str) -> Result:
        doc = _checked_document(request, rid)
        if isinstance(doc, tuple):
            return doc
        state.associate_app_config = doc
        return json_response(doc), True

    def _patch_associate_app(self, state: TenantState, request: Request, rid: str) -> Result:
        # The spec does not say how PATCH merges; the sandbox applies a JSON merge patch
        # (RFC 7386: objects merge, null removes a key, anything else replaces) and validates
        # the result as a whole, as PUT does.
        if state.associate_app_config is None:
            return self._get_associate_app(state, request, rid)
        return self._patch_document(
            state.associate_app_config, request, rid, store=None, state=state
        )

    def _patch_document(
        self,
        base: dict[str, Any],
        request: Request,
        rid: str,
        *,
        store: str | None,
        state: TenantState,
    ) -> Result:
        merged = _checked_document(request, rid, patching=base)
        if isinstance(merged, tuple):
            return merged
        if store is None:
            state.associate_app_config = merged
        else:
            state.associate_app_store_configs[store] = merged
        return json_response(merged), True

    # -- store-level Associate App documents (a store's document replaces the global one) --

    def _get_store_config(self, state: TenantState, request: Request, rid: str) -> Result:
        doc = state.associate_app_store_configs.get(request.environ["sandbox.store"])
        if doc is None:
            # No document of its own (the store uses the global one): 404, as for the global
            # document. (422 "Configuration file is not readable" is a document NewStore cannot
            # read: script it with a fault rule.)
            message = "No Associate App configuration exists for this store."
            return problem(404, rid, error_code="not_found", message=message), False
        return json_response(doc), False

    def _put_store_config(self, state: TenantState, request: Request, rid: str) -> Result:
        doc = _checked_document(request, rid)
        if isinstance(doc, tuple):
            return doc
        state.associate_app_store_configs[request.environ["sandbox.store"]] = doc
        return json_response(doc), True

    def _patch_store_config(self, state: TenantState, request: Request, rid: str) -> Result:
        store = request.environ["sandbox.store"]
        doc = state.associate_app_store_configs.get(store)
        if doc is None:
            return self._get_store_config(state, request, rid)
        return self._patch_document(doc, request, rid, store=store, state=state)

    def _delete_store_config(self, state: TenantState, request: Request, rid: str) -> Result:
        doc = state.associate_app_store_configs.pop(request.environ["sandbox.store"], None)
        if doc is None:
            message = "No Associate App configuration exists for this store."
            return problem(404, rid, error_code="not_found", message=message), False
        return json_response(doc), True

    # -- the external order webhook (NewStore fetches external orders through it) -------------

    def _get_order_webhook(self, state: TenantState, request: Request, rid: str) -> Result:
        hook = state.external_order_webhook
        if hook is None:
            # Never set: the spec only documents 200 (with a required value) and a default
            # error; NewStore's other tenant settings answer a missing one with 404.
            message = "No external order webhook configuration found."
            return problem(404, rid, error_code="not_found", message=message), False
        shown = dict(hook)
        shown["api_key"] = self._masked_key(state, str(shown["api_key"]))
        updated_at = state.external_order_webhook_updated_at or state.created_at
        return json_response({"value": shown, "updated_at": updated_at}), False

    def _post_order_webhook(self, state: TenantState, request: Request, rid: str) -> Result:
        body, problems = parse_body(request, validate.check_order_webhook)
        if problems:
            message = " ".join(problems)
            return problem(400, rid, error_code="bad_request", message=message), False
        value = body["value"]
        state.external_order_webhook = {
            "url": value["url"],
            "api_key": value["api_key"],
            "timeout": value.get("timeout", ORDER_WEBHOOK_DEFAULT_TIMEOUT),
        }
        state.external_order_webhook_updated_at = now_iso()
        return empty(200), True


def _checked_document(
    request: Request, rid: str, *, patching: dict[str, Any] | None = None
) -> dict[str, Any] | Result:
    """The Associate App document a PUT (or, `patching` a document, a PATCH) asks for, or
    NewStore's answer refusing it: 400 for a body that is not JSON, 422 for a document that
    fails the strict schema (a PATCH is validated on the merged result, as a PUT is)."""
    try:
        body = json_body(request)
    except ValueError:
        message = "Invalid JSON. Received configuration could not be parsed."
        return problem(400, rid, error_code="bad_request", message=message), False
    doc = copy.deepcopy(body) if patching is None else merge_patch(patching, body)
    problems = validate.check_associate_app(doc)
    if problems:
        return problem(422, rid, messages=problems), False
    valid: dict[str, Any] = doc  # the schema admits only an object
    return valid
