"""The NewStore settings endpoints the sandbox serves: one table, one entry per endpoint.

Everything else is derived from `ENDPOINTS`: the routes (`app`), the handlers (`settings_api`
dispatches on an entry's shape and the method), the tenant state's fields, their defaults and
the `updated_at` kept beside them, seeding and its checks, the state file, and the admin state's
key set (`STATE_KEYS`). An entry says:

- `path` (under the tenant prefix, NewStore's) and `methods`;
- `state_key`: the admin state's key the endpoint reads and writes;
- `spec`: the vendored spec file (`specs/`) that documents it; a write is validated against
  that operation's request schema unless the entry has its own `check` (phrased like NewStore's
  own messages, or stricter where NewStore is: see `deviations`);
- `shape`: how it answers. WRAPPED: GET `{"value": .., "updated_at": ..}`, POST `{"value": ..}`
  answered 200 with no body (the `updated_at` bookkeeping is the sandbox's). BARE: GET the object
  (204 when there is none), PUT the object answered with it, DELETE. DOCUMENT: GET the document
  (404 when there is none), PUT/PATCH validated as a whole (422), DELETE;
- `default`: what a new tenant holds (None: nothing set).

Special cases are small hooks on their entries: `show` (what GET answers for a stored value: a
masked api_key, a flag's off), `store` (the stored value of an accepted body), `absent` (the
answer when nothing is set), `unwrapped_when` (external OMS's older flat answer),
`delete_absent` (the webhook's configurable DELETE of nothing), `public_read`. A method that is
not listed (the order webhook's DELETE) is answered 405 by routing.

A NewStore flag like `uses_external_atp` is one entry: name, path, methods, state key, spec and
WRAPPED; its requests and seeded values are checked against its spec.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from reconciler.sandbox import validate
from reconciler.sandbox.documents import default_associate_app_config

WRAPPED: Final = "wrapped"
BARE: Final = "bare"
DOCUMENT: Final = "document"
SHAPES: Final = (WRAPPED, BARE, DOCUMENT)

Check = Callable[[Any], list[str]]
Mask = Callable[[str], str]  # an api_key as GET shows it (the tenant's masking option)
STORE = "<store>"  # the path parameter of a per-store endpoint

WEBHOOK_FIELDS: Final = ("url", "api_key", "external_identifier", "timeout")
ORDER_WEBHOOK_FIELDS: Final = ("url", "api_key", "timeout")
ORDER_WEBHOOK_DEFAULT_TIMEOUT: Final = 15  # the spec: "the default is 15"


@dataclass(frozen=True)
class Absent:
    """The answer when nothing is set: `status`, with a not_found problem `message` (None: an
    empty body)."""

    status: int
    message: str | None = None


def _nothing() -> Any:
    return None


def _as_given(value: Any) -> Any:
    return value


def _shown_as_stored(value: Any, mask: Mask) -> Any:
    return value


@dataclass(frozen=True)
class Endpoint:
    name: str  # the route's endpoint name (dispatch, faults, logs)
    path: str  # under the tenant prefix; a per-store endpoint ends in /<store>
    methods: tuple[str, ...]
    state_key: str
    spec: str  # vendored spec file (`specs/`)
    shape: str
    default: Callable[[], Any] = _nothing
    check: Check | None = None  # a write's body problems; None: the spec's request schema
    seed_check: Check | None = None  # a seeded (non-null) value's problems; None: the spec's
    store: Callable[[Any], Any] = _as_given
    show: Callable[[Any, Mask], Any] = _shown_as_stored
    absent: Absent | None = None
    # Whether GET shows the tenant's creation time when nobody set it (the spec requires a
    # date-time) rather than null.
    updated_at_required: bool = False
    # How a 400 lists its problems, as the endpoint's spec does: "message" (error_code
    # bad_request and one message) or "messages" (a list).
    errors: str = "message"
    public_read: bool = False  # GET needs no token (the spec's `security: []`)
    unwrapped_when: Callable[[Mapping[str, Any]], bool] | None = None  # options -> bare GET
    delete_absent: Callable[[Mapping[str, Any]], Absent] | None = None  # options -> answer

    @property
    def per_store(self) -> bool:
        return self.path.endswith("/" + STORE)

    @property
    def stamped(self) -> bool:
        """Whether the sandbox keeps an `updated_at` for it (WRAPPED answers carry one)."""
        return self.shape == WRAPPED

    @property
    def write_method(self) -> str:
        return "POST" if self.shape == WRAPPED else "PUT"

    @property
    def spec_path(self) -> str:
        """The operation's path in its spec (the spec's server base path taken off)."""
        base = _spec_base(self.spec)
        path = self.path.replace(STORE, "{$storeId}")
        return path[len(base) :] if path.startswith(base) else path

    def write_problems(self, body: Any) -> list[str]:
        if self.check is not None:
            return self.check(body)
        return validate.request_problems(self.spec, self.spec_path, self.write_method, body)

    def seed_problems(self, value: Any) -> list[str]:
        if self.seed_check is not None:
            return self.seed_check(value)
        sent = {"value": value} if self.shape == WRAPPED else value
        problems = validate.request_problems(self.spec, self.spec_path, self.write_method, sent)
        return [f"{self.state_key}: {problem}" for problem in problems]


@functools.cache
def _spec_base(spec: str) -> str:
    servers = validate.load_spec(spec).get("servers") or [{"url": ""}]
    return urlsplit(str(servers[0]["url"])).path.rstrip("/")


# -- the hooks of the entries below -------------------------------------------------------------


def _oms_shown(value: Any, mask: Mask) -> dict[str, bool]:
    # Never set (null) reads as off.
    return {"enabled": bool(value and value.get("enabled"))}


def _oms_seed(value: Any) -> list[str]:
    if isinstance(value, dict) and set(value) == {"enabled"} and isinstance(value["enabled"], bool):
        return []
    return ['external_oms must be null or {"enabled": true|false}']


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _webhook_seed(hook: Any) -> list[str]:
    if not isinstance(hook, dict) or set(hook) != set(WEBHOOK_FIELDS):
        return [f"availability_webhook must be null or an object with {WEBHOOK_FIELDS}"]
    problems = [
        f"availability_webhook.{key} must be a string"
        for key in ("url", "api_key", "external_identifier")
        if not isinstance(hook[key], str)
    ]
    if not _is_int(hook["timeout"]):
        problems.append("availability_webhook.timeout must be an integer")
    return problems


def _with_masked_key(value: Any, mask: Mask) -> dict[str, Any]:
    shown = dict(value)
    shown["api_key"] = mask(str(shown["api_key"]))
    return shown


def _webhook_delete_absent(options: Mapping[str, Any]) -> Absent:
    # NewStore does not document DELETE on a missing webhook config; clients must cope with all.
    status = int(options["webhook_delete_absent_status"])
    return Absent(404, "No webhook configuration found.") if status == 404 else Absent(status)


def _atp_seed(value: Any) -> list[str]:
    return [] if isinstance(value, bool) else ["uses_external_atp must be null, true or false"]


def _document_seed(value: Any) -> list[str]:
    return [] if isinstance(value, dict) else ["associate_app_config must be null or an object"]


def _order_webhook_seed(hook: Any) -> list[str]:
    if not isinstance(hook, dict) or set(hook) != set(ORDER_WEBHOOK_FIELDS):
        return [f"external_order_webhook must be null or an object with {ORDER_WEBHOOK_FIELDS}"]
    if all(isinstance(hook[key], str) for key in ("url", "api_key")) and _is_int(hook["timeout"]):
        return []
    return ["external_order_webhook: url and api_key must be strings, timeout an integer"]


def _order_webhook_stored(value: Any) -> dict[str, Any]:
    return {
        "url": value["url"],
        "api_key": value["api_key"],
        "timeout": value.get("timeout", ORDER_WEBHOOK_DEFAULT_TIMEOUT),
    }


def _store_documents_seed(stores: Any) -> list[str]:
    if isinstance(stores, dict) and all(
        isinstance(doc, dict) and isinstance(store, str) and validate.STORE_ID_RE.fullmatch(store)
        for store, doc in stores.items()
    ):
        return []
    return [
        "associate_app_store_configs must be an object of store id "
        "(letters, digits, '_', '-') to configuration object"
    ]


def _no_documents() -> dict[str, Any]:
    return {}


_SALES_ORDER = "configuration-order-management-sales_order_config.yaml"
_ROUTING = "configuration-inventory-fulfillment-logistic_order_config.yaml"
_ASSOCIATE_APP = validate.ASSOCIATE_APP_SPEC

# In the admin state's key order.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        name="external_oms",
        path="/v0/config/sales_order/external_oms",
        methods=("GET", "POST"),
        state_key="external_oms",
        spec=_SALES_ORDER,
        shape=WRAPPED,
        check=validate.check_external_oms,
        seed_check=_oms_seed,
        store=lambda value: {"enabled": value["enabled"]},
        show=_oms_shown,
        updated_at_required=True,
        unwrapped_when=lambda options: options["external_oms_shape"] == "flat",
    ),
    Endpoint(
        name="webhook_config",
        path="/v0/config/availability/webhook",
        methods=("GET", "PUT", "DELETE"),
        state_key="availability_webhook",
        spec="configuration-order-management-availability_config_api.yaml",
        shape=BARE,
        check=validate.check_webhook_config,
        seed_check=_webhook_seed,
        store=lambda body: {key: body[key] for key in WEBHOOK_FIELDS},
        show=_with_masked_key,
        absent=Absent(204),
        delete_absent=_webhook_delete_absent,
    ),
    Endpoint(
        name="external_atp",
        path="/v0/config/routing/uses_external_atp",
        methods=("GET", "POST"),
        state_key="uses_external_atp",
        spec=_ROUTING,
        shape=WRAPPED,
        check=validate.check_external_atp,
        seed_check=_atp_seed,
        errors="messages",
    ),
    Endpoint(
        name="associate_app",
        path="/api/v1/associate-app/config",
        methods=("GET", "PUT", "PATCH"),
        state_key="associate_app_config",
        spec=_ASSOCIATE_APP,
        shape=DOCUMENT,
        default=default_associate_app_config,
        check=validate.check_associate_app,
        seed_check=_document_seed,
        # No document yet. (NewStore's 422 "Configuration file is not readable" is a document
        # it cannot read: script it with a fault rule.)
        absent=Absent(404, "No Associate App configuration exists for this tenant."),
        public_read=True,
    ),
    Endpoint(
        name="external_order_webhook",
        path="/v0/config/sales_order/external_order_webhook",
        methods=("GET", "POST"),
        state_key="external_order_webhook",
        spec=_SALES_ORDER,
        shape=WRAPPED,
        check=validate.check_order_webhook,
        seed_check=_order_webhook_seed,
        store=_order_webhook_stored,
        show=_with_masked_key,
        # Never set: the spec only documents 200 (with a required value) and a default error;
        # NewStore's other tenant settings answer a missing one with 404.
        absent=Absent(404, "No external order webhook configuration found."),
        updated_at_required=True,
    ),
    Endpoint(
        name="associate_app_store",
        path=f"/api/v1/associate-app/config/{STORE}",
        methods=("GET", "PUT", "PATCH", "DELETE"),
        state_key="associate_app_store_configs",
        spec=_ASSOCIATE_APP,
        shape=DOCUMENT,
        default=_no_documents,
        check=validate.check_associate_app,
        seed_check=_store_documents_seed,
        # No document of its own (the store uses the global one): 404, as for the global one.
        absent=Absent(404, "No Associate App configuration exists for this store."),
        public_read=True,
    ),
)

BY_NAME: dict[str, Endpoint] = {entry.name: entry for entry in ENDPOINTS}
STATE_KEYS: tuple[str, ...] = tuple(entry.state_key for entry in ENDPOINTS)
STAMPED_KEYS: tuple[str, ...] = tuple(entry.state_key for entry in ENDPOINTS if entry.stamped)
