"""The plan is a value: what each environment needs, in a safe order, and why.

(Data model fixed here first so that planner, renderers, apply and drift can be built side by
side; the planning functions land with the plan issue.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import Value


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
    before: Value  # live value (unmasked; never serialised as-is)
    after: Value  # desired value (unmasked; never serialised as-is)
    changes: tuple[FieldChange, ...]
    why: str  # the rule or gate that placed it here, in words
    gates: tuple[Gate, ...] = ()


@dataclass
class EnvPlan:
    name: str
    tenant: str
    status: Status
    steps: list[Step] = field(default_factory=list)
    blocked_by: list[str] = field(default_factory=list)
    live_violations: list[str] = field(default_factory=list)  # rules live already breaks
    notes: list[str] = field(default_factory=list)  # e.g. "api_key masked by NewStore: unverified"
    fingerprints: dict[str, str] = field(default_factory=dict)  # setting key → live fingerprint
    desired_fingerprint: str = ""
    error: str = ""  # Status.ERROR only: the one-paragraph failure message


@dataclass
class RunPlan:
    environments: list[EnvPlan]
