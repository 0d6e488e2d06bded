"""The stop report in words: what `reconciler apply` prints when it stops part-way.

render_error(error)          an error's message, then its stop report (what the CLI prints)
render_report(error)         an error's stop report alone ("" without one)
render_run_report(report)    every failed environment's report, then the others' fates
render_stop_report(stop)     one environment's: steps applied / failed / not attempted,
                             then what a fresh read says about the safety rules
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from reconciler.core.apply.events import Outcome
from reconciler.core.apply.report import (
    ConcurrentChange,
    EnvFate,
    EnvStop,
    NothingWritten,
    RuleBreak,
    RunReport,
    SafetyCheck,
    StopReport,
)
from reconciler.errors import ReconcilerError, ReportedError
from reconciler.rules import Rule

_LABEL: Final = {
    Outcome.APPLIED: "applied",
    Outcome.SKIPPED: "skipped",
    Outcome.FAILED: "FAILED",
    Outcome.UNKNOWN: "UNKNOWN",
    Outcome.BLOCKED: "BLOCKED",
    Outcome.UNDONE: "undone",
}


def _rules(rules: Sequence[Rule]) -> str:
    return "; ".join(f"{rule}: {rule.consequence}" for rule in rules)


def render_safety(check: SafetyCheck) -> str:
    """One paragraph: whether the state after the stop satisfies every safety rule."""
    if check.blocked_at is not None:
        why = (
            f"NewStore blocked this IP at {check.blocked_at:%H:%M:%S} UTC, so the live state was "
            "not re-read (every request would extend the block); judged on the last state this "
            "run read or wrote instead:"
        )
        if not check.broken:
            return (
                f"{why} it satisfies every safety rule. Check it with `reconciler plan` once "
                "the block ends."
            )
        return (
            f"WARNING: {why} IT BREAKS {_rules(check.broken)}. Once the block ends, run apply "
            "again (or check with `reconciler plan`) before anything else."
        )
    if check.unreadable:
        return (
            "WARNING: could not re-read the live state to check the safety rules "
            f"({check.unreadable}). Check it with `reconciler plan` before anything else."
        )
    if not check.broken and not check.unproven:
        return "The live state, re-read just now, satisfies every safety rule."
    if not check.broken:
        return _unproven(check)
    parts = [f"WARNING: THE LIVE STATE, RE-READ JUST NOW, BREAKS {_rules(check.broken)}."]
    if check.broken_before:
        parts.append(
            "It already broke "
            + ", ".join(str(r) for r in check.broken_before)
            + " before this apply; the repair did not finish: run apply again."
        )
    parts += [_whose(b) for b in check.breaks if not (b.before and not b.others)]
    if check.broken_by_others:
        parts.append("Someone else is changing the tenant. Fix it now.")
    if check.unproven:
        parts.append(_unproven(check))
    return " ".join(parts)


def _unproven(check: SafetyCheck) -> str:
    """A rule with a probe whose condition holds and whose config exists, but that no probe
    vouches for: a read cannot tell whether NewStore can use that config."""
    rules = ", ".join(str(r) for r in check.unproven)
    return (
        "WARNING: THE LIVE STATE, RE-READ JUST NOW, CANNOT BE CONFIRMED SAFE: external ATP is on "
        f"and the webhook config exists, but {check.unproven_why}, so {rules} is unconfirmed: "
        f"if that webhook does not answer, {check.unproven[0].consequence}. Check it now with "
        "`reconciler drift --probe`."
    )


def _whose(found: RuleBreak) -> str:
    """Whose writes a broken rule is down to, truthfully: this apply's, someone else's."""
    rule = f"rule {found.rule.number}"
    own = " and ".join(found.own)
    others = " and ".join(found.others)
    if found.own and found.others:
        return (
            f"{rule} is broken by this apply's write of {own} together with someone else's "
            f"change to {others} since this apply read it."
        )
    if found.own:
        return f"{rule} is broken by this apply's write of {own}."
    if found.others:
        return (
            f"{rule}: this apply did not write that state: someone else changed {others} "
            "since this apply read it."
        )
    return f"{rule}: this apply did not write that state."


def _concurrent(change: ConcurrentChange, total: int) -> str:
    when = (
        "found in the re-read right after this apply's own write"
        if change.after_own_write
        else "found in the re-read before this apply's write"
    )
    broke = f", which broke {', '.join(str(r) for r in change.broke)}" if change.broke else ""
    return f"  step {change.at}/{total}: someone else {change.what} ({when}){broke}"


def render_stop_report(stop: EnvStop) -> str:
    """One environment's stop report."""
    if isinstance(stop, NothingWritten):
        return f"{stop.environment}: nothing was written."
    return _render_stop(stop)


def _render_stop(stop: StopReport) -> str:
    if stop.failed_at is None:
        where = f"all {stop.total} steps ran, then the convergence check failed"
    elif stop.interrupted is not None:
        # A signal between steps is no failure: the step it came before never started.
        where = f"stopped before step {stop.failed_at} of {stop.total} ({stop.interrupted})"
    else:
        where = f"stopped at step {stop.failed_at} of {stop.total}"
    lines = [f"{stop.environment} (tenant {stop.tenant}): {where}."]
    for event in stop.finished:
        extra = [f"request id {event.request_id}"] if event.request_id else []
        if event.outcome is Outcome.SKIPPED:
            extra.append("already done")
        elif event.outcome in (Outcome.BLOCKED, Outcome.UNKNOWN, Outcome.UNDONE):
            extra.append(event.detail)
        shown = f" ({'; '.join(extra)})" if extra else ""
        lines.append(
            f"  {_LABEL[event.outcome]:<14}{event.number}/{stop.total} {event.setting}: "
            f"{event.action}{shown}"
        )
    for step in stop.not_attempted:
        if stop.interrupted is None:
            why = ""
        elif step.number == stop.failed_at:
            why = f" (interrupted: {stop.interrupted} before it started)"
        else:
            why = " (interrupted)"
        lines.append(
            f"  {'not attempted':<14}{step.number}/{stop.total} {step.setting}: {step.action}{why}"
        )
    if stop.concurrent:
        lines.append("Changed by someone else while this apply ran (its own writes are above):")
        lines += [_concurrent(change, stop.total) for change in stop.concurrent]
    lines.append(render_safety(stop.safety))
    lines.append(
        "Running apply again continues from the live state (no local state is needed); "
        "`reconciler plan` shows what is left."
    )
    return "\n".join(lines)


def _fate(fate: EnvFate) -> str:
    if fate.status == "not attempted":
        return f"  {fate.name}: not attempted ({fate.why})"
    if fate.status == "blocked":
        return f"  {fate.name}: not applied, blocked (see the plan above)"
    if fate.status == "error":
        return f"  {fate.name}: not applied, could not be planned ({fate.why})"
    if fate.status == "applied":
        return f"  {fate.name}: applied, converged"
    return f"  {fate.name}: already converged"


def render_run_report(report: RunReport) -> str:
    """A run's stop report: each failed environment's, then "Other environments:"."""
    parts = [render_stop_report(stop) for stop in report.stops]
    if report.others:
        parts.append("Other environments:\n" + "\n".join(_fate(f) for f in report.others))
    return "\n\n".join(parts)


def render_report(error: ReconcilerError) -> str:
    """The stop report `error` carries, in words ("" when it carries none)."""
    stop = error.stop if isinstance(error, ReportedError) else None
    if not isinstance(stop, RunReport) or not stop:
        return ""
    return render_run_report(stop)


def render_error(error: ReconcilerError) -> str:
    """What a user reads of an error: its message, then its stop report, if any."""
    report = render_report(error)
    return f"{error}\n{report}" if report else str(error)
