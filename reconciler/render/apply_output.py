"""What `reconciler apply` prints as it runs: text for people, or JSON lines for a CI system
(`--format json`: the records on stdout, nothing else there; the text for people on stderr).

    output = apply_output("json", color=False, provenance=...)
    api.apply(..., on_event=output.event, on_plan=output.plan, on_locks=output.locks,
              on_lock_wait=output.waiting, on_start=output.started)
    output.done(result.results, result.journal)
    (or, when it raised: output.failed(error) / output.interrupted("SIGINT"))

Both outputs hear the same calls with the same values; the text one words them, the JSON one
serializes them (`apply_events`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from reconciler.core.apply import (
    EnvironmentConverged,
    EnvResult,
    Event,
    GateChecked,
    PlanAccepted,
    StepFinished,
    StepStarted,
)
from reconciler.core.lock import (
    SKIPPED_UNSUPPORTED,
    CommitRecorded,
    Holder,
    LockBroken,
    LockEvent,
    LockReleased,
    TenantLock,
)
from reconciler.core.plan import RunPlan, Status
from reconciler.errors import ExitCode, Interrupted, ReconcilerError, ReportedError
from reconciler.provenance import Provenance
from reconciler.render.apply_events import ApplyEventLog, line
from reconciler.render.steps import render_event
from reconciler.render.text import render_text


class TextOutput:
    """apply's text: the plan, each step as it goes, the end; notes and warnings on stderr.
    `err=True` sends what would go to stdout to stderr too (under `--format json`)."""

    def __init__(self, *, color: bool, break_glass: str | None, err: bool = False) -> None:
        self.color, self.break_glass, self.err = color, break_glass, err

    def _out(self, text: str, nl: bool = True) -> None:
        click.echo(text, nl=nl, err=self.err)

    def plan(self, run: RunPlan) -> None:
        self._out(render_text(run, color=self.color), nl=False)
        for env in run.environments:
            if env.status is Status.ERROR:
                click.echo(f"Error: {env.error}", err=True)

    def started(self, journal: Path) -> None:
        self._out(f"Journal: {journal}")
        if self.break_glass is not None:
            self._out(
                f"Break glass: {' '.join(self.break_glass.split())} (apply windows and freezes "
                "are overridden for this run; gates and safety rules still hold)"
            )

    def waiting(self, tenant: str, holder: Holder, timeout: float) -> None:
        click.echo(
            f"Waiting up to {timeout:g} s for another `reconciler apply` ({holder.describe()}) "
            f"to finish applying tenant {tenant}…",
            err=True,
        )

    def locks(self, locks: Sequence[TenantLock]) -> None:
        if any(lock.skipped_because == SKIPPED_UNSUPPORTED for lock in locks):
            click.echo(
                f"Warning: {SKIPPED_UNSUPPORTED}: applying without the per-tenant lock.", err=True
            )

    def event(self, event: Event | PlanAccepted | LockEvent) -> None:
        if isinstance(event, LockBroken):
            click.echo(
                f"Broke the expired git lock of tenant {event.tenant} ({event.holder.describe()}).",
                err=True,
            )
        elif isinstance(event, LockReleased):
            if event.problem:
                click.echo(f"Warning: {event.problem}.", err=True)
        elif isinstance(event, CommitRecorded):
            self._out(
                f"Recorded {event.commit[:12]} as the configuration applied to tenant "
                f"{event.tenant} ({event.ref})."
            )
        elif isinstance(event, StepStarted | GateChecked | StepFinished | EnvironmentConverged):
            shown = render_event(event)
            if shown:
                self._out(shown, nl=False)

    def done(self, results: Sequence[EnvResult], journal: Path | None) -> None:
        """The run returned: `results` per environment, `journal` None when nothing was to
        be written."""
        if journal is None:
            self._out("Nothing to do: the live state already matches.")
            return
        done = [r for r in results if r.status == "applied"]
        total, applied = sum(r.steps for r in done), len(done)
        self._out(
            f"Apply complete: {total} step{'s' if total != 1 else ''} in "
            f"{applied} environment{'s' if applied != 1 else ''}, all converged."
        )

    def failed(self, error: ReconcilerError) -> None:
        pass  # the CLI's error boundary prints it

    def interrupted(self, signal: str) -> None:
        pass


class JsonOutput:
    """apply's JSON lines on stdout (`apply_events`), the text for people on stderr."""

    def __init__(self, text: TextOutput, provenance: Provenance | None) -> None:
        self.text = text
        self.log = ApplyEventLog(provenance, started=time.monotonic())
        self.journal: str | None = None
        self._emit(self.log.version())

    def _emit(self, record: dict[str, Any] | None) -> None:
        if record is not None:
            click.echo(line(record), nl=False)

    def plan(self, run: RunPlan) -> None:
        self.log.planned(run)
        self.text.plan(run)

    def started(self, journal: Path) -> None:
        self.journal = str(journal)
        self.text.started(journal)

    def waiting(self, tenant: str, holder: Holder, timeout: float) -> None:
        self.text.waiting(tenant, holder, timeout)

    def locks(self, locks: Sequence[TenantLock]) -> None:
        self.text.locks(locks)
        for record in self.log.locks(locks):
            self._emit(record)

    def event(self, event: Event | PlanAccepted | LockEvent) -> None:
        self.text.event(event)
        self._emit(self.log.event(event))

    def done(self, results: Sequence[EnvResult], journal: Path | None) -> None:
        self.text.done(results, journal)
        fates = {r.name: r.status for r in results}
        path = str(journal) if journal is not None else None
        for record in self.log.finish(exit_code=ExitCode.OK, journal=path, fates=fates):
            self._emit(record)

    def failed(self, error: ReconcilerError) -> None:
        signal = error.signal_name if isinstance(error, Interrupted) else None
        journal = self.journal if isinstance(error, ReportedError) else None
        for record in self.log.finish(
            exit_code=error.exit_code, error=error, signal=signal, journal=journal
        ):
            self._emit(record)

    def interrupted(self, signal: str) -> None:
        """A signal outside the writes (while loading, locking or planning)."""
        self.failed(Interrupted(f"{signal} received before any write", signal_name=signal))


def apply_output(
    fmt: str, *, color: bool, break_glass: str | None, provenance: Provenance | None
) -> TextOutput | JsonOutput:
    """The output `apply --format FMT` writes."""
    if fmt == "json":
        return JsonOutput(TextOutput(color=False, break_glass=break_glass, err=True), provenance)
    return TextOutput(color=color, break_glass=break_glass)
