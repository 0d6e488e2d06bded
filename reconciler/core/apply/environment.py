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

from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from reconciler.clock import today_utc
from reconciler.core.apply.events import (
    EnvironmentConverged,
    GateChecked,
    Outcome,
    StepFinished,
    StepStarted,
)
from reconciler.core.apply.guard import Guard
from reconciler.core.apply.options import DEFAULT_OPTIONS, ApplyOptions
from reconciler.core.apply.recheck import moved_fields
from reconciler.core.apply.report import NotAttempted, RunReport, StopReport, check_safety
from reconciler.core.apply.writes import ANSWER_LOST, StepWrites, answer_lost, failure, show
from reconciler.core.plan import (
    STOCK_CONFIRMED,
    WEBHOOK,
    WEBHOOK_PROBE,
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
    Interrupted,
    JournalError,
    NewStoreError,
    ReconcilerError,
    ReportedError,
)
from reconciler.model import ABSENT, Environment, Value
from reconciler.newstore.settings import BY_KEY, Setting
from reconciler.policy import Decision, decide, decision_dict, explain
from reconciler.rules import Rule

if TYPE_CHECKING:
    from reconciler.core.journal import Journal
    from reconciler.newstore.client import NewStoreClient


def _policy_words(decision: Decision) -> str:
    return (
        f'{explain(decision)}. In an emergency, apply again with --break-glass "REASON" '
        "(it overrides windows and freezes only, and is recorded)"
    )


def _rules(rules: Sequence[Rule]) -> str:
    return "; ".join(f"{rule}: {rule.consequence}" for rule in rules)


# --- one environment ----------------------------------------------------------------------------


class _EnvironmentApply(StepWrites):
    """The state of applying one environment: the latest value read of every managed setting
    and what each step came to, for the safety checks and the report."""

    def __init__(
        self,
        env: Environment,
        plan: EnvPlan,
        client: NewStoreClient,
        journal: Journal,
        options: ApplyOptions = DEFAULT_OPTIONS,
    ) -> None:
        self.env, self.plan, self.client, self.journal = env, plan, client, journal
        self.clock, self.break_glass = options.clock, options.break_glass
        self.stop = options.stop
        self.skip_probe = options.skip_probe
        self.on_event = options.on_event
        self.probe_transport = options.probe_transport
        self.total = len(plan.steps)
        self.guard = Guard(env, plan, client)
        self.finished: list[StepFinished] = []

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> list[StepFinished]:
        for number, step in enumerate(self.plan.steps, 1):
            try:
                self._check_stop(number, step)
                self._check_journal(number, step)
                self.on_event(
                    StepStarted(self.env.name, number, self.total, step.setting, step.action)
                )
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
        landed = False
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
                # The rules this write relies on are judged first, so that a compensating
                # write, if one is needed, is the very next write after one round trip of
                # re-reads.
                request_id, found = self._write(number, step, current)
            except NewStoreError as exc:
                if answer_lost(exc):
                    outcome, detail = Outcome.UNKNOWN, ANSWER_LOST
                failed = self._judge_failed_write(number, step, exc)
                if failed is not None:
                    self._finish(number, step, outcome, exc.request_id, detail)
                    self._undo(number, step, exc.request_id, failed)
                raise
            landed = True
            if not found.broken:
                self._read_back(number, step)
        except Interrupted:
            raise  # before the write: the step was not started, so it did not fail either
        except JournalError:
            raise  # its intent could not be recorded: the step was not attempted
        except ReconcilerError as exc:
            if landed and isinstance(exc, NewStoreError):
                # The write landed under its own request id; a read after it failed.
                outcome, detail = Outcome.UNKNOWN, f"landed, not confirmed: {failure(exc)}"
            elif not landed and isinstance(exc, NewStoreError) and exc.request_id:
                request_id = exc.request_id
            self._finish(number, step, outcome, request_id, detail)
            raise
        self._finish(number, step, Outcome.APPLIED, request_id)
        if found.broken:
            self._undo(number, step, request_id, found)

    def _changed_underneath(
        self, setting: Setting, step: Step, now: Value, reads: int = 1
    ) -> ChangedUnderneath:
        names = self.env.secret_names(step.setting)
        planned, current = show(setting, step.before, names), show(setting, now, names)
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
        signal = exc.signal_name if isinstance(exc, Interrupted) else None
        report = self.stop_report(number, interrupted=signal)
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

    def _vouch(self, held: Value) -> str | None:
        """Why the webhook config NewStore holds is not vouched for by a probe (None: it is):
        the config this apply's probe passed for, or the file's config, probed now."""
        webhook = BY_KEY[WEBHOOK]
        if self.guard.probed is not None and not moved_fields(webhook, held, self.guard.probed):
            return None
        desired = self.env.desired.get(WEBHOOK, ABSENT)
        if desired is ABSENT or moved_fields(webhook, held, desired):
            return "the config NewStore holds is not one this apply's probe passed for"
        outcome = run_gate(self.env, skip=self.skip_probe, transport=self.probe_transport)
        if outcome.passed:
            return None
        return f"the probe of the config NewStore holds, run for this report, {outcome.result}"

    def stop_report(self, failed_at: int | None, *, interrupted: str | None = None) -> RunReport:
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
            interrupted=interrupted,
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
                self._vouch,
            ),
            concurrent=tuple(self.guard.concurrent),
        )
        return RunReport((stop,))


def apply_environment(
    env: Environment,
    plan: EnvPlan,
    client: NewStoreClient,
    journal: Journal,
    options: ApplyOptions = DEFAULT_OPTIONS,
) -> list[StepFinished]:
    """Apply one environment's planned steps, then check it converged; returns what each step
    came to. Raises ApplyError / ChangedUnderneath / BlockedError / Interrupted (with the
    safe-state report); `options.stop` is checked before every write.
    Before each step the environment's policy is asked at `options.clock()`;
    `options.break_glass` (a reason) overrides it."""
    return _EnvironmentApply(env, plan, client, journal, options).run()
