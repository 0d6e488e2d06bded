"""The plan's values: what a plan says, shared by the planner, renderers, apply and drift.

`Action` and `Status`, one field's change (`FieldChange`), a safety gate (`Gate`), one write
(`Step`), one environment's plan (`EnvPlan`) and a run's plans (`RunPlan`), all frozen; plus
`status_of` (a plan's status from its steps and blockers), the names of the settings and gates
the planner refers to, and `ClientFactory`, how a run builds each environment's client.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from reconciler.model import (
    Environment,
    Value,
)
from reconciler.newstore.settings import REGISTRY
from reconciler.policy import Decision
from reconciler.provenance import ConfigCommit

if TYPE_CHECKING:
    from datetime import datetime

    # lazy: start-up time (httpx)
    from reconciler.newstore.client import NewStoreClient


ClientFactory: TypeAlias = Callable[[Environment], AbstractContextManager["NewStoreClient"]]
"""Builds the client of one environment; tests pass one on the in-process sandbox."""

REGISTRY_KEYS: Final = tuple(s.key for s in REGISTRY)


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Status(enum.StrEnum):
    CONVERGED = "converged"
    CHANGES = "changes"
    BLOCKED = "blocked"
    ERROR = "error"  # the environment could not be read; `error` says why


@dataclass(frozen=True)
class FieldChange:
    """One field's before → after, already masked: secrets are "(sensitive)" or
    "(sensitive, changed)", never their values."""

    path: str  # "availability_webhook.url"
    before: Any  # masked; ABSENT shown as None
    after: Any  # masked


@dataclass(frozen=True)
class Gate:
    """A check that runs right before its step: "webhook_probe" or "newstore_stock_confirmed"."""

    name: str
    description: str  # e.g. the probe request it will send (masked)
    satisfied: bool | None  # None = runs at apply time (probe not run during plan)


@dataclass(frozen=True)
class Step:
    setting: str  # setting key
    action: Action
    # Unmasked, for apply to write: kept out of repr so a logged or printed plan holds no secret.
    before: Value = field(repr=False)  # live value
    after: Value = field(repr=False)  # desired value
    changes: tuple[FieldChange, ...]
    why: str  # the rule or gate that placed it here, in words
    gates: tuple[Gate, ...] = ()
    # Written even when the live value compares equal (`--replace`, or a masked key that is
    # re-asserted): apply must not skip it as "already done".
    rewrite: bool = False
    # The numbers of the safety rules the state right after this step still breaks (the
    # planner never adds one; a broken live state is repaired step by step): () = safe.
    broken_after: tuple[int, ...] = ()


@dataclass(frozen=True)
class EnvPlan:
    """One environment's plan: a value, frozen once built. A later check (a probe, the policy
    at apply time) returns a new plan (`dataclasses.replace`) and never edits this one; the
    status is computed once, by whoever builds the plan (`status_of`).

    The sequences are typed read-only and stored as lists (so that a plan still compares
    equal to a list, as callers and tests read it); nothing appends to them once built."""

    name: str
    tenant: str
    status: Status
    steps: Sequence[Step] = ()
    blocked_by: Sequence[str] = ()
    live_violations: Sequence[str] = ()  # rules live already breaks
    # The ids of those rules (`Rule.id`), in the same order: for outputs that show a rule's harm.
    live_rules: Sequence[str] = ()
    notes: Sequence[str] = ()  # e.g. "api_key masked by NewStore: unverified"
    fingerprints: Mapping[str, str] = field(default_factory=dict)  # setting key → fingerprint
    # setting key → live value as read, masked (shown_value): what `apply --plan` compares with
    live: Mapping[str, Any] = field(default_factory=dict)
    desired_fingerprint: str = ""
    error: str = ""  # Status.ERROR only: the one-paragraph failure message
    # Whether an apply at planning time may write, by the environment's `policy` (only for an
    # environment with a policy and steps); never changes `status`: plans are never blocked
    # by the calendar, applies are.
    policy: Decision | None = None
    replaced: Sequence[str] = ()  # `--replace` settings (rewritten if equal)
    # `drift --probe` only: why the live webhook cannot serve availability (empty = healthy or
    # not probed); `probe` says what the probe did.
    unhealthy: Sequence[str] = ()
    probe: str = ""
    # Settings the file does not manage but that share a rule with one it does: read (their
    # live value is in `live` and `fingerprints`), judged, never written. Setting key → the
    # numbers of the rules it is read for.
    read_for_rules: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # Their live values, unmasked, for apply's rule checks (a plan read from a file has none:
    # `apply --plan` re-plans from the live state). Out of repr: a webhook holds a key.
    read_only: Mapping[str, Value] = field(default_factory=dict, repr=False, compare=False)
    # `drift`: the secrets NewStore answered masked, so the one it holds could not be compared
    # with the file's ("availability_webhook.api_key").
    uncompared_secrets: Sequence[str] = ()
    # Where the plan read (canonical, `reconciler.identity`): the tenant API (host and path of
    # base_url), its host, and the token endpoint's host and host+path. "" for an environment
    # whose file could not be resolved.
    identity: str = ""
    api_host: str = ""
    token_host: str = ""
    token_endpoint: str = ""
    # The fingerprint of each part of the file that decides a write (`decision_parts`), which
    # key fingerprints the secrets (`key_record`), and how long a plan file stays valid.
    decision: Mapping[str, str] = field(default_factory=dict)
    fingerprint_key: Mapping[str, str] = field(default_factory=dict)
    plan_valid_hours: int = 24

    def __post_init__(self) -> None:
        # Private copies: a caller's list appended to later cannot change the plan.
        for name in (
            "steps",
            "blocked_by",
            "live_violations",
            "live_rules",
            "notes",
            "replaced",
            "unhealthy",
            "uncompared_secrets",
        ):
            object.__setattr__(self, name, list(getattr(self, name)))
        for name in (
            "fingerprints",
            "live",
            "read_for_rules",
            "read_only",
            "decision",
            "fingerprint_key",
        ):
            object.__setattr__(self, name, dict(getattr(self, name)))


def status_of(steps: Sequence[Step], blocked_by: Sequence[str]) -> Status:
    """The status of a readable environment's plan: blocked, changes or converged."""
    if blocked_by:
        return Status.BLOCKED
    return Status.CHANGES if steps else Status.CONVERGED


@dataclass(frozen=True)
class RunPlan:
    """Every environment's plan, in the order given: a value, like its plans. Where it came
    from (`api.plan` fills it in; a plan file records it): when it was made, from which commit
    of the configuration, by whom, in which CI run."""

    environments: Sequence[EnvPlan]
    created_at: datetime | None = None
    config_commit: ConfigCommit | None = None
    created_by: str = ""
    run_url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "environments", list(self.environments))


ATP = "external_atp"
WEBHOOK = "availability_webhook"
WEBHOOK_PROBE = "webhook_probe"
STOCK_CONFIRMED = "newstore_stock_confirmed"
PARTNER_NOT_WRITTEN = "not managed here, never written"
"""How a plan describes a setting it reads for a rule."""
