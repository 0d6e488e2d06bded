"""Apply's steps as terminal lines, one per event, printed as it happens."""

from __future__ import annotations

from reconciler.core.apply import (
    EnvironmentConverged,
    Event,
    GateChecked,
    Outcome,
    StepFinished,
    StepStarted,
)


def render_event(event: Event) -> str:
    """One line (newline included), e.g.
    "[acme-staging] 2/4 availability_webhook: create … applied (request id 7f3a)"; "" for a
    step that starts (its line comes when it finishes)."""
    if isinstance(event, StepStarted):
        return ""
    if isinstance(event, EnvironmentConverged):
        return f"[{event.environment}] converged: a fresh plan after the last step has no changes\n"
    where = f"[{event.environment}] {event.number}/{event.total} {event.setting}"
    if isinstance(event, GateChecked):
        return f"{where}: gate {event.gate} {event.result}: {event.detail}\n"
    return f"{where}: {event.action} … {_outcome(event)}\n"


def _outcome(event: StepFinished) -> str:
    if event.outcome is Outcome.SKIPPED:
        return "already done, skipped"
    if event.outcome is Outcome.BLOCKED:
        return f"blocked: {event.detail}"
    if event.outcome is Outcome.UNKNOWN:
        return f"UNKNOWN: {event.detail}"
    if event.outcome is Outcome.UNDONE:
        request = f" (request id {event.request_id})" if event.request_id else ""
        return f"UNDONE at once: {event.detail}{request}"
    request = f" (request id {event.request_id})" if event.request_id else ""
    return f"{event.outcome}{request}"
