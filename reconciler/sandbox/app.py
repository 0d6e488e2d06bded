"""The sandbox: a local NewStore speaking the published API for many tenants, faults on demand.

One WSGI app serves, by path:

    POST /auth/realms/<t>/protocol/openid-connect/token     OAuth2 client credentials
    /<t><path>      every NewStore settings endpoint of the table (`endpoints.ENDPOINTS`):
                    external OMS, the availability webhook config, uses_external_atp, the
                    external order webhook, the Associate App documents (global, per store)
    GET|PUT         /_sandbox/tenants/<t>/state           admin (no auth): seed / inspect
    GET             /_sandbox/tenants/<t>/history         every write, with the state after it
    GET|DELETE      /_sandbox/tenants/<t>/requests        every API and token request
    GET|POST|DELETE /_sandbox/faults                      scripted faults (see `faults`)
    POST            /_sandbox/webhook/availabilities      a healthy availability webhook
    GET|DELETE      /_sandbox/webhook/requests            what that webhook received
    GET|PUT         /_sandbox/webhook/behaviour           make that webhook lie (see `webhook`)

Bodies, status codes and validation follow NewStore's specs; every response carries
`X-Request-ID` and every error body the same `request_id`. One re-entrant lock guards all state:
each API request is authorised, handled, persisted and logged under it, so `history` is in
commit order and every `state_after` is exactly the state that write produced. Latency is slept
outside the lock, which is what lets a threaded server overlap slow requests.

This module routes, injects faults, keeps the books (requests, history, persistence) and serves
the admin endpoints (the same operations as its Python face). The endpoints live beside it:
`oauth` (token endpoint, bearer check), `endpoints` (the table of settings endpoints),
`settings_api` (their handlers, one per shape and method),
`webhook` (the sample availability webhook), `responses` (bodies and fault answers) and
`config` (`SandboxConfig`).
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from reconciler.demo_keys import SAMPLE_WEBHOOK_PATH
from reconciler.errors import ConfigError
from reconciler.sandbox.config import DEFAULT_WEBHOOK_API_KEY, SandboxConfig
from reconciler.sandbox.endpoints import BY_NAME, ENDPOINTS
from reconciler.sandbox.faults import (
    Fault,
    FaultBook,
    FaultRule,
    parse_rules,
)
from reconciler.sandbox.oauth import Tokens, authorize, token_response
from reconciler.sandbox.responses import (
    drop,
    fault_response,
    json_body,
    json_response,
    no_route,
    problem,
)
from reconciler.sandbox.settings_api import SettingsAPI
from reconciler.sandbox.state import (
    STORE_ID_RE,
    TenantState,
    check_tenant,
    load_tenants,
    masked_keys,
    parse_seed,
    save_tenants,
)
from reconciler.sandbox.webhook import WebhookBehaviour, sample_webhook

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["DEFAULT_WEBHOOK_API_KEY", "WEBHOOK_PATH", "SandboxApp", "SandboxConfig"]

WEBHOOK_PATH = SAMPLE_WEBHOOK_PATH
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_BODY = 1024 * 1024


class _TenantConverter(BaseConverter):
    regex = "[a-z0-9-]+"


_T = "<tenant:tenant>"
# The NewStore settings endpoints come from the table (`endpoints`); these are the others.
_ROUTES = (
    ("token", f"/auth/realms/{_T}/protocol/openid-connect/token", ("POST",)),
    *((entry.name, f"/{_T}{entry.path}", entry.methods) for entry in ENDPOINTS),
    ("admin_state", f"/_sandbox/tenants/{_T}/state", ("GET", "PUT")),
    ("admin_history", f"/_sandbox/tenants/{_T}/history", ("GET",)),
    ("admin_requests", f"/_sandbox/tenants/{_T}/requests", ("GET", "DELETE")),
    ("admin_faults", "/_sandbox/faults", ("GET", "POST", "DELETE")),
    ("webhook", WEBHOOK_PATH, ("POST",)),
    ("admin_webhook_requests", "/_sandbox/webhook/requests", ("GET", "DELETE")),
    ("admin_webhook_behaviour", "/_sandbox/webhook/behaviour", ("GET", "PUT")),
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
    if endpoint in BY_NAME:
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
        self._tokens: Tokens = OrderedDict()  # token -> (tenant, monotonic expiry), oldest first
        self._faults = FaultBook(self.config.fault_rate, self.config.seed)
        self._urls = _URL_MAP
        self._settings = SettingsAPI(mask_webhook_api_key=self.config.mask_webhook_api_key)
        self._webhook_behaviour = WebhookBehaviour()
        # Tests that play a concurrent writer: called with every request before it is handled
        # (outside the lock, so it may itself call the app), e.g. to change a tenant exactly
        # before the N-th request of an apply. Python face only.
        self.before_request: Callable[[Request], None] | None = None

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
        parsed.stamp_seeded()
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

    def set_webhook_behaviour(self, **behaviour: Any) -> None:
        """How the sample webhook answers from now on (`webhook.WebhookBehaviour`; no
        arguments: healthy again). ConfigError naming what is wrong."""
        parsed = WebhookBehaviour.parse(behaviour)
        with self._lock:
            self._webhook_behaviour = parsed

    def webhook_behaviour(self) -> dict[str, Any]:
        with self._lock:
            return self._webhook_behaviour.to_json()

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
        request.environ["sandbox.request_id"] = request_id
        if self.before_request is not None:
            self.before_request(request)
        try:
            response = self._respond(request, request_id)
        except HTTPException as exc:  # e.g. 413 from a body over _MAX_BODY
            status = exc.code or 400
            response = problem(status, request_id, message=f"{exc.name}: {exc.description}")
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
            response = fault_response(fault, rid)
            with self._lock:
                self._log(kind, tenant, request, response.status_code)
        elif routing_error is not None:
            response = no_route(routing_error, request, rid)
        elif kind == "admin":
            response = self._admin(str(endpoint), request, rid, tenant)
        elif kind == "webhook":
            with self._lock:
                behaviour = self._webhook_behaviour
            if behaviour.latency_ms:
                time.sleep(behaviour.latency_ms / 1000)
            response = sample_webhook(request, rid, self.config.webhook_api_key, behaviour)
            with self._lock:
                self._log(kind, tenant, request, response.status_code)
        else:
            with self._lock:
                if kind == "token":
                    response = token_response(self.config, self._tokens, request, rid, str(tenant))
                else:
                    response = self._api(str(endpoint), request, rid, str(tenant))
                self._log(kind, tenant, request, response.status_code)

        if fault is not None and fault.drop_connection:
            drop(request.environ)
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
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": status,
            # What the client saw as X-Request-ID: a test tells its own writes from others'.
            "request_id": request.environ.get("sandbox.request_id"),
        }
        if kind == "webhook":
            shown = {k: v for k, v in entry.items() if k != "request_id"}
            self._webhook_requests.append({"seq": len(self._webhook_requests) + 1, **shown})
        if tenant is None or kind not in ("api", "token"):
            return
        seq = self._request_seq[tenant] = self._request_seq.get(tenant, 0) + 1
        self._requests.setdefault(tenant, []).append({"seq": seq, **entry})
        if kind == "api" and request.method in _WRITE_METHODS:
            history = self._history.setdefault(tenant, [])
            state_after = self._tenant(tenant).snapshot()
            history.append({"seq": len(history) + 1, **entry, "state_after": state_after})

    def _api(self, endpoint: str, request: Request, rid: str, tenant: str) -> Response:
        state = self._tenant(tenant)
        entry = BY_NAME[endpoint]
        method = "GET" if request.method == "HEAD" else request.method
        if not (entry.public_read and method == "GET"):
            denied = authorize(self._tokens, request, rid, tenant)
            if denied is not None:
                return denied
        if entry.per_store:
            store = request.path.rsplit("/", 1)[1]
            if not STORE_ID_RE.fullmatch(store):
                message = f"No such store: {store!r}."
                return problem(404, rid, error_code="not_found", message=message)
            request.environ["sandbox.store"] = store
        response, changed = self._settings.handle(entry, state, request, rid)
        if changed:
            self._persist()
        return response

    # -- the sample availability webhook --------------------------------------------------------

    # -- admin ----------------------------------------------------------------------------------

    def _admin(self, endpoint: str, request: Request, rid: str, tenant: str | None) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        if method in ("POST", "PUT") and request.mimetype != "application/json":
            # A page on any web site may send this machine a text/plain or form POST without
            # asking first (no CORS preflight); a JSON one it may not.
            return problem(
                415,
                rid,
                error_code="unsupported_media_type",
                message="Admin writes take a JSON body: send Content-Type: application/json.",
            )
        shown = (lambda state: state) if self.config.admin_shows_keys else masked_keys
        try:
            if endpoint == "admin_state":
                assert tenant is not None
                if method == "PUT":
                    self.seed(tenant, json_body(request))
                return json_response(shown(self.state(tenant)))
            if endpoint == "admin_history":
                return json_response(
                    [
                        {**entry, "state_after": shown(entry["state_after"])}
                        for entry in self.history(str(tenant))
                    ]
                )
            if endpoint == "admin_requests":
                if method == "DELETE":
                    self.clear_requests(str(tenant))
                return json_response(self.requests(str(tenant)))
            if endpoint == "admin_faults":
                if method == "POST":
                    self._arm(parse_rules(json_body(request)))
                elif method == "DELETE":
                    self.clear_faults()
                return json_response({"rules": self.faults()})
            if endpoint == "admin_webhook_behaviour":
                if method == "PUT":
                    self.set_webhook_behaviour(**_object(json_body(request)))
                return json_response(self.webhook_behaviour())
            if method == "DELETE":
                self.clear_webhook_requests()
            return json_response(self.webhook_requests())
        except ValueError:
            return problem(400, rid, message="The request body is not valid JSON.")
        except ConfigError as exc:
            return problem(400, rid, message=str(exc))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ConfigError("expected a JSON object")
    return body
