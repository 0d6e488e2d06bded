"""What happens during apply, as it happens: the events the core emits to `on_event` (the CLI
renders them with `render.steps.render_event`) and what each step came to."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from reconciler.core.plan import Action, RunPlan


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    SKIPPED = "skipped"  # the setting already had its target value
    FAILED = "failed"
    UNKNOWN = "unknown"  # the write's answer was lost: it may have landed
    BLOCKED = "blocked"  # a gate or the policy stopped it
    # A compensating write: the step's write was set back (or the rule's condition to its safe
    # side) at once, because a concurrent change made it break a rule.
    UNDONE = "undone"


@dataclass(frozen=True)
class GateChecked:
    environment: str
    number: int
    total: int
    setting: str
    gate: str
    result: str  # "passed" | "failed" | "skipped"
    detail: str


@dataclass(frozen=True)
class StepStarted:
    """A step is about to be checked (policy, gates, re-read) and, if all agree, written."""

    environment: str
    number: int
    total: int
    setting: str
    action: Action


@dataclass(frozen=True)
class StepFinished:
    environment: str
    number: int
    total: int
    setting: str
    action: Action
    outcome: Outcome
    request_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class EnvironmentConverged:
    environment: str
    steps: int


@dataclass(frozen=True)
class PlanAccepted:
    """The run's plan passed every check made before the first write (nothing unplannable or
    blocked, the change policy, the locks and the older-commit check); `checksum` is its plan
    file's (`apply --plan`) or, planned by this run, that of the plan file it would make."""

    plan: RunPlan
    checksum: str


Event: TypeAlias = StepStarted | GateChecked | StepFinished | EnvironmentConverged
OnEvent: TypeAlias = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default `on_event`: a caller that wants no progress."""
    pass
