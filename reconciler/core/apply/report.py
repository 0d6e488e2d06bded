"""The stop report: what an apply that stopped leaves behind, as a value.

When apply stops (a failed step, a blocked gate, a signal, an unexpected exception), the error
it raises carries a `RunReport`: for each environment that failed, the steps applied, the one
that failed (with NewStore's request id) and those not attempted, the changes someone else made
while it ran (`ConcurrentChange`), and what a fresh read of the live state says about every
safety rule (`SafetyCheck`), each broken rule with whose writes broke it (`RuleBreak`: this
apply's own, someone else's, or already broken before); then the fate of every other
environment of the run. The core builds it and never words it: `render.stop_report` does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

from reconciler.core.apply.events import StepFinished
from reconciler.core.plan import Action, fingerprint, fingerprint_key, read_live
from reconciler.errors import ReconcilerError
from reconciler.model import ABSENT, Environment, Value
from reconciler.newstore.settings import BY_KEY
from reconciler.rules import RULES, Rule, violations

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient


@dataclass(frozen=True)
class RuleBreak:
    """Whose writes a rule broken after the stop is down to, judged against what this apply
    last read or wrote of each of its two settings: `own` the settings whose live value is
    the one this apply wrote, `others` those someone else changed since this apply last read
    or wrote them, `before` whether the rule was already broken when the apply began."""

    rule: Rule
    own: tuple[str, ...] = ()
    others: tuple[str, ...] = ()
    before: bool = False


@dataclass(frozen=True)
class ConcurrentChange:
    """A change someone else made to the tenant while this apply ran, as one of its re-reads
    found it: `what` in words ("deleted availability_webhook"), noticed at step `at`
    (`after_own_write`: in the re-read right after this apply's own write of that step), and
    the rules it broke (empty: it broke none, but the plan no longer holds)."""

    setting: str
    what: str
    at: int
    after_own_write: bool
    broke: tuple[Rule, ...] = ()


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
    breaks: tuple[RuleBreak, ...] = ()  # one per rule of `broken`, in that order
    # Rules with a probe that the read cannot break but nothing vouches for: the condition
    # holds and the config exists, but no probe passed for the config NewStore holds (`why`).
    unproven: tuple[Rule, ...] = ()
    unproven_why: str = ""

    @property
    def broken_by_others(self) -> tuple[Rule, ...]:
        """Broken now, not before the apply, and by no write of this apply's: someone else
        wrote that state."""
        return tuple(b.rule for b in self.breaks if not b.before and not b.own)


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
    concurrent: tuple[ConcurrentChange, ...] = ()


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
    seen: Mapping[str, str] | None = None,
    written: Mapping[str, str] | None = None,
    foreign: Collection[str] = (),
    vouch: Callable[[Value], str | None] | None = None,
) -> SafetyCheck:
    """Re-read the live state and judge it by the safety rules, each broken rule with whose
    writes it is down to (`RuleBreak`): `seen` holds the fingerprint of what the apply last
    read or wrote of each setting, `written` of what it wrote itself (`plan.fingerprint`),
    `foreign` the settings whose value as last read someone else wrote. A rule with a probe
    (rule 1) holds only for a config a probe passed for: `vouch(held)` says why the config
    NewStore holds is not vouched for (None: it is; no `vouch`: nothing is). After an IP
    block, judge `latest` (the last values read or written) instead."""
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
    key = fingerprint_key(env)
    now = {
        name: fingerprint(BY_KEY[name], value, key, env.secret_names(name))
        for name, value in live.items()
    }
    seen, written = seen or {}, written or {}
    breaks = []
    for rule in broken:
        sides = [s for s in (rule.if_setting, rule.then_setting) if s in now]
        own = tuple(s for s in sides if written.get(s) == now[s])
        others = tuple(
            s
            for s in sides
            if written.get(s) != now[s] and ((s in seen and seen[s] != now[s]) or s in foreign)
        )
        breaks.append(RuleBreak(rule, own, others, rule in broken_at_start))
    unproven, why = [], ""
    for rule in RULES:
        if rule.probe is None or rule in broken or rule.condition(live) is not True:
            continue
        held = live.get(rule.then_setting, ABSENT)
        if held is ABSENT:
            continue
        found = "no probe was run for it" if vouch is None else vouch(held)
        if found is not None:
            unproven.append(rule)
            why = why or found
    return SafetyCheck(
        broken=tuple(broken),
        broken_before=tuple(rule for rule in broken if rule in broken_at_start),
        breaks=tuple(breaks),
        unproven=tuple(unproven),
        unproven_why=why,
    )
