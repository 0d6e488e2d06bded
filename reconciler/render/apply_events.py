"""`apply --format json`: what apply does, as JSON lines (schemas/apply-events.schema.json).

    log = ApplyEventLog(provenance, started=time.monotonic())
    log.version()                     the first record
    log.event(event)                  one record per lock, plan, gate, step, convergence event
    log.locks(locks)                  a record per tenant the run took no lock for
    log.finished(result, error, code) the stop reports, an interrupted record, the summary

Every record is a JSON object with a `type`; every record but `version` has a `time` (UTC).
The summary is the fold of the same events and values the text output shows (the plan, each
step's outcome, the error's stop report): nothing is read again. No record holds a secret:
values come from the events and errors, which are masked and scrubbed where they are made.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from reconciler._version import __version__
from reconciler.clock import now_iso
from reconciler.core.apply import (
    EnvironmentConverged,
    GateChecked,
    NothingWritten,
    Outcome,
    PlanAccepted,
    RunReport,
    StepFinished,
    StepStarted,
    StopReport,
)
from reconciler.core.apply.events import Event
from reconciler.core.lock import (
    CommitRecorded,
    Holder,
    LockAcquired,
    LockBroken,
    LockEvent,
    LockReleased,
    LockWaiting,
    TenantLock,
)
from reconciler.core.plan import RunPlan, Status
from reconciler.errors import (
    BlockedError,
    ChangedUnderneath,
    ConfigError,
    Interrupted,
    JournalError,
    LockError,
    LockHeldError,
    NewStoreError,
    OlderCommitError,
    PlanFileError,
    ReconcilerError,
    ReportedError,
)
from reconciler.provenance import Provenance

FORMAT_VERSION: Final = 1
ACTIONS: Final = ("create", "update", "delete")
STEP_OUTCOMES: Final = ("applied", "skipped", "failed", "blocked", "undone", "not_attempted")

# What kind of error ended the run, for a machine: the most specific class first.
_ERROR_KINDS: Final[tuple[tuple[type[ReconcilerError], str], ...]] = (
    (OlderCommitError, "older_commit"),
    (LockHeldError, "lock_held"),
    (LockError, "lock"),
    (Interrupted, "interrupted"),
    (ChangedUnderneath, "changed_underneath"),
    (JournalError, "journal"),
    (BlockedError, "blocked"),
    (PlanFileError, "plan_file"),
    (ConfigError, "config"),
    (NewStoreError, "newstore"),
    (ReportedError, "apply"),
    (ReconcilerError, "error"),
)


def error_kind(error: ReconcilerError) -> str:
    return next(kind for cls, kind in _ERROR_KINDS if isinstance(error, cls))


def line(record: dict[str, Any]) -> str:
    """One JSON line (newline included)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _holder(holder: Holder) -> dict[str, Any]:
    return {
        "lock_id": holder.lock_id or None,
        "who": holder.who or None,
        "run_url": holder.run_url or None,
        "host": holder.hostname or None,
        "pid": holder.pid,
        "environments": holder.environments or None,
        "started": holder.started or None,
        "config_commit": holder.config_commit or None,
        "plan_checksum": holder.plan_checksum or None,
        "expires": holder.expires or None,
    }


def _lock(lock: TenantLock) -> dict[str, Any]:
    return {
        "tenant": lock.tenant,
        "environments": list(lock.environments),
        "backend": lock.backend,
        "lock_id": lock.lock_id or None,
        "ref": lock.ref or None,
        "remote": lock.remote or None,
        "waited_seconds": round(lock.waited_seconds, 3),
        "broke_expired": list(lock.broke),
        "last_applied": lock.last_applied,
    }


def _where(event: StepStarted | GateChecked | StepFinished) -> dict[str, Any]:
    return {
        "environment": event.environment,
        "step": event.number,
        "total": event.total,
        "setting": event.setting,
    }


def _actions(steps: Sequence[Any]) -> dict[str, int]:
    counted = Counter(str(step.action) for step in steps)
    return {action: counted[action] for action in ACTIONS}


class ApplyEventLog:
    """The records of one `apply --format json`, and what the summary needs of them."""

    def __init__(self, provenance: Provenance | None, *, started: float) -> None:
        self.provenance, self.started = provenance, started
        self.plan: RunPlan | None = None
        self.checksum: str | None = None
        self.finished: dict[str, list[StepFinished]] = {}
        self.converged: set[str] = set()

    def planned(self, run: RunPlan) -> None:
        """The run's plan, before any check could refuse it (the summary lists its
        environments whatever then happens)."""
        self.plan = run

    def version(self) -> dict[str, Any]:
        return {
            "type": "version",
            "format_version": FORMAT_VERSION,
            "tool_version": __version__,
            "command": "apply",
        }

    def _record(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "time": now_iso(), **fields}

    def locks(self, locks: Sequence[TenantLock]) -> list[dict[str, Any]]:
        """A `lock_skipped` record per tenant the run took no lock for (taken locks have
        their `lock_acquired` event)."""
        return [
            self._record(
                "lock_skipped",
                tenant=lock.tenant,
                environments=list(lock.environments),
                reason=lock.skipped_because,
            )
            for lock in locks
            if not lock.acquired
        ]

    def event(self, event: Event | PlanAccepted | LockEvent) -> dict[str, Any] | None:
        """The record of one event (None for none)."""
        if isinstance(event, PlanAccepted):
            self.plan, self.checksum = event.plan, event.checksum
            return self._record(
                "plan_accepted",
                plan_checksum=event.checksum,
                environments=[
                    {
                        "name": env.name,
                        "tenant": env.tenant,
                        "status": str(env.status),
                        "steps": len(env.steps),
                        "actions": _actions(env.steps),
                    }
                    for env in event.plan.environments
                ],
            )
        if isinstance(event, LockWaiting):
            return self._record(
                "lock_waiting",
                tenant=event.tenant,
                backend=event.backend,
                timeout_seconds=event.timeout,
                holder=_holder(event.holder),
            )
        if isinstance(event, LockAcquired):
            return self._record("lock_acquired", **_lock(event.lock))
        if isinstance(event, LockBroken):
            return self._record("lock_broken", tenant=event.tenant, holder=_holder(event.holder))
        if isinstance(event, CommitRecorded):
            return self._record(
                "commit_recorded", tenant=event.tenant, commit=event.commit, ref=event.ref
            )
        if isinstance(event, LockReleased):
            return self._record(
                "lock_released",
                tenant=event.tenant,
                backend=event.backend,
                lock_id=event.lock_id or None,
                problem=event.problem or None,
            )
        if isinstance(event, StepStarted):
            return self._record("step_started", **_where(event), action=str(event.action))
        if isinstance(event, GateChecked):
            return self._record(
                "gate_checked",
                **_where(event),
                gate=event.gate,
                result=event.result,
                detail=event.detail,
            )
        if isinstance(event, StepFinished):
            self.finished.setdefault(event.environment, []).append(event)
            undone = event.outcome is Outcome.UNDONE
            return self._record(
                "write_undone" if undone else "step_finished",
                **_where(event),
                action=str(event.action),
                **({} if undone else {"outcome": str(event.outcome)}),
                request_id=event.request_id,
                detail=event.detail,
            )
        if isinstance(event, EnvironmentConverged):
            self.converged.add(event.environment)
            return self._record(
                "environment_converged", environment=event.environment, steps=event.steps
            )
        return None

    # -- the end -----------------------------------------------------------------------------

    def _stopped(self, stop: StopReport | NothingWritten) -> dict[str, Any]:
        if isinstance(stop, NothingWritten):
            return self._record(
                "environment_stopped", environment=stop.environment, nothing_written=True
            )
        safety = stop.safety
        readable = not safety.unreadable
        return self._record(
            "environment_stopped",
            environment=stop.environment,
            tenant=stop.tenant,
            failed_at=stop.failed_at,
            total=stop.total,
            nothing_written=False,
            not_attempted=[
                {"step": s.number, "setting": s.setting, "action": str(s.action)}
                for s in stop.not_attempted
            ],
            safety={
                "satisfied": (not safety.broken) if readable else None,
                "broken": [str(rule) for rule in safety.broken],
                "broken_before": [str(rule) for rule in safety.broken_before],
                "broken_by_others": [str(rule) for rule in safety.broken_by_others],
                "unreadable": safety.unreadable or None,
            },
        )

    def finish(
        self,
        *,
        exit_code: int,
        error: ReconcilerError | None = None,
        signal: str | None = None,
        journal: str | None = None,
        fates: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """The closing records: each stopped environment's report, `interrupted` when a
        signal ended the run, and the summary. `fates` (name -> EnvResult status) are the
        environments' outcomes of a run that returned."""
        records = []
        report = error.stop if isinstance(error, ReportedError) else None
        stops = report.stops if isinstance(report, RunReport) else ()
        others = report.others if isinstance(report, RunReport) else ()
        records += [self._stopped(stop) for stop in stops]
        if signal is not None:
            records.append(self._record("interrupted", signal=signal))
        outcome: dict[str, str] = dict(fates or {})
        outcome |= {fate.name: fate.status for fate in others}
        for stop in stops:
            blocked = isinstance(stop, StopReport) and any(
                f.outcome is Outcome.BLOCKED for f in stop.finished
            )
            interrupted = isinstance(stop, StopReport) and stop.interrupted is not None
            outcome[stop.environment] = (
                "blocked" if blocked else "interrupted" if interrupted else "failed"
            )
        not_attempted = {
            stop.environment: len(stop.not_attempted)
            for stop in stops
            if isinstance(stop, StopReport)
        }
        environments = []
        totals: Counter[str] = Counter()
        for env in self.plan.environments if self.plan is not None else ():
            status = outcome.get(env.name) or _unreached(env.status, error)
            counted = Counter(str(f.outcome) for f in self.finished.get(env.name, ()))
            steps = {name: counted[name] for name in STEP_OUTCOMES if name != "not_attempted"}
            if env.name in not_attempted:
                steps["not_attempted"] = not_attempted[env.name]
            elif status == "not attempted":
                steps["not_attempted"] = len(env.steps)
            else:
                steps["not_attempted"] = 0
            totals.update(steps)
            environments.append(
                {"name": env.name, "tenant": env.tenant, "outcome": status, "steps": steps}
            )
        applied = [f for fs in self.finished.values() for f in fs if f.outcome is Outcome.APPLIED]
        records.append(
            self._record(
                "summary",
                exit_code=exit_code,
                outcome=_outcome(exit_code, error, self.plan),
                error=(
                    None if error is None else {"kind": error_kind(error), "message": _words(error)}
                ),
                duration_seconds=round(time.monotonic() - self.started, 3),
                environments=environments,
                steps={name: totals[name] for name in STEP_OUTCOMES},
                actions=_actions(applied),
                plan_checksum=self.checksum,
                journal=journal,
                provenance=self.provenance.to_json() if self.provenance is not None else None,
            )
        )
        return records


def _words(error: ReconcilerError) -> str:
    return error.message if isinstance(error, ReportedError) else str(error)


def _unreached(status: Status, error: ReconcilerError | None) -> str:
    """The outcome of an environment the run never came to (refused before any write)."""
    if status is Status.CONVERGED:
        return "converged"
    if status is Status.BLOCKED:
        return "blocked"
    if status is Status.ERROR:
        return "error"
    return "not attempted" if error is not None else "applied"


def _outcome(exit_code: int, error: ReconcilerError | None, plan: RunPlan | None) -> str:
    if error is None:
        changes = plan is not None and any(e.status is Status.CHANGES for e in plan.environments)
        return "applied" if changes else "nothing_to_do"
    if isinstance(error, Interrupted) or exit_code in (130, 143):
        return "interrupted"
    if exit_code == 3:
        return "blocked"
    return "failed"
