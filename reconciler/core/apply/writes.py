"""One step's write and what follows it, for `environment._EnvironmentApply`: the write (a
write a rule relies on goes out once per attempt and is read back, not resent blindly, after a
lost answer), the judging of the rules it relies on, the read-back, and the compensating write
that undoes a write a concurrent change (or an unreadable state) left unsafe.

Every outcome is reported as it was: a write that landed is applied under its own request id
whatever failed after it; a value read back that someone else wrote is their change, not this
apply's; a compensating write that landed but could not be read back is "landed, not
confirmed", not failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from typing import TYPE_CHECKING, Any, NoReturn

from reconciler.core.apply.events import GateChecked, OnEvent, Outcome, StepFinished
from reconciler.core.apply.guard import AfterWrite, Guard
from reconciler.core.apply.recheck import Compensation, did, relied_on
from reconciler.core.plan import (
    WEBHOOK_PROBE,
    Action,
    Step,
    differs,
    run_gate,
    shown_value,
)
from reconciler.errors import (
    ApplyError,
    ChangedUnderneath,
    HostBlockedError,
    NewStoreError,
    ReconcilerError,
    RetryBudgetExhausted,
    UnreachableError,
)
from reconciler.model import ABSENT, Environment, Value, show_value
from reconciler.newstore.settings import BY_KEY, Setting

if TYPE_CHECKING:
    import httpx

    from reconciler.core.journal import Journal
    from reconciler.newstore.client import NewStoreClient


ANSWER_LOST = "the answer was lost: the write may have landed"


def answer_lost(exc: ReconcilerError) -> bool:
    """Whether a write failed with no answer from NewStore after it may have been sent (a
    connection dropped, a timeout), so that it may have landed: the step's outcome is unknown,
    not failed. An error NewStore answered, or a request never sent, failed."""
    return (
        isinstance(exc, NewStoreError)
        and exc.status is None
        and not isinstance(exc, HostBlockedError | UnreachableError)
    )


def failure(exc: NewStoreError) -> str:
    """A failed request in a few words, with NewStore's request id: "reading external_atp:
    NewStore rejected the call (request id …)"."""
    rid = f", request id {exc.request_id}" if exc.request_id else ""
    return f"{exc.method} {exc.setting}: {exc.message}{rid}"


def _may_resend(exc: NewStoreError) -> bool:
    """A failure of a one-attempt write that the client would have retried (429, 502-504, a
    dropped connection): worth a read-back, then a resend of what did not land."""
    return isinstance(exc, RetryBudgetExhausted)


def _gave_up(exc: NewStoreError, attempts: int, spent: float) -> NewStoreError:
    """The last one-attempt failure, worded for all the attempts made (each read back first)."""
    if attempts == 1:
        return exc
    message = re.sub(
        r"^gave up after 1 attempt in [0-9.]+ s",
        f"gave up after {attempts} attempts in {spent:.1f} s (each read back before the next: "
        "it had not landed)",
        exc.message,
    )
    return dataclasses.replace(exc, message=message)


def show(setting: Setting, value: Value, secret: frozenset[str] = frozenset()) -> str:
    return show_value(shown_value(setting, value, secret), sort_keys=True)


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


class StepWrites:
    """The writing half of one environment's apply (mixed into `_EnvironmentApply`)."""

    env: Environment
    client: NewStoreClient
    journal: Journal
    guard: Guard
    total: int
    skip_probe: bool
    on_event: OnEvent
    probe_transport: httpx.BaseTransport | None
    finished: list[StepFinished]

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

    # -- the write -------------------------------------------------------------------------

    def _write(self, number: int, step: Step, current: Value) -> tuple[str | None, AfterWrite]:
        """Write the step and judge the rules it relies on; its request id and what the
        re-read found. A write a rule relies on is one attempt: after a transient failure it
        is read back at once (the next request after it, so that a write that landed is
        judged, and undone if need be, one round trip later), and resent only if it did not
        land, after the rules are checked again."""
        setting = BY_KEY[step.setting]
        if not relied_on(step.setting, {**self.guard.latest, step.setting: step.after}):
            request_id = self._send(setting, step.after, step, before=current)
            self.guard.wrote(step.setting, step.after)
            return request_id, self._judge(number, step)
        attempts = max(1, self.env.connection.retry_attempts)
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                with self.client.writes_once():
                    request_id = self._send(setting, step.after, step, before=current)
            except NewStoreError as exc:
                spent = time.monotonic() - started
                if not _may_resend(exc):
                    raise
                if attempt == attempts or spent > self.env.connection.retry_max_seconds:
                    raise _gave_up(exc, attempt, spent) from None
                now = setting.read_managed(self.client, step.after)
                if not differs(setting, now, step.after):
                    # It landed; only its answer was lost. Judged like any write.
                    self._record("verify", step, result="landed", request_id=exc.request_id)
                    self.guard.wrote(step.setting, now)
                    return exc.request_id, self._judge(number, step)
                time.sleep(min(self.client.backoff * 2 ** (attempt - 1), 30.0))
                refused = self.guard.before_write(number, self.total, step)
                if refused is not None:
                    raise refused from None
                current = self.guard.latest[step.setting]
                self._record("intent", step, resend=attempt + 1)
                continue
            self.guard.wrote(step.setting, step.after)
            return request_id, self._judge(number, step)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _judge(self, number: int, step: Step) -> AfterWrite:
        """The rules the write relies on, re-read and judged; a re-read that fails leaves them
        unknown, which is judged unsafe (`Guard.unknown_after_write`)."""
        try:
            return self.guard.after_write(number, step, lambda: self._probe_now(number, step))
        except NewStoreError as exc:
            found = self.guard.unknown_after_write(step, failure(exc))
            if found is None:
                raise
            return found

    def _read_back(self, number: int, step: Step) -> None:
        """The step's setting read back: it must hold what was written (ApplyError)."""
        setting = BY_KEY[step.setting]
        secret = self.env.secret_names(step.setting)
        settled = self.guard.read_back(step.setting, number, step.after)
        if differs(setting, settled, step.after):
            message = (
                f"[{self.env.name}] {step.setting} did not settle: wrote "
                f"{show(setting, step.after, secret)}, read back "
                f"{show(setting, settled, secret)}"
            )
            self._record("verify", step, result=str(Outcome.FAILED), error=message)
            raise ApplyError(message)

    def _judge_failed_write(self, number: int, step: Step, exc: NewStoreError) -> AfterWrite | None:
        """A write that failed may still have landed (an answer lost after NewStore committed
        it, a read-back inside the write that found someone else's change): if NewStore holds
        the written value, the rules it relies on are judged as after any write; if it cannot
        be read and the answer was lost, the state is unknown and judged unsafe. Returns what
        was found when a rule is broken or unknown (None: nothing to undo)."""
        setting = BY_KEY[step.setting]
        try:
            now = setting.read_managed(self.client, step.after)
        except NewStoreError as unread:
            if not answer_lost(exc):
                return None
            self.guard.wrote(step.setting, step.after)  # it may have landed: assume it did
            return self.guard.unknown_after_write(step, failure(unread))
        if differs(setting, now, step.after):
            return None
        self.guard.wrote(step.setting, now)
        try:
            found = self._judge(number, step)
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
                result=str(Outcome.UNKNOWN if answer_lost(exc) else Outcome.FAILED),
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

    # -- the compensation --------------------------------------------------------------------

    def _undo(self, number: int, step: Step, request_id: str | None, found: AfterWrite) -> NoReturn:
        """The write is in and a rule it relies on is broken now (or unknown: the re-read
        failed): undo it at once and stop."""
        own = f"{did(BY_KEY[step.setting], step.before, step.after)} (request id {request_id})"
        rules = ", ".join(str(rule) for rule in found.broken)
        if found.unreadable:
            seen = (
                f"[{self.env.name}] step {number}/{self.total} {step.setting}: right after this "
                f"apply {own}, the re-read for {' and '.join(str(r) for r in found.broken)} "
                f"failed ({found.unreadable}): whether they hold is unknown, so they are taken "
                "as broken"
            )
        else:
            changes = [c.what for c in found.changes] or ["changed the tenant"]
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
        """Make the compensating write and read it back; returns what it did, in words."""
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
        broke = ", ".join(str(r) for r in found.broken)
        try:
            request_id = self._send(setting, undo.value, fix, compensating=True)
        except NewStoreError as exc:
            self._finish(number, fix, Outcome.FAILED, exc.request_id, f"could not {done}")
            raise ApplyError(
                f"[{self.env.name}] step {number}/{self.total} {step.setting}: {broke} "
                f"{'may be' if found.unreadable else 'was'} broken right after this apply's "
                f"write, and the compensating write ({done}) failed: {exc}"
            ) from None
        # What was sent is this apply's last write of the setting, whatever is read next.
        self.guard.wrote(undo.setting, undo.value)
        try:
            settled = self.guard.read_back(undo.setting, number, undo.value)
        except NewStoreError as exc:
            note = f"{done}; landed, not confirmed: the read after it failed"
            self._finish(number, fix, Outcome.UNDONE, request_id, note)
            return (
                f"{done} (request id {request_id}: it landed; the read after it failed, so it "
                f"is not confirmed: {failure(exc)})"
            )
        if differs(setting, settled, undo.value):
            again = did(setting, undo.value, settled)
            self._finish(
                number, fix, Outcome.UNDONE, request_id, f"{done}; then someone else {again}"
            )
            raise ApplyError(
                f"[{self.env.name}] step {number}/{self.total} {step.setting}: a change by "
                f"someone else broke {broke} right after this apply's write; this apply {done} "
                f"at once (request id {request_id}), and right after that someone else {again}. "
                "Nothing more was written. Someone else is changing the tenant: fix it now."
            )
        self._finish(number, fix, Outcome.UNDONE, request_id, done)
        return f"{done} (request id {request_id})"
