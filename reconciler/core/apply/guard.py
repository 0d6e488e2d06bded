"""What one environment's apply knows of the live state, and the checks it makes around each
write against a concurrent writer (`recheck` holds the pure parts).

Before a write: the settings sharing a rule with it are re-read (read-only partners included),
the write must add no violation, and a write that a passed webhook probe vouches for needs
NewStore to hold the probed config, field for field as far as the read shows. After a write
that a rule relies on: the rule's other settings are re-read; a rule broken now (or the webhook
no longer the probed one while external ATP is on) is a concurrent change this apply must undo
at once (`AfterWrite.compensation`), and name. Every re-read that finds a setting moved since
this apply last read or wrote it is recorded as a `ConcurrentChange` for the stop report.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from reconciler.core.apply.recheck import (
    Compensation,
    blind_compensation,
    compensation,
    did,
    moved_fields,
    relied_on,
)
from reconciler.core.apply.report import ConcurrentChange
from reconciler.core.plan import (
    WEBHOOK,
    WEBHOOK_PROBE,
    EnvPlan,
    Step,
    differs,
    fingerprint,
    fingerprint_key,
)
from reconciler.errors import ApplyError, ChangedUnderneath
from reconciler.model import ABSENT, Environment, Value
from reconciler.newstore.settings import BY_KEY, REGISTRY
from reconciler.rules import RULES, Rule, violations

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient


ProbeNow: TypeAlias = Callable[[], "bool | None"]
"""Runs the webhook probe now: True passed, False failed, None not run (--skip-probe)."""


def _rules(rules: list[Rule] | tuple[Rule, ...]) -> str:
    return "; ".join(f"{rule}: {rule.consequence}" for rule in rules)


@dataclass
class AfterWrite:
    """What the re-read right after a write found: the rules the write relies on that are
    broken now, the concurrent changes that broke them, and the write that undoes it (None:
    no single write can; the stop report then says so in capitals)."""

    broken: list[Rule] = field(default_factory=list)
    changes: list[ConcurrentChange] = field(default_factory=list)
    compensation: Compensation | None = None
    # Why the re-read failed, when it did: `broken` are then the rules whose state is unknown
    # (treated as broken: the safe side is written), `compensation` a write that keeps them
    # whatever the unread settings hold.
    unreadable: str = ""


class Guard:
    """The latest value of every setting apply read or wrote, and whose they are."""

    def __init__(self, env: Environment, plan: EnvPlan, client: NewStoreClient) -> None:
        self.env, self.client = env, client
        self.key = fingerprint_key(env)
        # As planned: a managed setting with no step already had its desired value (a masked
        # field aside); a setting read for a rule, its live value.
        self.latest: dict[str, Value] = {
            **env.desired,
            **plan.read_only,
            **{step.setting: step.before for step in plan.steps},
        }
        self.broken_at_start = violations(self.latest)
        # Fingerprints of what this apply last read or wrote of each setting, and of what it
        # wrote (as NewStore shows it back): whose a value is, for the stop report.
        self.seen: dict[str, str] = dict(plan.fingerprints)
        self.written: dict[str, str] = {}
        self.concurrent: list[ConcurrentChange] = []
        # Settings whose value, as last read, someone else wrote (until this apply writes them).
        self.foreign: set[str] = set()
        # The webhook config the last passed probe tested (None: no probe passed, or skipped).
        self.probed: Value | None = None

    def fingerprint(self, key: str, value: Value) -> str:
        return fingerprint(BY_KEY[key], value, self.key, self.env.secret_names(key))

    def _fetch(self, key: str) -> Value:
        return BY_KEY[key].read_managed(self.client, self.env.desired.get(key, ABSENT))

    def read(self, key: str, number: int, *, after_own_write: bool = False) -> Value:
        """Read a setting now; a value moved since this apply last read or wrote it is a
        concurrent change (recorded)."""
        return self._note(key, self._fetch(key), number, after_own_write)

    def read_agreeing(
        self, key: str, number: int, agrees: Callable[[Value], bool]
    ) -> tuple[Value, int]:
        """Like `read`, but an answer that `agrees` rejects (it contradicts what the plan read:
        a 404 where a document was) is read again first, within the retry budget
        (`NewStoreClient.confirm`); only the last answer is noted. Also how many reads."""
        value, reads = self.client.confirm(lambda: self._fetch(key), agrees)
        return self._note(key, value, number, False), reads

    def read_all(self, keys: list[str], number: int, *, after_own_write: bool = False) -> None:
        """Read several settings side by side (one round trip), then note each."""
        if len(keys) < 2:
            for key in keys:
                self.read(key, number, after_own_write=after_own_write)
            return
        with ThreadPoolExecutor(max_workers=len(keys)) as pool:
            values = list(pool.map(self._fetch, keys))
        for key, value in zip(keys, values, strict=True):
            self._note(key, value, number, after_own_write)

    def _note(self, key: str, value: Value, number: int, after_own_write: bool) -> Value:
        setting = BY_KEY[key]
        fp = self.fingerprint(key, value)
        if key in self.seen and self.seen[key] != fp:
            what = did(setting, self.latest.get(key, ABSENT), value)
            self.concurrent.append(ConcurrentChange(key, what, number, after_own_write))
            self.foreign.add(key)
        self.latest[key] = value
        self.seen[key] = fp
        return value

    def read_back(self, key: str, number: int, written: Value) -> Value:
        """Read `key` right after this apply wrote `written`: what NewStore shows of that write
        is this apply's own; anything else someone else wrote since (a concurrent change,
        recorded as such, never as this apply's write)."""
        setting = BY_KEY[key]
        value = setting.read_managed(self.client, written)
        if differs(setting, value, written):
            return self._note(key, value, number, True)
        self.wrote(key, value)
        return value

    def wrote(self, key: str, settled: Value) -> None:
        """This apply wrote `key` (and read back `settled`; until then, what it sent)."""
        self.latest[key] = settled
        self.seen[key] = self.written[key] = self.fingerprint(key, settled)
        self.foreign.discard(key)

    def _partners(self, key: str) -> list[str]:
        pairs = [{rule.if_setting, rule.then_setting} for rule in RULES]
        partners = set().union(*(pair for pair in pairs if key in pair)) - {key}
        return [s.key for s in REGISTRY if s.key in partners and s.key in self.latest]

    # -- before a write -----------------------------------------------------------------------

    def before_write(self, number: int, total: int, step: Step) -> ApplyError | None:
        """Re-read the settings sharing a rule with `step` right before its write; returns the
        error refusing the write (None: it may go out). A change in the moment between this
        read and the write cannot be seen: `after_write` catches what it breaks."""
        self.read_all(self._partners(step.setting), number)
        before = violations(self.latest)
        added = [
            r for r in violations({**self.latest, step.setting: step.after}) if r not in before
        ]
        where = f"[{self.env.name}] step {number}/{total} {step.setting}"
        if added:
            return ApplyError(
                f"[{self.env.name}] writing {step.setting} now would break {_rules(added)}; "
                "stopped before writing it"
            )
        after = {**self.latest, step.setting: step.after}
        unprobed = [
            rule
            for rule in RULES
            if rule.probe is not None
            and step.setting in (rule.if_setting, rule.then_setting)
            and rule.condition(after) is True
            and after.get(rule.then_setting, ABSENT) is not ABSENT
            and not _probed_step(step)
        ]
        if unprobed:
            partner = unprobed[0].if_setting
            return ChangedUnderneath(
                f"{where}: {partner} went on since the plan (someone else changed it), so this "
                f"write would now need the webhook probe of {unprobed[0]}, which the plan did "
                "not put on it; stopped before writing it, nothing more was written. Review a "
                "fresh plan."
            )
        if self.probed is not None and step.setting != WEBHOOK and _probed_step(step):
            moved = moved_fields(BY_KEY[WEBHOOK], self.latest[WEBHOOK], self.probed)
            if moved:
                return ChangedUnderneath(
                    f"{where}: {WEBHOOK} as NewStore holds it now is not the one the probe "
                    f"tested: its {' and '.join(moved)} changed (someone else changed it since "
                    f"it was probed); stopped before writing {step.setting}, nothing more was "
                    "written. Review a fresh plan."
                )
        return None

    # -- after a write ------------------------------------------------------------------------

    def after_write(self, number: int, step: Step, probe_now: ProbeNow) -> AfterWrite:
        """Re-read the other side of every rule this write relies on, side by side, as the
        very next request after the write; judge them."""
        relied = relied_on(step.setting, self.latest)
        if not relied:
            return AfterWrite()
        before_write = set(violations({**self.latest, step.setting: step.before}))
        mark = len(self.concurrent)
        others = [
            key
            for key in self._partners(step.setting)
            if any(key in (r.if_setting, r.then_setting) for r in relied)
        ]
        self.read_all(others, number, after_own_write=True)
        broken = [r for r in relied if r.holds(self.latest) is False and r not in before_write]
        safe_side_first = False
        for rule in relied:
            if rule in broken or rule.probe is None or rule.condition(self.latest) is not True:
                continue
            # The probe's half of the rule: this write turned external ATP on, so the webhook
            # must be the config the probe passed for. (A webhook write that someone else's
            # write replaced at once is the read-back's "did not settle": a safe stop.)
            if self.probed is not None and step.setting == rule.if_setting:
                if moved_fields(BY_KEY[WEBHOOK], self.latest[WEBHOOK], self.probed):
                    broken.append(rule)
            elif step.setting == WEBHOOK and not _probed_step(step) and probe_now() is False:
                # Written while external ATP was off, someone turned it on since, and the
                # config this apply wrote fails the probe: the safe side is ATP off.
                broken.append(rule)
                safe_side_first = True
        changes = self.concurrent[mark:]
        for index, change in enumerate(changes):
            hit = tuple(r for r in broken if change.setting in (r.if_setting, r.then_setting))
            changes[index] = ConcurrentChange(
                change.setting, change.what, change.at, change.after_own_write, hit
            )
        self.concurrent[mark:] = changes
        if not broken:
            return AfterWrite(changes=changes)
        undo = compensation(
            step.setting, step.before, self.latest, broken, undo_first=not safe_side_first
        )
        return AfterWrite(broken, changes, undo)

    def unknown_after_write(self, step: Step, why: str) -> AfterWrite | None:
        """The re-read after a write that rules rely on failed (`why`): whether those rules
        still hold is unknown, so they are treated as broken, and the compensation is a write
        that keeps them whatever the unread settings hold. None: the write relies on no rule."""
        before_write = set(violations({**self.latest, step.setting: step.before}))
        relied = [r for r in relied_on(step.setting, self.latest) if r not in before_write]
        if not relied:
            return None
        undo = blind_compensation(step.setting, step.before, self.latest, relied)
        return AfterWrite(relied, [], undo, why)


def _probed_step(step: Step) -> bool:
    return any(gate.name == WEBHOOK_PROBE for gate in step.gates)
