"""The values every layer passes around: environments, setting values, sentinels.

A setting's value is either a small flat dict of normalised fields (e.g. ``{"enabled": True}``)
or ``ABSENT`` (the configuration does not exist / must not exist). A setting the environment
file omits is *unmanaged* and simply has no key in ``Environment.desired``: omitted and
``ABSENT`` are different things, so neither is spelled ``None``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, TypeAlias

from reconciler.policy import ALWAYS, Policy


class _Absent(enum.Enum):
    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


class _Unknown(enum.Enum):
    UNKNOWN = "unknown"

    def __repr__(self) -> str:
        return "UNKNOWN"


ABSENT: Final = _Absent.ABSENT
"""The setting's configuration does not exist (live) or must not exist (desired)."""

UNKNOWN: Final = _Unknown.UNKNOWN
"""A field NewStore returned masked (e.g. a webhook api_key): we cannot tell its value.
It never counts as a difference; the plan says it could not be verified."""


@dataclass(frozen=True)
class Masked:
    """A secret NewStore returned masked but not wholly: what the mask left visible (e.g. the
    last four characters of `****cdef`). A desired secret that does not start with `prefix`
    and end with `suffix` cannot be the one NewStore holds. Never shown: its repr hides it."""

    prefix: str = field(repr=False)
    suffix: str = field(repr=False)

    def could_be(self, secret: Any) -> bool:
        return (
            isinstance(secret, str)
            and len(secret) >= len(self.prefix) + len(self.suffix)
            and secret.startswith(self.prefix)
            and secret.endswith(self.suffix)
        )


def unreadable(value: Any) -> bool:
    """A live field NewStore returned masked, wholly (UNKNOWN) or partly (Masked)."""
    return value is UNKNOWN or isinstance(value, Masked)


Fields: TypeAlias = dict[str, Any]
Value: TypeAlias = Fields | _Absent
"""A normalised setting value: its managed fields, or ABSENT."""

SENSITIVE: Final = "(sensitive)"
SENSITIVE_CHANGED: Final = "(sensitive, changed)"
UNKNOWN_SHOWN: Final = "(unknown)"
_MARKERS: Final = frozenset({SENSITIVE, SENSITIVE_CHANGED, UNKNOWN_SHOWN})


def show_value(value: Any, *, sort_keys: bool = False) -> str:
    """A masked value (`plan.shown_value`, a `FieldChange` side) for people, the one way every
    message and renderer shows one: absent, a marker as-is, anything else as JSON (strings are
    quoted so that a trailing slash or space stays visible)."""
    if value is None:
        return "absent"
    if isinstance(value, str) and value in _MARKERS:
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=sort_keys)


"""How an UNKNOWN (masked live) field is shown to people and in plan files."""


@dataclass(frozen=True)
class Connection:
    base_url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout: float = 10.0  # seconds per HTTP request
    ca_bundle: str | None = None  # CA bundle path; None = system store / SSL_CERT_FILE etc.
    retry_attempts: int = 10  # a backstop: total attempts per request, the first included
    retry_max_seconds: float = 60.0  # give up retrying once this much time has passed


@dataclass(frozen=True)
class WebhookProbe:
    """`gates.webhook_probe`: the sample availability request sent before external ATP goes on."""

    products: tuple[str, ...]
    fulfillment_locations: tuple[str, ...]
    # At least this many requested (product, location) pairs must answer atp > 0; None: any.
    min_available: int | None = None


@dataclass(frozen=True)
class Gates:
    webhook_probe: WebhookProbe | None = None
    # The day (UTC) a person checked that NewStore holds stock; None = not confirmed.
    newstore_stock_confirmed: date | None = None
    stock_confirmation_valid_days: int = 7


@dataclass(frozen=True)
class LockChoice:
    """`apply_lock:` which lock apply takes per tenant (`core.lock`): `local` (a file lock on
    this machine) or `git` (a ref in the configuration repository's remote `remote`, which
    any other apply may break once `ttl_seconds` passed; None: only `reconciler unlock`)."""

    backend: str = "local"
    remote: str = "origin"
    ttl_seconds: float | None = None


@dataclass(frozen=True)
class Location:
    """Where a key came from, for error messages that name file:line:column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def parent_path(path: str) -> str:
    """The key path one level up: "a.b[2]" → "a.b" → "a" → "" (the document)."""
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def locate(locations: Mapping[str, Location], path: str) -> Location | None:
    """Where `path` was written, else its closest written parent (list items included: the
    parent of "a.b[2]" is "a.b"), else None."""
    while True:
        loc = locations.get(path)
        if loc is not None or not path:
            return loc
        path = parent_path(path)


FINGERPRINT_KEY_VARIABLE: Final = "RECONCILER_FINGERPRINT_KEY"
"""The environment variable holding the key of plan files' secret fingerprints."""


@dataclass(frozen=True)
class Environment:
    """One tenant's desired state, fully resolved (extends merged, ${VAR}s substituted)."""

    name: str
    file: str
    tenant: str
    connection: Connection
    # Only managed settings, keyed by setting key, in registry order. Out of repr: it holds the
    # webhook api_key in clear.
    desired: Mapping[str, Value] = field(repr=False)
    gates: Gates = Gates()
    policy: Policy = ALWAYS  # when apply may write (`policy:`); ALWAYS when the file has none
    # How long a plan file made for this environment may be applied (`plan_valid_hours`).
    plan_valid_hours: int = 24
    # RECONCILER_FINGERPRINT_KEY: the key of the plan file's secret fingerprints, shared by the
    # plan and apply jobs whatever API client each uses; None when unset (the client secret
    # keys them then). Out of repr: it is a secret.
    fingerprint_secret: str | None = field(default=None, repr=False)
    # key path ("availability_webhook.url") -> where it was written; for messages.
    locations: Mapping[str, Location] = field(default_factory=dict, repr=False, compare=False)
    # `allow_shared_tenant: true`: another environment file may resolve to the same tenant.
    allow_shared_tenant: bool = False
    # `apply_lock:` the lock apply takes; None when the files do not say (the default, local).
    apply_lock: LockChoice | None = None
    # URL fields that are secrets in this environment, because a ${VAR} fills their query or
    # userinfo (key path -> the variables' names): masked and fingerprinted like an api_key.
    secret_urls: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def secret_names(self, setting: str) -> frozenset[str]:
        """The fields of `setting` that are secrets in this environment beyond the setting's
        own `secret_fields` (a url whose query holds a ${VAR})."""
        prefix = f"{setting}."
        return frozenset(
            path.removeprefix(prefix) for path in self.secret_urls if path.startswith(prefix)
        )

    def where(self, path: str) -> str:
        """`file:line:column` of a key path, falling back to its parents, then to the file."""
        loc = locate(self.locations, path)
        return self.file if loc is None else str(loc)


@dataclass(frozen=True)
class Unresolved:
    """An environment whose file could not be turned into an Environment (a missing ${VAR},
    an invalid value): read-only commands report it as an error and run the others."""

    name: str
    file: str
    tenant: str  # "" when the file does not say
    error: str  # one paragraph: every problem, file:line:column first
