"""Apply: carry out a plan one checked step at a time, and stop safely on any failure.

    apply_run(envs, run, journal, ...)   every environment of a RunPlan, one after another
    apply_environment(env, plan, ...)    one environment's steps, then the convergence check
    check_plan_file(run, source, envs)   `apply --plan`: refuse unless the file still describes
                                         the world, then return the same plan re-made from it

Every step, in plan order: its gates (the webhook probe; the stock confirmation from the YAML),
a re-read of the setting (already at the target: skip; moved away from the planned `before`:
ChangedUnderneath), the safety rules checked against the latest values read, the write with a
journal intent before and result after, and a read-back that must equal the target. After the
last step the environment is planned again and must need nothing.

Any failure stops at once and raises ApplyError / ChangedUnderneath / BlockedError whose
`report` lists the steps applied, the one that failed (with NewStore's request id), those not
attempted, and what a fresh read of the live state says about every safety rule. Nothing here
needs local state to be correct: running apply again continues from the live state.

The core is silent: progress goes to an `on_event` callback, which the CLI renders.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from reconciler.clock import Clock, system_clock, today_utc
from reconciler.diffing import changed_keys
from reconciler.errors import (
    ApplyError,
    BlockedError,
    ChangedUnderneath,
    Interrupted,
    IPBlockedError,
    NewStoreError,
    PlanFileError,
    ReconcilerError,
)
from reconciler.interrupt import StopRequest
from reconciler.model import ABSENT, Environment, Value
from reconciler.plan import (
    STOCK_CONFIRMED,
    WEBHOOK_PROBE,
    Action,
    ClientFactory,
    EnvPlan,
    RunPlan,
    Status,
    Step,
    build_plan,
    default_client,
    desired_fingerprint,
    differs,
    fingerprint,
    fingerprint_key,
    policy_now,
    probe_for,
    read_live,
    shown_value,
    stock_confirmation_problem,
)
from reconciler.policy import Decision, decide, decision_dict, explain
from reconciler.rules import RULES, Rule, violations
from reconciler.settings import BY_KEY, REGISTRY, Setting

if TYPE_CHECKING:
    from datetime import datetime

    import httpx

    from reconciler.journal import Journal
    from reconciler.lock import TenantLock
    from reconciler.newstore.client import NewStoreClient


WEBHOOK = "availability_webhook"

# --- what happens, as it happens --------------------------------------------------------------


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    SKIPPED = "skipped"  # the setting already had its target value
    FAILED = "failed"
    BLOCKED = "blocked"  # a gate or the policy stopped it


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


Event: TypeAlias = GateChecked | StepFinished | EnvironmentConverged
OnEvent: TypeAlias = Callable[[Event], None]


def _ignore(event: Event) -> None:
    pass


def _show(setting: Setting, value: Value) -> str:
    shown = shown_value(setting, value)
    return "absent" if shown is None else json.dumps(shown, ensure_ascii=False, sort_keys=True)


def _policy_words(decision: Decision) -> str:
    return (
        f'{explain(decision)}. In an emergency, apply again with --break-glass "REASON" '
        "(it overrides windows and freezes only, and is recorded)"
    )


def _rules(rules: Sequence[Rule]) -> str:
    return "; ".join(f"{rule}: {rule.consequence}" for rule in rules)


# --- one environment ----------------------------------------------------------------------------


class _EnvironmentApply:
    """The state of applying one environment: the latest value read of every managed setting
    and what each step came to, for the safety checks and the report."""

    def __init__(
        self,
        env: Environment,
        plan: EnvPlan,
        client: NewStoreClient,
        journal: Journal,
        *,
        skip_probe: bool,
        on_event: OnEvent,
        probe_transport: httpx.BaseTransport | None,
        clock: Clock = system_clock,
        break_glass: str | None = None,
        stop: StopRequest | None = None,
    ) -> None:
        self.env, self.plan, self.client, self.journal = env, plan, client, journal
        self.clock, self.break_glass = clock, break_glass
        self.stop = stop
        self.skip_probe = skip_probe
        self.on_event = on_event
        self.probe_transport = probe_transport
        self.total = len(plan.steps)
        # As planned: a setting with no step already had its desired value (a masked field
        # aside, which no rule looks at).
        self.latest: dict[str, Value] = {
            **env.desired,
            **{step.setting: step.before for step in plan.steps},
        }
        self.broken_at_start = violations(self.latest)
        self.finished: list[StepFinished] = []

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> list[StepFinished]:
        for number, step in enumerate(self.plan.steps, 1):
            try:
                self._check_stop(number, step)
                self._policy(number, step)
                self._gates(number, step)
                self._step(number, step)
            except ReconcilerError as exc:
                raise self._stopped(exc, number) from None
            except Exception as exc:
                raise self._unexpected(exc, number, step) from None
        try:
            self._check_converged()
        except ReconcilerError as exc:
            raise self._stopped(exc, None) from None
        except Exception as exc:
            raise self._unexpected(exc, None, None) from None
        return self.finished

    def _finish(
        self,
        number: int,
        step: Step,
        outcome: Outcome,
        request_id: str | None,
        detail: str = "",
        *,
        best_effort: bool = False,
    ) -> None:
        event = StepFinished(
            self.env.name,
            number,
            self.total,
            step.setting,
            step.action,
            outcome,
            request_id,
            detail,
        )
        self.finished.append(event)
        if best_effort:
            # Reporting a failure that may have come from the callback itself (e.g. the CLI
            # writing to a closed pipe): the report carries the step either way.
            with contextlib.suppress(Exception):
                self.on_event(event)
        else:
            self.on_event(event)

    def _record(self, phase: str, step: Step, **fields: Any) -> None:
        self.journal.record(
            phase,
            environment=self.env.name,
            tenant=self.env.tenant,
            setting=step.setting,
            action=str(step.action),
            **fields,
        )

    def _check_stop(self, number: int, step: Step) -> None:
        """Stop before the next write once a signal asked to (the write in flight, if any,
        has finished: it was let finish)."""
        name = self.stop.signal_name if self.stop is not None else None
        if name is None:
            return
        raise Interrupted(
            f"[{self.env.name}] {name} received: stopped before step {number}/{self.total} "
            f"{step.setting}; nothing more was written",
            signal_name=name,
        )

    # -- (0) the policy ------------------------------------------------------------------------

    def _policy(self, number: int, step: Step) -> None:
        # Asked again before every step, not once per run: a long run (a slow probe, retries,
        # hundreds of environments) can cross a window's end or a freeze's start.
        decision = decide(self.env.policy, self.clock())
        if decision.allowed:
            return
        if self.break_glass is None:
            self._blocked(number, step, "policy", _policy_words(decision))
        self._record(
            "policy",
            step,
            result="overridden",
            break_glass=self.break_glass,
            **decision_dict(decision),
        )
        self.on_event(
            GateChecked(
                self.env.name,
                number,
                self.total,
                step.setting,
                "policy",
                "overridden",
                f"{explain(decision)}; --break-glass: {self.break_glass}",
            )
        )

    # -- (1) gates -------------------------------------------------------------------------------

    def _gates(self, number: int, step: Step) -> None:
        for gate in step.gates:
            if gate.name == WEBHOOK_PROBE:
                self._probe(number, step)
            elif gate.name == STOCK_CONFIRMED:
                # Checked again: a confirmation valid at plan time may have expired since.
                problem = stock_confirmation_problem(self.env, today_utc())
                if problem is not None:
                    self._blocked(number, step, gate.name, problem)

    def _probe(self, number: int, step: Step) -> None:
        def checked(result: str, detail: str) -> None:
            self._record("gate", step, gate=WEBHOOK_PROBE, result=result, detail=detail)
            self.on_event(
                GateChecked(
                    self.env.name, number, self.total, step.setting, WEBHOOK_PROBE, result, detail
                )
            )

        if self.skip_probe:
            checked("skipped", "not run: --skip-probe was given, the webhook is unchecked")
            return
        try:
            summary = probe_for(self.env, transport=self.probe_transport)
        except BlockedError as exc:
            checked("failed", exc.message)
            if step.setting == WEBHOOK:
                self._refused(number, step, exc.message)
            self._blocked(number, step, WEBHOOK_PROBE, exc.message)
        checked("passed", summary)

    def _refused(self, number: int, step: Step, reason: str) -> NoReturn:
        """A webhook config that failed its probe is not written while external ATP is on:
        NewStore would point at it at once. A refused write (exit 1), not a blocked gate: the
        live config is still the old one, and the new one is what is wrong."""
        self._record("result", step, result=str(Outcome.FAILED), request_id=None, error=reason)
        self._finish(number, step, Outcome.FAILED, None, f"gate {WEBHOOK_PROBE}: {reason}")
        raise ApplyError(
            f"[{self.env.name}] step {number}/{self.total} {step.setting}: refused to write a "
            f"webhook config that failed the probe while external ATP is on: {reason}. The "
            "live config was left as it was; nothing from this step on was written."
        )

    def _blocked(self, number: int, step: Step, gate: str, reason: str) -> NoReturn:
        self._record("result", step, result=str(Outcome.BLOCKED), request_id=None, error=reason)
        self._finish(number, step, Outcome.BLOCKED, None, f"gate {gate}: {reason}")
        raise BlockedError(
            f"[{self.env.name}] step {number}/{self.total} {step.setting}: gate {gate} failed: "
            f"{reason}. Nothing from this step on was written."
        )

    # -- (2)-(5) re-read, check, write, read back --------------------------------------------

    def _step(self, number: int, step: Step) -> None:
        setting = BY_KEY[step.setting]
        request_id: str | None = None
        try:
            current = setting.read_managed(self.client, step.after)
            self.latest[step.setting] = current
            if not step.rewrite and not differs(setting, current, step.after):
                self._record("result", step, result=str(Outcome.SKIPPED), request_id=None)
                self._finish(number, step, Outcome.SKIPPED, None, "already done")
                return
            key = fingerprint_key(self.env)
            if fingerprint(setting, current, key) != fingerprint(setting, step.before, key):
                raise self._changed_underneath(setting, step, current)
            self._check_rules(step)
            self._check_stop(number, step)

            self._record(
                "intent",
                step,
                before=shown_value(setting, current),
                after=shown_value(setting, step.after),
            )
            try:
                if step.action is Action.DELETE:
                    request_id = setting.delete(self.client)
                else:
                    assert step.after is not ABSENT
                    request_id = setting.write(self.client, step.after)
            except NewStoreError as exc:
                request_id = exc.request_id
                self._record(
                    "result",
                    step,
                    result=str(Outcome.FAILED),
                    request_id=request_id,
                    error=str(exc),
                )
                raise
            self._record("result", step, result=str(Outcome.APPLIED), request_id=request_id)

            settled = setting.read_managed(self.client, step.after)
            self.latest[step.setting] = settled
            if differs(setting, settled, step.after):
                message = (
                    f"[{self.env.name}] {step.setting} did not settle: wrote "
                    f"{_show(setting, step.after)}, read back {_show(setting, settled)}"
                )
                self._record("verify", step, result=str(Outcome.FAILED), error=message)
                raise ApplyError(message)
        except ReconcilerError as exc:
            if isinstance(exc, NewStoreError) and exc.request_id:
                request_id = exc.request_id
            self._finish(number, step, Outcome.FAILED, request_id)
            raise
        self._finish(number, step, Outcome.APPLIED, request_id)

    def _changed_underneath(self, setting: Setting, step: Step, now: Value) -> ChangedUnderneath:
        planned, current = _show(setting, step.before), _show(setting, now)
        if planned == current:
            secret = " and ".join(sorted(setting.secret_fields))
            current += f" (its {secret} changed)"
        message = (
            f"[{self.env.name}] {step.setting} changed underneath: planned from {planned}, now "
            f"{current}. Another apply or a hand edit changed it since it was read; nothing "
            "more was written. Review a fresh plan."
        )
        self._record("result", step, result=str(Outcome.FAILED), request_id=None, error=message)
        return ChangedUnderneath(message)

    def _check_rules(self, step: Step) -> None:
        # Defence in depth: the planner's order never adds a violation, but the other settings
        # may have moved since they were read (a hand edit, a concurrent run), so the ones
        # sharing a rule with this step are read again right before the write. A change in the
        # moment between that read and the write cannot be seen: NewStore offers no ETags.
        pairs = [{rule.if_setting, rule.then_setting} for rule in RULES]
        partners = set().union(*(pair for pair in pairs if step.setting in pair)) - {step.setting}
        for setting in REGISTRY:
            if setting.key in partners and setting.key in self.env.desired:
                self.latest[setting.key] = setting.read_managed(
                    self.client, self.env.desired[setting.key]
                )
        before = violations(self.latest)
        added = [
            r for r in violations({**self.latest, step.setting: step.after}) if r not in before
        ]
        if added:
            message = (
                f"[{self.env.name}] writing {step.setting} now would break {_rules(added)}; "
                "stopped before writing it"
            )
            self._record("result", step, result=str(Outcome.FAILED), request_id=None, error=message)
            raise ApplyError(message)

    def _check_converged(self) -> None:
        again = build_plan(self.env, read_live(self.env, self.client))
        # (`--replace` is not asked again: a replaced setting now equals its desired value.)
        if again.steps:
            fields = [c.path for s in again.steps for c in s.changes] or [
                s.setting for s in again.steps
            ]
            raise ApplyError(
                f"[{self.env.name}] did not converge: after every step succeeded, a fresh plan "
                f"still changes {', '.join(fields)}"
            )
        self.journal.record(
            "converged", environment=self.env.name, tenant=self.env.tenant, steps=self.total
        )
        self.on_event(EnvironmentConverged(self.env.name, self.total))

    # -- the safe-state report ---------------------------------------------------------------

    def _unexpected(self, exc: Exception, number: int | None, step: Step | None) -> ApplyError:
        """A failure no part of apply anticipated (a bug, or a library raising outside its
        documented errors) still ends in the safe-state report and the journal. Only the type
        is named: the text of an arbitrary exception may hold a header or a secret."""
        kind = type(exc).__name__
        where = f"step {number}/{self.total} {step.setting}" if step else "the convergence check"
        if step is not None and number is not None:
            self._record("error", step, error=kind)
            if len(self.finished) < number:
                self._finish(
                    number, step, Outcome.FAILED, None, f"unexpected {kind}", best_effort=True
                )
        else:
            self.journal.record(
                "error", environment=self.env.name, tenant=self.env.tenant, error=kind
            )
        message = (
            f"[{self.env.name}] {where} stopped on an unexpected {kind}; nothing more was written"
        )
        return ApplyError(message, self.report(number))

    def _stopped(self, exc: ReconcilerError, number: int | None) -> ApplyError | BlockedError:
        report = self.report(number)
        message = exc.message if isinstance(exc, ApplyError | BlockedError) else str(exc)
        if isinstance(exc, BlockedError):
            return BlockedError(message, report)
        if isinstance(exc, ChangedUnderneath):
            return ChangedUnderneath(message, report)
        if isinstance(exc, Interrupted):
            return Interrupted(message, report, exc.signal_name)
        return ApplyError(message, report)

    def report(self, failed_at: int | None) -> str:
        where = (
            f"stopped at step {failed_at} of {self.total}"
            if failed_at is not None
            else f"all {self.total} steps ran, then the convergence check failed"
        )
        lines = [f"{self.env.name} (tenant {self.env.tenant}): {where}."]
        label = {
            Outcome.APPLIED: "applied",
            Outcome.SKIPPED: "skipped",
            Outcome.FAILED: "FAILED",
            Outcome.BLOCKED: "BLOCKED",
        }
        for event in self.finished:
            extra = [f"request id {event.request_id}"] if event.request_id else []
            if event.outcome is Outcome.SKIPPED:
                extra.append("already done")
            elif event.outcome is Outcome.BLOCKED:
                extra.append(event.detail)
            shown = f" ({'; '.join(extra)})" if extra else ""
            lines.append(
                f"  {label[event.outcome]:<14}{event.number}/{self.total} {event.setting}: "
                f"{event.action}{shown}"
            )
        for number, step in enumerate(self.plan.steps, 1):
            if number > len(self.finished):
                lines.append(
                    f"  {'not attempted':<14}{number}/{self.total} {step.setting}: {step.action}"
                )
        lines.append(self._safety_statement())
        lines.append(
            "Running apply again continues from the live state (no local state is needed); "
            "`reconciler plan` shows what is left."
        )
        return "\n".join(lines)

    def _safety_statement(self) -> str:
        blocked_at = self.client.blocked_at
        if blocked_at is not None:
            return self._last_known_safety(blocked_at)
        try:
            live = read_live(self.env, self.client)
        except Exception as exc:
            # A ReconcilerError's message is safe to show; any other exception's is not.
            why = (
                str(exc) if isinstance(exc, ReconcilerError) else f"unexpected {type(exc).__name__}"
            )
            return (
                "WARNING: could not re-read the live state to check the safety rules "
                f"({why}). Check it with `reconciler plan` before anything else."
            )
        broken = violations(live)
        if not broken:
            return "The live state, re-read just now, satisfies every safety rule."
        before = [r for r in broken if r in self.broken_at_start]
        new = [r for r in broken if r not in self.broken_at_start]
        parts = [f"WARNING: THE LIVE STATE, RE-READ JUST NOW, BREAKS {_rules(broken)}."]
        if before:
            parts.append(
                "It already broke "
                + ", ".join(str(r) for r in before)
                + " before this apply; the repair did not finish: run apply again."
            )
        if new:
            parts.append(
                "This apply did not write that state: someone else is changing the tenant. "
                "Fix it now."
            )
        return " ".join(parts)

    def _last_known_safety(self, blocked_at: datetime) -> str:
        """After an IP block, re-reading would extend it: judge the last state read instead."""
        why = (
            f"NewStore blocked this IP at {blocked_at:%H:%M:%S} UTC, so the live state was not "
            "re-read (every request would extend the block); judged on the last state this run "
            "read or wrote instead:"
        )
        broken = violations(self.latest)
        if not broken:
            return (
                f"{why} it satisfies every safety rule. Check it with `reconciler plan` once "
                "the block ends."
            )
        return (
            f"WARNING: {why} IT BREAKS {_rules(broken)}. Once the block ends, run apply again "
            "(or check with `reconciler plan`) before anything else."
        )


def apply_environment(
    env: Environment,
    plan: EnvPlan,
    client: NewStoreClient,
    journal: Journal,
    *,
    skip_probe: bool = False,
    on_event: OnEvent = _ignore,
    probe_transport: httpx.BaseTransport | None = None,
    clock: Clock = system_clock,
    break_glass: str | None = None,
    stop: StopRequest | None = None,
) -> list[StepFinished]:
    """Apply one environment's planned steps, then check it converged; returns what each step
    came to. Raises ApplyError / ChangedUnderneath / BlockedError / Interrupted (with the
    safe-state report); `stop` is checked before every write.
    Before each step the environment's policy is asked at `clock()`; `break_glass` (a reason)
    overrides it."""
    return _EnvironmentApply(
        env,
        plan,
        client,
        journal,
        skip_probe=skip_probe,
        on_event=on_event,
        probe_transport=probe_transport,
        clock=clock,
        break_glass=break_glass,
        stop=stop,
    ).run()


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvResult:
    name: str
    # "applied" | "converged" | "blocked" | "error" (could not be planned; --keep-going
    # skipped it) | "failed" | "not attempted"
    status: str
    steps: int = 0
    error: ApplyError | BlockedError | None = None
    why: str = ""  # for "not attempted": why not


def refuse_unready(run: RunPlan, *, keep_going: bool) -> None:
    """Raise before anything is written unless `run` may be applied: ApplyError when an
    environment could not be planned; BlockedError when one is blocked, unless `keep_going`
    (the blocked ones are then skipped) and another one has changes to apply."""
    errored = [p.name for p in run.environments if p.status is Status.ERROR]
    if errored and not (keep_going and any(p.status is Status.CHANGES for p in run.environments)):
        names = ", ".join(errored)
        them = "it" if len(errored) == 1 else "them"
        raise ApplyError(
            f"nothing applied: {names} could not be planned; fix that first, leave {them} out "
            "by naming the others (`reconciler apply ENV...`), or pass --keep-going to apply "
            f"the others and skip {them}."
        )
    blocked = [p.name for p in run.environments if p.status is Status.BLOCKED]
    if not blocked:
        return
    names = f"{', '.join(blocked)} {'is' if len(blocked) == 1 else 'are'} blocked"
    if not any(p.status is Status.CHANGES for p in run.environments):
        raise BlockedError(f"nothing applied: {names} (see the plan above for why).")
    if not keep_going:
        # A run is checked whole before its first write (an environment half-migrated
        # because its neighbour was blocked is the worse surprise).
        raise BlockedError(
            f"nothing applied: {names} (see the plan above for why), and apply writes "
            "nothing until every environment in the run can be applied. Fix the blocked "
            "ones, leave them out by naming the others (`reconciler apply ENV...`), or pass "
            "--keep-going to apply the others and skip them."
        )


def refuse_held(run: RunPlan, *, keep_going: bool, break_glass: str | None) -> None:
    """Like `refuse_unready`, for the change policy as the plan saw it (`EnvPlan.policy`), so
    that nobody is asked to confirm an apply that would be refused: raise BlockedError unless
    `break_glass`, or `keep_going` and another environment may be written. `apply_run` asks the
    policy again, with its clock, before the first write."""
    if break_glass is not None:
        return
    held = {
        p.name: p.policy
        for p in run.environments
        if p.status is Status.CHANGES and p.policy is not None and not p.policy.allowed
    }
    if not held:
        return
    free = [p for p in run.environments if p.status is Status.CHANGES and p.name not in held]
    if not (keep_going and free):
        raise BlockedError(_held_message("nothing applied", held))


def apply_run(
    envs: Sequence[Environment],
    run: RunPlan,
    journal: Journal,
    *,
    keep_going: bool = False,
    skip_probe: bool = False,
    client_factory: ClientFactory | None = None,
    on_event: OnEvent = _ignore,
    probe_transport: httpx.BaseTransport | None = None,
    locks: Sequence[TenantLock] = (),
    clock: Clock = system_clock,
    break_glass: str | None = None,
    stop: StopRequest | None = None,
) -> list[EnvResult]:
    """Apply every environment of `run` with changes, one after another, in order.

    Converged environments need nothing. Refuses before writing anything when an environment
    could not be planned, or is blocked (`refuse_unready`); with `keep_going`, blocked ones are
    skipped instead (BlockedError at the end), and one failing does not stop the rest (which
    are otherwise reported "not attempted"). `locks` (held by the caller, `lock.tenant_locks`)
    are recorded in the journal's start line.

    Every environment with changes is checked against its policy at `clock()` before the
    first write of the run (`held_by_policy`), and again before each of its steps; a blocked
    one is refused like a gate-blocked one. `break_glass` (the reason) overrides the policy,
    never a gate or safety rule, and is recorded in the journal.
    """
    by_name = {env.name: env for env in envs}
    refuse_unready(run, keep_going=keep_going)
    factory = client_factory or default_client
    journal.record(
        "start",
        environments=[p.name for p in run.environments],
        skip_probe=skip_probe,
        keep_going=keep_going,
        locks=[lock.journal_fields() for lock in locks],
        **({"break_glass": break_glass} if break_glass is not None else {}),
    )
    held = held_by_policy(envs, run, clock(), journal, break_glass=break_glass)
    if held and not keep_going:
        journal.record("end", result="blocked", environments=dict.fromkeys(held, "blocked"))
        raise BlockedError(_held_message("nothing applied", held))
    results: list[EnvResult] = []
    # Why the rest of the run is not attempted: an earlier failure (unless keep_going), an IP
    # block (whatever keep_going says: every request would extend it), or a signal.
    halted = ""
    for plan in run.environments:
        if plan.status is Status.CONVERGED:
            results.append(EnvResult(plan.name, "converged"))
            continue
        if plan.status is Status.BLOCKED or plan.name in held:
            results.append(EnvResult(plan.name, "blocked"))
            continue
        if plan.status is Status.ERROR:
            results.append(EnvResult(plan.name, "error", why=plan.error))
            continue
        if not halted and stop is not None and stop.signal_name is not None:
            halted = f"{stop.signal_name} received before it started"
        if halted:
            results.append(EnvResult(plan.name, "not attempted", len(plan.steps), why=halted))
            continue
        env = by_name[plan.name]
        client: NewStoreClient | None = None
        try:
            with factory(env) as client:
                apply_environment(
                    env,
                    plan,
                    client,
                    journal,
                    skip_probe=skip_probe,
                    on_event=on_event,
                    probe_transport=probe_transport,
                    clock=clock,
                    break_glass=break_glass,
                    stop=stop,
                )
        except (ApplyError, BlockedError) as exc:
            results.append(EnvResult(plan.name, "failed", len(plan.steps), exc))
            halted = _halted_by(exc, client, keep_going)
        except ReconcilerError as exc:  # e.g. the client could not be built
            error = ApplyError(str(exc), f"{plan.name}: nothing was written.")
            results.append(EnvResult(plan.name, "failed", len(plan.steps), error))
            halted = _halted_by(exc, client, keep_going)
        else:
            results.append(EnvResult(plan.name, "applied", len(plan.steps)))
    failed = [r for r in results if r.error is not None]
    blocked = [r.name for r in results if r.status == "blocked"]
    errored = [r.name for r in results if r.status == "error"]
    interrupted = stop.signal_name if stop is not None else None
    if interrupted is not None and not (
        any(r.status == "not attempted" for r in results)
        or any(isinstance(r.error, Interrupted) for r in failed)
    ):
        interrupted = None  # the signal came after the last write: nothing was cut short
    fates = {r.name: r.status for r in results}
    if interrupted is not None:
        # The closing record of a run a signal stopped (instead of "end").
        journal.record("interrupted", signal=interrupted, environments=fates)
    else:
        journal.record(
            "end",
            result="failed" if failed or errored else "blocked" if blocked else "ok",
            environments=fates,
        )
    if failed or interrupted is not None:
        raise _combined(failed, results, interrupted)
    if errored:
        raise ApplyError(
            f"not applied: {', '.join(errored)} could not be planned (--keep-going skipped "
            f"{'it' if len(errored) == 1 else 'them'}); every other environment was applied.",
            _others(results),
        )
    if held:
        raise BlockedError(
            _held_message("not applied", held) + " (--keep-going: the others ran, see above.)"
        )
    if blocked:
        raise BlockedError(
            f"not applied: {', '.join(blocked)} {'is' if len(blocked) == 1 else 'are'} blocked "
            "(see the plan above for why); every other environment was applied."
        )
    return results


def held_by_policy(
    envs: Sequence[Environment],
    run: RunPlan,
    now: datetime,
    journal: Journal,
    *,
    break_glass: str | None,
) -> dict[str, Decision]:
    """The environments with changes whose policy forbids writing at `now`, each with its
    decision; none with `break_glass`. Journals every refusal or override."""
    by_name = {env.name: env for env in envs}
    held: dict[str, Decision] = {}
    for plan in run.environments:
        if plan.status is not Status.CHANGES:
            continue  # a converged environment has nothing to write: never blocked
        env = by_name[plan.name]
        decision = decide(env.policy, now)
        if decision.allowed:
            continue
        journal.record(
            "policy",
            environment=env.name,
            tenant=env.tenant,
            result="blocked" if break_glass is None else "overridden",
            **({"break_glass": break_glass} if break_glass is not None else {}),
            **decision_dict(decision),
        )
        if break_glass is None:
            held[env.name] = decision
    return held


def _held_message(what: str, held: Mapping[str, Decision]) -> str:
    listed = "\n".join(f"  {name}: {explain(decision)}" for name, decision in held.items())
    names = ", ".join(held)
    return (
        f"{what}: {names} {'is' if len(held) == 1 else 'are'} blocked by "
        f"{'its' if len(held) == 1 else 'their'} change policy:\n{listed}\n"
        "Apply again once writes are allowed. In an emergency, apply with --break-glass "
        '"REASON": it overrides windows and freezes only (never a gate or a safety rule) '
        "and the reason is recorded in the output and the journal."
    )


def _halted_by(exc: ReconcilerError, client: NewStoreClient | None, keep_going: bool) -> str:
    """Why the environments after a failed one are not attempted ("" when they are)."""
    blocked_at = client.blocked_at if client is not None else None
    if blocked_at is not None or isinstance(exc, IPBlockedError):
        when = f" at {blocked_at:%H:%M:%S} UTC" if blocked_at is not None else ""
        return (
            f"NewStore blocked this IP{when}, and every request would extend the block; wait "
            "for it to end (about 5 minutes), or ask NewStore support to lift it, then run "
            "apply again"
        )
    if isinstance(exc, Interrupted):
        return f"{exc.signal_name} received"
    if keep_going:
        return ""
    return "an earlier environment failed; --keep-going applies the others anyway"


def _others(results: list[EnvResult]) -> str:
    """The fate of every environment that did not fail, one line each."""
    lines = []
    for result in results:
        if result.error is not None:
            continue
        if result.status == "not attempted":
            lines.append(f"  {result.name}: not attempted ({result.why})")
        elif result.status == "blocked":
            lines.append(f"  {result.name}: not applied, blocked (see the plan above)")
        elif result.status == "error":
            lines.append(f"  {result.name}: not applied, could not be planned ({result.why})")
        elif result.status == "applied":
            lines.append(f"  {result.name}: applied, converged")
        else:
            lines.append(f"  {result.name}: already converged")
    return "Other environments:\n" + "\n".join(lines) if lines else ""


def _combined(
    failed: list[EnvResult], results: list[EnvResult], interrupted: str | None = None
) -> ApplyError | BlockedError:
    reports = [r.error.report for r in failed if r.error is not None and r.error.report]
    others = _others(results)
    if others:
        reports.append(others)
    report = "\n\n".join(reports)

    if not failed:
        assert interrupted is not None
        return Interrupted(
            f"{interrupted} received between environments: nothing more was written",
            report,
            interrupted,
        )
    first = failed[0].error
    assert first is not None
    if len(failed) == 1:
        if interrupted is not None and not isinstance(first, Interrupted):
            # The failure came first; the signal still decides the exit code.
            return Interrupted(first.message, report, interrupted)
        return replace(first, report=report)
    names = ", ".join(r.name for r in failed)
    messages = "\n".join(f"  {r.error.message}" for r in failed if r.error is not None)
    message = f"apply failed in {len(failed)} environments ({names}):\n{messages}"
    if interrupted is not None:
        return Interrupted(message, report, interrupted)
    if all(isinstance(r.error, BlockedError) for r in failed):
        return BlockedError(message, report)
    return ApplyError(message, report)


# --- apply --plan ---------------------------------------------------------------------------


def plan_file_environments(planned: RunPlan, selected: Sequence[str]) -> list[str]:
    """The environment names to apply from a plan file: all of them, or `selected` (each of
    which must be in the file)."""
    in_file = [env.name for env in planned.environments]
    missing = [name for name in selected if name not in in_file]
    if missing:
        raise PlanFileError(
            f"the plan file has no plan for {', '.join(missing)}; it plans "
            f"{', '.join(in_file) or 'nothing'}."
        )
    return [name for name in in_file if not selected or name in selected]


def _moved(setting: Setting, planned: Any, now: Value) -> list[str]:
    """What moved in one setting since the plan, field by field, masked."""
    current = shown_value(setting, now)
    if planned is None or current is None or not isinstance(planned, dict):
        shown_planned = "absent" if planned is None else json.dumps(planned, sort_keys=True)
        shown_now = "absent" if current is None else json.dumps(current, sort_keys=True)
        return [f"{setting.key}: planned from {shown_planned}, now {shown_now}"]
    lines = []
    moved = changed_keys(planned, current)
    for name in [*planned, *(n for n in current if n not in planned)]:
        if name in moved:
            before, after = planned.get(name), current.get(name)
            lines.append(
                f"{setting.key}.{name}: planned from {json.dumps(before)}, now {json.dumps(after)}"
            )
    if not lines:
        # Equal once masked, different fingerprint: a secret changed.
        lines += [
            f"{setting.key}.{name}: planned from (sensitive), now (sensitive, changed)"
            for name in sorted(setting.secret_fields)
        ]
    return lines


def _step_shape(step: Step) -> tuple[str, Action, str]:
    # The masked changes compared as JSON: a plan read from a file holds lists where a fresh
    # one may hold tuples.
    changes = [[c.path, c.before, c.after] for c in step.changes]
    return step.setting, step.action, json.dumps(changes, sort_keys=True)


def _same_steps(a: EnvPlan, b: EnvPlan) -> bool:
    """Same status and steps (setting, action, field changes) in two plans; gate
    descriptions may differ (a probe run at plan time reports its timing)."""
    return a.status is b.status and [_step_shape(s) for s in a.steps] == [
        _step_shape(s) for s in b.steps
    ]


def check_plan_file(
    planned_run: RunPlan,
    source: str,
    envs: Sequence[Environment],
    *,
    client_factory: ClientFactory | None = None,
    parallelism: int = 8,
    now: datetime | None = None,
) -> RunPlan:
    """Check that the plan of a verified plan file (`planfile.read_plan_file`) still holds for
    `envs`, and return its plan re-made from the live state.

    Refuses (PlanFileError, listing every problem of every environment) when an environment is
    blocked or errored in the file, belongs to another tenant, its file or secrets changed, any
    setting's live value moved since the plan, or re-planning gives other steps.
    """
    factory = client_factory or default_client
    by_name = {p.name: p for p in planned_run.environments}
    problems: list[str] = []
    # A blocked (or failed) plan is said to be that, first: it was never applicable.
    unready = [by_name[env.name] for env in envs]
    unready = [p for p in unready if p.status in (Status.BLOCKED, Status.ERROR)]
    if unready:
        for planned in unready:
            why = "; ".join(planned.blocked_by) or planned.error
            problems.append(
                f"{planned.name}: the plan is {planned.status}"
                + (f" ({why})" if why else "")
                + "; fix that and plan again"
            )
        statuses = {p.status for p in unready}
        what = "is blocked" if statuses == {Status.BLOCKED} else "cannot be applied"
        raise PlanFileError(_refusal(source, what, problems))
    for env in envs:
        planned = by_name[env.name]
        if planned.tenant != env.tenant:
            problems.append(
                f"{env.name}: planned for tenant {planned.tenant}, but {env.file} now says "
                f"tenant {env.tenant}"
            )
        elif planned.desired_fingerprint != desired_fingerprint(env):
            problems.append(
                f"{env.name}: the environment file or secrets changed since the plan "
                f"({env.file}, or the ${{...}} variables it reads)"
            )
    if problems:
        raise PlanFileError(_refusal(source, "does not match the environments", problems))

    def recheck(env: Environment) -> tuple[EnvPlan | str, list[str]]:
        """The plan re-made from the live state (or why the live state could not be read),
        and what moved since the plan."""
        planned = by_name[env.name]
        try:
            with factory(env) as client:
                live = read_live(env, client)
        except ReconcilerError as exc:
            return str(exc), []
        key = fingerprint_key(env)
        moved = []
        if set(live) != set(planned.fingerprints):
            moved.append(f"{env.name}: the plan read other settings than the environment manages")
        for name, value in live.items():
            setting = BY_KEY[name]
            if fingerprint(setting, value, key) != planned.fingerprints.get(name):
                moved += [
                    f"{env.name} {line}" for line in _moved(setting, planned.live.get(name), value)
                ]
        plan = build_plan(env, live, replace=planned.replaced)
        if now is not None:
            plan = replace(plan, policy=policy_now(env, plan, now))
        return plan, moved

    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(envs)))) as pool:
        rechecked = list(pool.map(recheck, envs))
    unread = [plan for plan, _ in rechecked if isinstance(plan, str)]
    if unread:
        raise PlanFileError(_refusal(source, "cannot be checked against the live state", unread))
    moved = [line for _, lines in rechecked for line in lines]
    if moved:
        raise PlanFileError(
            _refusal(source, "is stale: the live state changed since the plan", moved)
        )

    replanned = [plan for plan, _ in rechecked if isinstance(plan, EnvPlan)]
    for plan in replanned:
        if not _same_steps(plan, by_name[plan.name]):
            problems.append(
                f"{plan.name}: planning again from the same live state gives other steps than "
                "the file (was it written by another reconciler version?)"
            )
    if problems:
        raise PlanFileError(_refusal(source, "cannot be applied as written", problems))
    return RunPlan(replanned)


def _refusal(source: str, what: str, problems: list[str]) -> str:
    listed = "\n".join(f"  {p}" for p in problems)
    return (
        f"{source} {what}; nothing was applied:\n{listed}\n"
        "Run `reconciler plan --out` again, review the new plan, and apply that."
    )
