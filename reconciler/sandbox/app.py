"""The sandbox: a local NewStore speaking the published API for many tenants, faults on demand.

One WSGI app serves, by path:

    POST /auth/realms/<t>/protocol/openid-connect/token     OAuth2 client credentials
    GET|POST        /<t>/v0/config/sales_order/external_oms
    GET|PUT|DELETE  /<t>/v0/config/availability/webhook
    GET|POST        /<t>/v0/config/routing/uses_external_atp
    GET|POST        /<t>/v0/config/sales_order/external_order_webhook
    GET|PUT|PATCH   /<t>/api/v1/associate-app/config
    GET|PUT|PATCH|DELETE /<t>/api/v1/associate-app/config/<store id>
    GET|PUT         /_sandbox/tenants/<t>/state           admin (no auth): seed / inspect
    GET             /_sandbox/tenants/<t>/history         every write, with the state after it
    GET|DELETE      /_sandbox/tenants/<t>/requests        every API and token request
    GET|POST|DELETE /_sandbox/faults                      scripted faults (see `faults`)
    POST            /_sandbox/webhook/availabilities      a healthy availability webhook
    GET|DELETE      /_sandbox/webhook/requests            what that webhook received

Bodies, status codes and validation follow NewStore's specs; every response carries
`X-Request-ID` and every error body the same `request_id`. One re-entrant lock guards all state:
each API request is authorised, handled, persisted and logged under it, so `history` is in
commit order and every `state_after` is exactly the state that write produced. Latency is slept
outside the lock, which is what lets a threaded server overlap slow requests.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import json
import secrets
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from reconciler.clock import now_iso
from reconciler.errors import ConfigError
from reconciler.sandbox import validate
from reconciler.sandbox.faults import (
    ConnectionDropped,
    Fault,
    FaultBook,
    FaultRule,
    parse_rules,
)
from reconciler.sandbox.state import (
    STORE_ID_RE,
    WEBHOOK_FIELDS,
    TenantState,
    check_tenant,
    load_tenants,
    parse_seed,
    save_tenants,
)

if TYPE_CHECKING:
    import httpx
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

DEFAULT_WEBHOOK_API_KEY = "sandbox-webhook-api-key-0001"
ORDER_WEBHOOK_DEFAULT_TIMEOUT = 15  # the spec: "the default is 15"
WEBHOOK_PATH = "/_sandbox/webhook/availabilities"
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The spec declares `security: []` for reading the Associate App config.
_PUBLIC_OPERATIONS = frozenset({("associate_app", "GET"), ("associate_app_store", "GET")})
_MAX_BODY = 1024 * 1024

_Result: TypeAlias = tuple[Response, bool]  # the response, and whether the state changed
Handler: TypeAlias = Callable[[TenantState, Request, str], _Result]


@dataclass
class SandboxConfig:
    token_ttl: float = 3600.0  # seconds an access token stays valid
    latency_ms: int = 0  # added to every API, token and webhook request
    fault_rate: float = 0.0  # fraction of API and token requests answered 429/503
    seed: int | None = None  # makes fault_rate reproducible
    webhook_api_key: str = field(default=DEFAULT_WEBHOOK_API_KEY, repr=False)
    mask_webhook_api_key: bool = False  # GET/PUT webhook config answer the api_key masked
    state_file: Path | None = None  # load at start, persist after every state change
    client_id: str = "sandbox"
    client_secret: str = field(default="sandbox-secret", repr=False)

    def __post_init__(self) -> None:
        problems = []
        if not self.token_ttl > 0:
            problems.append("the token lifetime must be positive")
        if self.latency_ms < 0:
            problems.append("the latency must be >= 0 ms")
        if not 0.0 <= self.fault_rate <= 1.0:
            problems.append("the fault rate must be between 0 and 1")
        if len(self.webhook_api_key) < 20:
            # NewStore refuses shorter keys, so no webhook config could ever point at it.
            problems.append("the webhook api key must be at least 20 characters")
        if self.state_file is not None and not self.state_file.parent.is_dir():
            problems.append(f"the state file's directory {self.state_file.parent} does not exist")
        if problems:
            raise ConfigError("sandbox: " + "; ".join(problems) + ".")


class _TenantConverter(BaseConverter):
    regex = "[a-z0-9-]+"


_T = "<tenant:tenant>"
_ROUTES = (
    ("token", f"/auth/realms/{_T}/protocol/openid-connect/token", ("POST",)),
    ("external_oms", f"/{_T}/v0/config/sales_order/external_oms", ("GET", "POST")),
    ("webhook_config", f"/{_T}/v0/config/availability/webhook", ("GET", "PUT", "DELETE")),
    ("external_atp", f"/{_T}/v0/config/routing/uses_external_atp", ("GET", "POST")),
    (
        "external_order_webhook",
        f"/{_T}/v0/config/sales_order/external_order_webhook",
        ("GET", "POST"),
    ),
    ("associate_app", f"/{_T}/api/v1/associate-app/config", ("GET", "PUT", "PATCH")),
    (
        "associate_app_store",
        f"/{_T}/api/v1/associate-app/config/<store>",
        ("GET", "PUT", "PATCH", "DELETE"),
    ),
    ("admin_state", f"/_sandbox/tenants/{_T}/state", ("GET", "PUT")),
    ("admin_history", f"/_sandbox/tenants/{_T}/history", ("GET",)),
    ("admin_requests", f"/_sandbox/tenants/{_T}/requests", ("GET", "DELETE")),
    ("admin_faults", "/_sandbox/faults", ("GET", "POST", "DELETE")),
    ("webhook", WEBHOOK_PATH, ("POST",)),
    ("admin_webhook_requests", "/_sandbox/webhook/requests", ("GET", "DELETE")),
)
_API_ENDPOINTS = frozenset(
    {
        "external_oms",
        "webhook_config",
        "external_atp",
        "associate_app",
        "external_order_webhook",
        "associate_app_store",
    }
)


# Built once, at import (under the import lock), and shared by every app: werkzeug compiles
# each rule with `ast` + `compile()`, and on CPython 3.11 compiling in many threads at once can
# fail with "AST constructor recursion depth mismatch" (gh-106905), e.g. when a test starts 120
# sandboxes side by side. Matching through a shared Map is thread-safe.
_URL_MAP = Map(
    [Rule(path, endpoint=name, methods=list(methods)) for name, path, methods in _ROUTES],
    converters={"tenant": _TenantConverter},
    merge_slashes=False,
)


def _kind(endpoint: str | None, path: str) -> str:
    """api | token | webhook | admin | unknown: decides faults, latency, auth and logging."""
    if endpoint in _API_ENDPOINTS:
        return "api"
    if endpoint in ("token", "webhook"):
        return endpoint
    if endpoint is not None or path.startswith("/_sandbox/"):
        return "admin"
    return "unknown"


class SandboxApp:
    """A WSGI callable: `app(environ, start_response)`. Thread-safe."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._lock = threading.RLock()
        self._tenants: dict[str, TenantState] = {}
        if self.config.state_file is not None:
            self._tenants = load_tenants(self.config.state_file)
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._requests: dict[str, list[dict[str, Any]]] = {}
        self._request_seq: dict[str, int] = {}
        self._webhook_requests: list[dict[str, Any]] = []
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (tenant, monotonic expiry)
        self._faults = FaultBook(self.config.fault_rate, self.config.seed)
        self._urls = _URL_MAP
        self._handlers: dict[tuple[str, str], Handler] = {
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

    # -- the Python face (what the admin endpoints do) -----------------------------------------

    def transport(self) -> httpx.BaseTransport:
        """An httpx transport that calls this app in-process (no socket, same behaviour)."""
        # lazy: start-up time (httpx; `reconciler sandbox` serves without it)
        from reconciler.sandbox.transport import InProcessTransport

        return InProcessTransport(self)

    def seed(self, tenant: str, state: dict[str, Any]) -> None:
        """Replace a tenant's state (omitted keys take the defaults); like PUT .../state."""
        check_tenant(tenant)
        parsed = parse_seed(state)
        stamp = now_iso()
        if parsed.external_oms is not None:
            parsed.external_oms_updated_at = stamp
        if parsed.uses_external_atp is not None:
            parsed.uses_external_atp_updated_at = stamp
        if parsed.external_order_webhook is not None:
            parsed.external_order_webhook_updated_at = stamp
        with self._lock:
            self._tenants[tenant] = parsed
            self._persist()

    def state(self, tenant: str) -> dict[str, Any]:
        """The tenant's state, unmasked; like GET .../state."""
        check_tenant(tenant)
        with self._lock:
            return self._tenant(tenant).view()

    def history(self, tenant: str) -> list[dict[str, Any]]:
        """Every write to the tenant's API, rejected ones included, in commit order."""
        with self._lock:
            return copy.deepcopy(self._history.get(tenant, []))

    def requests(self, tenant: str) -> list[dict[str, Any]]:
        """Every API and token request for the tenant: `{seq, method, path, status}`."""
        with self._lock:
            return copy.deepcopy(self._requests.get(tenant, []))

    def clear_requests(self, tenant: str) -> None:
        with self._lock:
            self._requests.pop(tenant, None)

    def webhook_requests(self) -> list[dict[str, Any]]:
        """Every request the sample webhook received: `{seq, method, path, status}`."""
        with self._lock:
            return copy.deepcopy(self._webhook_requests)

    def clear_webhook_requests(self) -> None:
        with self._lock:
            self._webhook_requests.clear()

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        """Replace the scripted fault rules (ConfigError naming the bad rule)."""
        self._arm(parse_rules(rules))

    def _arm(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._faults.set(rules)

    def faults(self) -> list[dict[str, Any]]:
        """The rules still armed, with their remaining `times`."""
        with self._lock:
            return self._faults.to_json()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- WSGI -----------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = _MAX_BODY
        request_id = uuid.uuid4().hex
        try:
            response = self._respond(request, request_id)
        except HTTPException as exc:  # e.g. 413 from a body over _MAX_BODY
            status = exc.code or 400
            response = _problem(status, request_id, message=f"{exc.name}: {exc.description}")
        response.headers["X-Request-ID"] = request_id
        return response(environ, start_response)

    def _respond(self, request: Request, rid: str) -> Response:
        method, path = request.method, request.path
        routing_error: HTTPException | None = None
        endpoint: str | None = None
        args: Mapping[str, Any] = {}
        try:
            endpoint, args = self._urls.bind_to_environ(request.environ).match()
        except HTTPException as exc:
            routing_error = exc
        kind = _kind(endpoint, path)
        tenant: str | None = args.get("tenant")

        fault: Fault | None = None
        if kind != "admin":
            with self._lock:
                fault = self._faults.pick(method, path, random_eligible=kind in ("api", "token"))
            delay = self.config.latency_ms + (fault.latency_ms if fault else 0)
            if delay:
                time.sleep(delay / 1000)

        if fault is not None and fault.status is not None:
            response = _fault_response(fault, rid)
            with self._lock:
                self._log(kind, tenant, request, response.status_code)
        elif routing_error is not None:
            response = _routing_error(routing_error, request, rid)
        elif kind == "admin":
            response = self._admin(str(endpoint), request, rid, tenant)
        elif kind == "webhook":
            response = self._webhook(request, rid)
            with self._lock:
                self._log(kind, tenant, request, response.status_code)
        else:
            with self._lock:
                if kind == "token":
                    response = self._token(request, rid, str(tenant))
                else:
                    response = self._api(str(endpoint), request, rid, str(tenant))
                self._log(kind, tenant, request, response.status_code)

        if fault is not None and fault.drop_connection:
            _drop(request.environ)
        return response

    # -- bookkeeping (caller holds the lock) ---------------------------------------------------

    def _tenant(self, tenant: str) -> TenantState:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = TenantState()
        return state

    def _persist(self) -> None:
        if self.config.state_file is not None:
            save_tenants(self.config.state_file, self._tenants)

    def _log(self, kind: str, tenant: str | None, request: Request, status: int) -> None:
        entry: dict[str, Any] = {"method": request.method, "path": request.path, "status": status}
        if kind == "webhook":
            self._webhook_requests.append({"seq": len(self._webhook_requests) + 1, **entry})
        if tenant is None or kind not in ("api", "token"):
            return
        seq = self._request_seq[tenant] = self._request_seq.get(tenant, 0) + 1
        self._requests.setdefault(tenant, []).append({"seq": seq, **entry})
        if kind == "api" and request.method in _WRITE_METHODS:
            history = self._history.setdefault(tenant, [])
            state_after = self._tenant(tenant).snapshot()
            history.append({"seq": len(history) + 1, **entry, "state_after": state_after})

    # -- OAuth ----------------------------------------------------------------------------------

    def _token(self, request: Request, rid: str, tenant: str) -> Response:
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            client_id, client_secret = auth.username or "", auth.password or ""
        else:
            client_id = request.form.get("client_id", "")
            client_secret = request.form.get("client_secret", "")
        expected_id, expected_secret = self.config.client_id, self.config.client_secret
        if not (
            hmac.compare_digest(client_id.encode(), expected_id.encode())
            and hmac.compare_digest(client_secret.encode(), expected_secret.encode())
        ):
            body = {"error": "invalid_client", "error_description": "Invalid client credentials"}
            return _json({**body, "request_id": rid}, 401)
        if request.form.get("grant_type") != "client_credentials":
            body = {
                "error": "unsupported_grant_type",
                "error_description": "Only grant_type=client_credentials is supported",
            }
            return _json({**body, "request_id": rid}, 400)
        now = time.monotonic()
        self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (tenant, now + self.config.token_ttl)
        response = _json(
            {
                "access_token": token,
                # Rounded down, so a client that renews at expiry never holds an expired token.
                "expires_in": int(self.config.token_ttl),
                "token_type": "Bearer",
            }
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    def _authorize(self, request: Request, rid: str, tenant: str) -> Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            response = _problem(
                401, rid, error_code="unauthorized", message="Missing access token."
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        issued = self._tokens.get(token)
        if issued is None or issued[1] <= time.monotonic():
            return _problem(
                403, rid, error_code="forbidden", message="Invalid or expired access token."
            )
        if issued[0] != tenant:
            return _problem(
                403,
                rid,
                error_code="forbidden",
                message="The access token was not issued for this tenant.",
            )
        return None

    # -- the four settings ----------------------------------------------------------------------

    def _api(self, endpoint: str, request: Request, rid: str, tenant: str) -> Response:
        state = self._tenant(tenant)
        method = "GET" if request.method == "HEAD" else request.method
        if (endpoint, method) not in _PUBLIC_OPERATIONS:
            denied = self._authorize(request, rid, tenant)
            if denied is not None:
                return denied
        if endpoint == "associate_app_store":
            store = request.path.rsplit("/", 1)[1]
            if not STORE_ID_RE.fullmatch(store):
                message = f"No such store: {store!r}."
                return _problem(404, rid, error_code="not_found", message=message)
            request.environ["sandbox.store"] = store
        response, changed = self._handlers[(endpoint, method)](state, request, rid)
        if changed:
            self._persist()
        return response

    def _get_external_oms(self, state: TenantState, request: Request, rid: str) -> _Result:
        enabled = bool(state.external_oms and state.external_oms.get("enabled"))
        if state.options["external_oms_shape"] == "flat":
            return _json({"enabled": enabled}), False
        # The spec requires a date-time even for a tenant where nobody set the flag yet.
        updated_at = state.external_oms_updated_at or state.created_at
        return _json({"value": {"enabled": enabled}, "updated_at": updated_at}), False

    def _post_external_oms(self, state: TenantState, request: Request, rid: str) -> _Result:
        body, problems = _parse(request, validate.check_external_oms)
        if problems:
            message = " ".join(problems)
            return _problem(400, rid, error_code="bad_request", message=message), False
        state.external_oms = {"enabled": body["value"]["enabled"]}
        state.external_oms_updated_at = now_iso()
        return _empty(200), True

    def _shown_webhook(self, state: TenantState) -> dict[str, Any]:
        assert state.availability_webhook is not None
        shown = dict(state.availability_webhook)
        shown["api_key"] = self._masked_key(state, str(shown["api_key"]))
        return shown

    def _masked_key(self, state: TenantState, key: str) -> str:
        """The api_key as GET answers it: clear, masked but for its last four characters, or
        (option "full") wholly masked."""
        option = state.options["mask_webhook_api_key"]
        if option == "full":
            # Nothing of the key left to compare: what a client must re-assert to be sure of.
            return "*" * max(len(key), 20)
        if self.config.mask_webhook_api_key or option:
            return _masked(key)
        return key

    def _get_webhook(self, state: TenantState, request: Request, rid: str) -> _Result:
        if state.availability_webhook is None:
            return _empty(204), False
        return _json(self._shown_webhook(state)), False

    def _put_webhook(self, state: TenantState, request: Request, rid: str) -> _Result:
        body, problems = _parse(request, validate.check_webhook_config)
        if problems:
            message = " ".join(problems)
            return _problem(400, rid, error_code="bad_request", message=message), False
        state.availability_webhook = {key: body[key] for key in WEBHOOK_FIELDS}
        return _json(self._shown_webhook(state)), True

    def _delete_webhook(self, state: TenantState, request: Request, rid: str) -> _Result:
        if state.availability_webhook is not None:
            state.availability_webhook = None
            return _empty(200), True
        status = state.options["webhook_delete_absent_status"]
        if status == 404:
            message = "No webhook configuration found."
            return _problem(404, rid, error_code="not_found", message=message), False
        return _empty(status), False

    def _get_external_atp(self, state: TenantState, request: Request, rid: str) -> _Result:
        body = {"value": state.uses_external_atp, "updated_at": state.uses_external_atp_updated_at}
        return _json(body), False

    def _post_external_atp(self, state: TenantState, request: Request, rid: str) -> _Result:
        body, problems = _parse(request, validate.check_external_atp)
        if problems:
            return _problem(400, rid, messages=problems), False
        state.uses_external_atp = body["value"]
        state.uses_external_atp_updated_at = now_iso()
        return _empty(200), True

    def _get_associate_app(self, state: TenantState, request: Request, rid: str) -> _Result:
        if state.associate_app_config is None:
            # No document yet. (NewStore's 422 "Configuration file is not readable" is a
            # document it cannot read: script it with a fault rule.)
            message = "No Associate App configuration exists for this tenant."
            return _problem(404, rid, error_code="not_found", message=message), False
        return _json(state.associate_app_config), False

    def _put_associate_app(self, state: TenantState, request: Request, rid: str) -> _Result:
        try:
            body = _json_body(request)
        except ValueError:
            message = "Invalid JSON. Received configuration could not be parsed."
            return _problem(400, rid, error_code="bad_request", message=message), False
        problems = validate.check_associate_app(body)
        if problems:
            return _problem(422, rid, messages=problems), False
        state.associate_app_config = copy.deepcopy(body)
        return _json(body), True

    def _patch_associate_app(self, state: TenantState, request: Request, rid: str) -> _Result:
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
    ) -> _Result:
        try:
            patch = _json_body(request)
        except ValueError:
            message = "Invalid JSON. Received configuration could not be parsed."
            return _problem(400, rid, error_code="bad_request", message=message), False
        merged = _merge_patch(base, patch)
        problems = validate.check_associate_app(merged)
        if problems:
            return _problem(422, rid, messages=problems), False
        if store is None:
            state.associate_app_config = merged
        else:
            state.associate_app_store_configs[store] = merged
        return _json(merged), True

    # -- store-level Associate App documents (a store's document replaces the global one) --

    def _get_store_config(self, state: TenantState, request: Request, rid: str) -> _Result:
        doc = state.associate_app_store_configs.get(request.environ["sandbox.store"])
        if doc is None:
            # No document of its own (the store uses the global one): 404, as for the global
            # document. (422 "Configuration file is not readable" is a document NewStore cannot
            # read: script it with a fault rule.)
            message = "No Associate App configuration exists for this store."
            return _problem(404, rid, error_code="not_found", message=message), False
        return _json(doc), False

    def _put_store_config(self, state: TenantState, request: Request, rid: str) -> _Result:
        try:
            body = _json_body(request)
        except ValueError:
            message = "Invalid JSON. Received configuration could not be parsed."
            return _problem(400, rid, error_code="bad_request", message=message), False
        problems = validate.check_associate_app(body)
        if problems:
            return _problem(422, rid, messages=problems), False
        state.associate_app_store_configs[request.environ["sandbox.store"]] = copy.deepcopy(body)
        return _json(body), True

    def _patch_store_config(self, state: TenantState, request: Request, rid: str) -> _Result:
        store = request.environ["sandbox.store"]
        doc = state.associate_app_store_configs.get(store)
        if doc is None:
            return self._get_store_config(state, request, rid)
        return self._patch_document(doc, request, rid, store=store, state=state)

    def _delete_store_config(self, state: TenantState, request: Request, rid: str) -> _Result:
        doc = state.associate_app_store_configs.pop(request.environ["sandbox.store"], None)
        if doc is None:
            message = "No Associate App configuration exists for this store."
            return _problem(404, rid, error_code="not_found", message=message), False
        return _json(doc), True

    # -- the external order webhook (NewStore fetches external orders through it) -------------

    def _get_order_webhook(self, state: TenantState, request: Request, rid: str) -> _Result:
        hook = state.external_order_webhook
        if hook is None:
            # Never set: the spec only documents 200 (with a required value) and a default
            # error; NewStore's other tenant settings answer a missing one with 404.
            message = "No external order webhook configuration found."
            return _problem(404, rid, error_code="not_found", message=message), False
        shown = dict(hook)
        shown["api_key"] = self._masked_key(state, str(shown["api_key"]))
        updated_at = state.external_order_webhook_updated_at or state.created_at
        return _json({"value": shown, "updated_at": updated_at}), False

    def _post_order_webhook(self, state: TenantState, request: Request, rid: str) -> _Result:
        body, problems = _parse(request, validate.check_order_webhook)
        if problems:
            message = " ".join(problems)
            return _problem(400, rid, error_code="bad_request", message=message), False
        value = body["value"]
        state.external_order_webhook = {
            "url": value["url"],
            "api_key": value["api_key"],
            "timeout": value.get("timeout", ORDER_WEBHOOK_DEFAULT_TIMEOUT),
        }
        state.external_order_webhook_updated_at = now_iso()
        return _empty(200), True

    # -- the sample availability webhook --------------------------------------------------------

    def _webhook(self, request: Request, rid: str) -> Response:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self.config.webhook_api_key.encode()):
            body: dict[str, Any] = {
                "message": "The Authorization header does not hold the webhook's api key.",
                "data": {},
                "request_id": rid,
            }
            return _json(body, 401, problem=True)
        payload, problems = _parse(request, validate.check_availability_request)
        if problems:
            body = {"message": "Invalid request body.", "data": {"errors": problems}}
            return _json({**body, "request_id": rid}, 400, problem=True)
        availabilities = [
            {
                "product_id": product["product_id"],
                "external_identifier": product["external_identifier"],
                "fulfillment_location": location,
                # Stable, varied stock levels, so the same probe always sees the same answer.
                "atp": zlib.crc32(f"{product['product_id']}@{location}".encode()) % 25,
            }
            for product in payload["products"]
            for location in payload["fulfillment_locations"]
        ]
        return _json({"availabilities": availabilities})

    # -- admin ----------------------------------------------------------------------------------

    def _admin(self, endpoint: str, request: Request, rid: str, tenant: str | None) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        try:
            if endpoint == "admin_state":
                assert tenant is not None
                if method == "PUT":
                    self.seed(tenant, _json_body(request))
                return _json(self.state(tenant))
            if endpoint == "admin_history":
                return _json(self.history(str(tenant)))
            if endpoint == "admin_requests":
                if method == "DELETE":
                    self.clear_requests(str(tenant))
                return _json(self.requests(str(tenant)))
            if endpoint == "admin_faults":
                if method == "POST":
                    self._arm(parse_rules(_json_body(request)))
                elif method == "DELETE":
                    self.clear_faults()
                return _json({"rules": self.faults()})
            if method == "DELETE":
                self.clear_webhook_requests()
            return _json(self.webhook_requests())
        except ValueError:
            return _problem(400, rid, message="The request body is not valid JSON.")
        except ConfigError as exc:
            return _problem(400, rid, message=str(exc))


def _masked(key: str) -> str:
    # Same length as the key, so a masked answer still satisfies the spec's minLength.
    return "*" * max(len(key) - 4, 4) + key[-4:]


def _merge_patch(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of `patch` onto `base` (a new value; neither is changed)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


def _json_body(request: Request) -> Any:
    """The parsed JSON body; ValueError when it is missing or not JSON."""
    return json.loads(request.get_data(cache=True) or b"")


def _parse(request: Request, check: Callable[[Any], list[str]]) -> tuple[Any, list[str]]:
    try:
        body = _json_body(request)
    except ValueError:
        return None, ["The request body is not valid JSON."]
    return body, check(body)


def _json(body: Any, status: int = 200, *, problem: bool = False) -> Response:
    mimetype = "application/problem+json" if problem else "application/json"
    return Response(json.dumps(body), status=status, mimetype=mimetype)


def _empty(status: int) -> Response:
    response = Response(b"", status=status)
    del response.headers["Content-Type"]
    return response


def _problem(
    status: int,
    rid: str,
    *,
    error_code: str | None = None,
    message: str | None = None,
    messages: list[str] | None = None,
) -> Response:
    """NewStore's error bodies come in three field sets; each call site uses its spec's."""
    body: dict[str, Any] = {}
    if error_code is not None:
        body["error_code"] = error_code
    if message is not None:
        body["message"] = message
    if messages is not None:
        body["messages"] = messages
    body["request_id"] = rid
    return _json(body, status, problem=True)


_HTML_PAGE = (
    "<html><head><title>{status} {phrase}</title></head>"
    "<body><h1>{status} {phrase}</h1><p>Request blocked.</p></body></html>"
)


def _fault_response(fault: Fault, rid: str) -> Response:
    status = fault.status or 500
    phrase = HTTP_STATUS_CODES.get(status, "Error")
    if fault.body == "html":
        page = _HTML_PAGE.format(status=status, phrase=phrase)
        response = Response(page, status=status, mimetype="text/html")
    else:
        message = fault.message or f"{phrase} (injected by the sandbox)."
        response = _problem(status, rid, error_code=fault.code(), message=message)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    return response


def _routing_error(error: HTTPException, request: Request, rid: str) -> Response:
    status = error.code or 404
    if isinstance(error, MethodNotAllowed):
        response = _problem(405, rid, message=f"{request.method} is not allowed on {request.path}.")
        response.headers["Allow"] = ", ".join(sorted(error.valid_methods or ()))
        return response
    return _problem(status, rid, message=f"No such endpoint: {request.method} {request.path}.")


def _drop(environ: WSGIEnvironment) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    raise ConnectionDropped("the sandbox dropped the connection (fault rule)")
