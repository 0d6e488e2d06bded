"""Apply one environment: its planned steps one checked step at a time, then the convergence
check; any failure stops at once with the stop report (`report.RunReport`).

Every step, in plan order: the change policy, its gates (the webhook probe; the stock
confirmation from the YAML), a re-read of the setting (already at the target: skip; moved away
from the planned `before`: ChangedUnderneath), the settings sharing a rule with it re-read and
the rules checked against them (and the webhook against the config the probe tested), the write
with a journal intent before and result after, a read-back that must equal the target, and,
for a write a rule relies on, the rule's other settings re-read: a rule a concurrent change
broke is undone at once by a compensating write (`guard`), and apply stops. After the last
step the environment is planned again and must need nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from reconciler.clock import Clock, system_clock, today_utc
from reconciler.core.apply.events import (
    EnvironmentConverged,
    GateChecked,
    OnEvent,
    Outcome,
    StepFinished,
    ignore,
)
from reconciler.core.apply.guard import AfterWrite, Guard
from reconciler.core.apply.recheck import Compensation, did
from reconciler.core.apply.report import NotAttempted, RunReport, StopReport, check_safety
from reconciler.core.interrupt import StopRequest
from reconciler.core.plan import (
    STOCK_CONFIRMED,
    WEBHOOK,
    WEBHOOK_PROBE,
    Action,
    EnvPlan,
    Step,
    build_plan,
    differs,
    read_live,
    refuses_write,
    run_gate,
    shown_value,
    stock_confirmation_problem,
)
from reconciler.errors import (
    ApplyError,
    BlockedError,
    ChangedUnderneath,
    HostBlockedError,
    Interrupted,
    JournalError,
    NewStoreError,
    ReconcilerError,
    ReportedError,
    UnreachableError,
)
from reconciler.model import ABSENT, Environment, Value, show_value
from reconciler.newstore.settings import BY_KEY, Setting
from reconciler.policy import Decision, decide, decision_dict, explain
from reconciler.rules import Rule

if TYPE_CHECKING:
    import httpx

    from reconciler.core.journal import Journal
    from reconciler.newstore.client import NewStoreClient


def _show(setting: Setting, value: Value, secret: frozenset[str] = frozenset()) -> str:
    return show_value(shown_value(setting, value, secret), sort_keys=True)


def _policy_words(decision: Decision) -> str:
    return (
        f'{explain(decision)}. In an emergency, apply again with --break-glass "REASON" '
        "(it overrides windows and freezes only, and is recorded)"
    )


ANSWER_LOST = "the answer was lost: the write may have landed"


def _answer_lost(exc: ReconcilerError) -> bool:
    """Whether a write failed with no answer from NewStore after it may have been sent (a
    connection dropped, a timeout), so that it may have landed: the step's outcome is unknown,
    not failed. An error NewStore answered, or a request never sent, failed."""
    return (
        isinstance(exc, NewStoreError)
        and exc.status is None
        and not isinstance(exc, HostBlockedError | UnreachableError)
    )


def _rules(rules: Sequence[Rule]) -> str:
    return "; ".join(f"{rule}: {rule.consequence}" for rule in rules)


def _undo_words(setting: Setting, before: Value, undo: Compensation) -> str:
    """What a compensating write does, in words: "set external_atp back off"."""
    value = undo.value
    if undo.undo:
        if value is ABSENT:
            return f"deleted {setting.key} again"
        flags = [v for v in value.values() if isinstance(v, bool)]
        if len(value) == 1 and flags:
            return f"set {setting.key} back {'on' if flags[0] else 'off'}"
        return f"put {setting.key} back as it was"
    return f"{did(setting, before, value)} (the safe side)"


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
        self.guard = Guard(env, plan, client)
        self.finished: list[StepFinished] = []

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> list[StepFinished]:
        for number, step in enumerate(self.plan.steps, 1):
            try:
                self._check_stop(number, step)
                self._check_journal(number, step)
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

    def _check_journal(self, number: int, step: Step) -> None:
        """Stop before the next write once the journal could not record the last thing
        (a full disk): no write goes out without its intent on disk."""
        if self.journal.failure is not None:
            raise JournalError(
                f"[{self.env.name}] stopped before step {number}/{self.total} {step.setting}: "
                f"{self.journal.failure}; nothing more was written (the journal lacks what came "
                "after; the report below is complete)"
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
                problem = stock_confirmation_problem(self.env, today_utc(self.clock))
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

        outcome = run_gate(self.env, skip=self.skip_probe, transport=self.probe_transport)
        checked(outcome.result, outcome.detail)
        if outcome.result == "passed":
            # What NewStore must hold when the write the probe vouches for goes out.
            self.guard.probed = self.env.desired[WEBHOOK]
        if not outcome.passed:
            if refuses_write(step.setting):
                self._refused(number, step, outcome.detail)
            self._blocked(number, step, WEBHOOK_PROBE, outcome.detail)

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
        secret = self.env.secret_names(step.setting)
        request_id: str | None = None
        outcome, detail = Outcome.FAILED, ""
        try:
            planned = self.guard.fingerprint(step.setting, step.before)
            # An answer that contradicts the plan's read (a 404 where a document was) is read
            # again before it is believed: a transient one must not stop the run, nor pass for
            # the setting's real state.
            current, reads = self.guard.read_agreeing(
                step.setting,
                number,
                lambda value: (
                    self.guard.fingerprint(step.setting, value) == planned
                    or not differs(setting, value, step.after)
                ),
            )
            if not step.rewrite and not differs(setting, current, step.after):
                self._record("result", step, result=str(Outcome.SKIPPED), request_id=None)
                self._finish(number, step, Outcome.SKIPPED, None, "already done")
                return
            if self.guard.fingerprint(step.setting, current) != planned:
                raise self._changed_underneath(setting, step, current, reads)
            refused = self.guard.before_write(number, self.total, step)
            if refused is not None:
                self._record(
                    "result", step, result=str(Outcome.FAILED), request_id=None, error=str(refused)
                )
                raise refused
            self._check_stop(number, step)

            self._record(
                "intent",
                step,
                before=shown_value(setting, current, secret),
                after=shown_value(setting, step.after, secret),
            )
            try:
                request_id = self._send(setting, step.after, step, before=current)
            except NewStoreError as exc:
                if _answer_lost(exc):
                    outcome, detail = Outcome.UNKNOWN, ANSWER_LOST
                failed = self._judge_failed_write(number, step, exc)
                if failed is not None:
                    self._finish(number, step, outcome, exc.request_id, detail)
                    self._undo(number, step, exc.request_id, failed)
                raise
            # The rules this write relies on are judged first, so that a compensating write,
            # if one is needed, is the very next write after one round trip of re-reads.
            self.guard.wrote(step.setting, step.after)
            found = self.guard.after_write(number, step, lambda: self._probe_now(number, step))
            if not found.broken:
                settled = setting.read_managed(self.client, step.after)
                self.guard.wrote(step.setting, settled)
                if differs(setting, settled, step.after):
                    message = (
                        f"[{self.env.name}] {step.setting} did not settle: wrote "
                        f"{_show(setting, step.after, secret)}, read back "
                        f"{_show(setting, settled, secret)}"
                    )
                    self._record("verify", step, result=str(Outcome.FAILED), error=message)
                    raise ApplyError(message)
        except JournalError:
            raise  # its intent could not be recorded: the step was not attempted
        except ReconcilerError as exc:
            if isinstance(exc, NewStoreError) and exc.request_id:
                request_id = exc.request_id
            self._finish(number, step, outcome, request_id, detail)
            raise
        self._finish(number, step, Outcome.APPLIED, request_id)
        if found.broken:
            self._undo(number, step, request_id, found)

    def _judge_failed_write(self, number: int, step: Step, exc: NewStoreError) -> AfterWrite | None:
        """A write that failed may still have landed (an answer lost after NewStore committed
        it, a read-back inside the write that found someone else's change): if NewStore holds
        the written value, the rules it relies on are judged as after any write. Returns what
        was found when a rule is broken (None: nothing to undo, or it could not be told)."""
        setting = BY_KEY[step.setting]
        try:
            now = setting.read_managed(self.client, step.after)
            if differs(setting, now, step.after):
                return None
            self.guard.wrote(step.setting, now)
            found = self.guard.after_write(number, step, lambda: self._probe_now(number, step))
        except ReconcilerError:
            return None  # the stop report's fresh read says what the state is
        return found if found.broken else None

    def _send(
        self, setting: Setting, value: Value, step: Step, before: Value = ABSENT, **journal: Any
    ) -> str | None:
        """Write `value` (ABSENT: delete) where `before` was just read, and journal the result
        (unknown when the answer was lost); NewStore's request id."""
        try:
            if value is ABSENT:
                request_id = setting.delete(self.client)
            else:
                request_id = setting.write_over(self.client, value, before)
        except ReconcilerError as exc:
            self._record(
                "result",
                step,
                result=str(Outcome.UNKNOWN if _answer_lost(exc) else Outcome.FAILED),
                request_id=exc.request_id if isinstance(exc, NewStoreError) else None,
                error=str(exc),
                **journal,
            )
            raise
        self._record("result", step, result=str(Outcome.APPLIED), request_id=request_id, **journal)
        return request_id

    def _probe_now(self, number: int, step: Step) -> bool | None:
        """The webhook probe run after a webhook write made while external ATP was off, when
        the re-read finds it on (someone turned it on meanwhile); journaled like a gate."""
        outcome = run_gate(self.env, skip=self.skip_probe, transport=self.probe_transport)
        detail = f"after the write (external ATP went on meanwhile): {outcome.detail}"
        self._record("gate", step, gate=WEBHOOK_PROBE, result=outcome.result, detail=detail)
        self.on_event(
            GateChecked(
                self.env.name,
                number,
                self.total,
                step.setting,
                WEBHOOK_PROBE,
                outcome.result,
                detail,
            )
        )
        return None if outcome.result == "skipped" else outcome.passed

    def _undo(self, number: int, step: Step, request_id: str | None, found: AfterWrite) -> NoReturn:
        """The write is in and a rule it relies on is broken now: undo it at once and stop."""
        own = f"{did(BY_KEY[step.setting], step.before, step.after)} (request id {request_id})"
        changes = [c.what for c in found.changes] or ["changed the tenant"]
        rules = ", ".join(str(rule) for rule in found.broken)
        seen = (
            f"[{self.env.name}] step {number}/{self.total} {step.setting}: right after this "
            f"apply {own}, a re-read found that someone else {' and '.join(changes)}, which "
            f"broke {rules}"
        )
        if found.compensation is None:
            raise ApplyError(
                f"{seen}; no single write can undo that safely, so nothing more was written. "
                "Fix it now."
            )
        undone = self._compensate(number, step, found, found.compensation)
        raise ChangedUnderneath(
            f"{seen}: this apply {undone} at once. Nothing more was written; review a fresh "
            "plan once the other writer is done."
        )

    def _compensate(self, number: int, step: Step, found: AfterWrite, undo: Compensation) -> str:
        """Make the compensating write; returns what it did, in words."""
        setting = BY_KEY[undo.setting]
        secret = self.env.secret_names(undo.setting)
        before = self.guard.latest[undo.setting]
        action = Action.DELETE if undo.value is ABSENT else Action.UPDATE
        done = _undo_words(setting, before, undo)
        fix = Step(undo.setting, action, before, undo.value, (), f"undoes step {number}")
        self._record(
            "compensate",
            fix,
            before=shown_value(setting, before, secret),
            after=shown_value(setting, undo.value, secret),
            compensates_step=number,
            because=[str(rule) for rule in found.broken],
        )
        try:
            request_id = self._send(setting, undo.value, fix, compensating=True)
            self.guard.wrote(undo.setting, setting.read_managed(self.client, undo.value))
        except NewStoreError as exc:
            self._finish(number, fix, Outcome.FAILED, exc.request_id, f"could not {done}")
            raise ApplyError(
                f"[{self.env.name}] step {number}/{self.total} {step.setting}: a concurrent "
                f"change broke {', '.join(str(r) for r in found.broken)} right after this "
                f"apply's write, and the compensating write ({done}) failed: {exc}"
            ) from None
        self._finish(number, fix, Outcome.UNDONE, request_id, done)
        return f"{done} (request id {request_id})"

    def _changed_underneath(
        self, setting: Setting, step: Step, now: Value, reads: int = 1
    ) -> ChangedUnderneath:
        names = self.env.secret_names(step.setting)
        planned, current = _show(setting, step.before, names), _show(setting, now, names)
        if planned == current:
            secret = " and ".join(sorted(setting.secret_fields | names))
            current += f" (its {secret} changed)"
        message = (
            f"[{self.env.name}] {step.setting} changed underneath: planned from {planned}, now "
            f"{current} ({reads} read{'s' if reads != 1 else ''}). Another apply or a hand edit "
            "changed it since it was read; nothing more was written. Review a fresh plan."
        )
        self._record("result", step, result=str(Outcome.FAILED), request_id=None, error=message)
        return ChangedUnderneath(message)

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
            if number not in {event.number for event in self.finished}:
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
        return ApplyError(message, self.stop_report(number))

    def _stopped(self, exc: ReconcilerError, number: int | None) -> ApplyError | BlockedError:
        report = self.stop_report(number)
        message = exc.message if isinstance(exc, ReportedError) else str(exc)
        if isinstance(exc, BlockedError):
            return BlockedError(message, report)
        if isinstance(exc, ChangedUnderneath):
            return ChangedUnderneath(message, report)
        if isinstance(exc, JournalError):
            return JournalError(message, report)
        if isinstance(exc, Interrupted):
            return Interrupted(message, report, exc.signal_name)
        return ApplyError(message, report)

    def stop_report(self, failed_at: int | None) -> RunReport:
        not_attempted = tuple(
            NotAttempted(number, step.setting, step.action)
            for number, step in enumerate(self.plan.steps, 1)
            if number not in {event.number for event in self.finished}
        )
        stop = StopReport(
            environment=self.env.name,
            tenant=self.env.tenant,
            total=self.total,
            failed_at=failed_at,
            finished=tuple(self.finished),
            not_attempted=not_attempted,
            safety=check_safety(
                self.env,
                self.client,
                self.guard.latest,
                self.guard.broken_at_start,
                self.guard.seen,
                self.guard.written,
                self.guard.foreign,
            ),
            concurrent=tuple(self.guard.concurrent),
        )
        return RunReport((stop,))


def apply_environment(
    env: Environment,
    plan: EnvPlan,
    client: NewStoreClient,
    journal: Journal,
    *,
    skip_probe: bool = False,
    on_event: OnEvent = ignore,
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
