"""The stop report: what an apply that stopped leaves behind, as a value.

When apply stops (a failed step, a blocked gate, a signal, an unexpected exception), the error
it raises carries a `RunReport`: for each environment that failed, the steps applied, the one
that failed (with NewStore's request id) and those not attempted, and what a fresh read of the
live state says about every safety rule (`SafetyCheck`); then the fate of every other
environment of the run. The core builds it and never words it: `render.stop_report` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

from reconciler.core.apply.events import StepFinished
from reconciler.core.plan import Action, read_live
from reconciler.errors import ReconcilerError
from reconciler.model import Environment, Value
from reconciler.rules import Rule, violations

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient


@dataclass(frozen=True)
class SafetyCheck:
    """What the state after a stop says about the safety rules.

    Normally a fresh read of the live state: `broken` the rules it breaks, `broken_before` those
    of them it already broke before the apply began. When the read failed, `unreadable` says
    why. After an IP block (`blocked_at`), nothing is re-read (every request would extend the
    block): `broken` is then judged on the last state the run read or wrote."""

    broken: tuple[Rule, ...] = ()
    broken_before: tuple[Rule, ...] = ()
    unreadable: str = ""
    blocked_at: datetime | None = None

    @property
    def broken_by_others(self) -> tuple[Rule, ...]:
        """Broken now, not before the apply: this apply did not write that state."""
        return tuple(rule for rule in self.broken if rule not in self.broken_before)


@dataclass(frozen=True)
class NotAttempted:
    number: int
    setting: str
    action: Action


@dataclass(frozen=True)
class StopReport:
    """One environment's apply that stopped: at step `failed_at` of `total`, or (None) in the
    convergence check after every step ran. `interrupted` names the signal that stopped it
    before step `failed_at` began (that step was not attempted, it did not fail)."""

    environment: str
    tenant: str
    total: int
    failed_at: int | None
    finished: tuple[StepFinished, ...]
    not_attempted: tuple[NotAttempted, ...]
    safety: SafetyCheck
    interrupted: str | None = None


@dataclass(frozen=True)
class NothingWritten:
    """An environment that failed before its first request (e.g. its client could not be
    built): nothing was written to it."""

    environment: str


EnvStop: TypeAlias = StopReport | NothingWritten


@dataclass(frozen=True)
class EnvFate:
    """What became of an environment of the run that did not fail: "applied", "converged",
    "blocked", "error" (could not be planned; `why`) or "not attempted" (`why`)."""

    name: str
    status: str
    why: str = ""


@dataclass(frozen=True)
class RunReport:
    """The stop report of a run: every failed environment's, then the other environments'
    fates (empty for a single environment's apply)."""

    stops: tuple[EnvStop, ...] = ()
    others: tuple[EnvFate, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.stops or self.others)


def check_safety(
    env: Environment,
    client: NewStoreClient,
    latest: Mapping[str, Value],
    broken_at_start: Sequence[Rule],
) -> SafetyCheck:
    """Re-read the live state and judge it by the safety rules; after an IP block, judge
    `latest` (the last state read or written) instead."""
    blocked_at = client.blocked_at
    if blocked_at is not None:
        return SafetyCheck(broken=tuple(violations(latest)), blocked_at=blocked_at)
    try:
        live = read_live(env, client)
    except Exception as exc:
        # A ReconcilerError's message is safe to show; any other exception's is not.
        why = str(exc) if isinstance(exc, ReconcilerError) else f"unexpected {type(exc).__name__}"
        return SafetyCheck(unreadable=why)
    broken = violations(live)
    return SafetyCheck(
        broken=tuple(broken),
        broken_before=tuple(rule for rule in broken if rule in broken_at_start),
    )
