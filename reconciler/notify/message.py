"""What a notification says (`Message`: the report and the environments it is about) and the
seam every backend implements (`Backend`: a Message in, an HTTP `Request` out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from reconciler.core.drift import DriftReport, EnvChange, EnvDrift


@dataclass(frozen=True)
class Message:
    """What one notification tells: the report, and the environments it is about (worst
    first), each with its change (None: not changed, listed because of `every_run`)."""

    report: DriftReport
    entries: tuple[tuple[EnvDrift, EnvChange | None], ...]
    every_run: bool

    @property
    def changes(self) -> int:
        return sum(change is not None for _, change in self.entries)


def message_for(report: DriftReport, *, every_run: bool = False) -> Message | None:
    """The notification of `report`, or None when there is nothing to tell: no change since
    the state file's last run (without a state file: no environment out of sync). With
    `every_run`, every run sends one, about every environment."""
    history = report.history
    if history is None:
        raise ValueError("message_for needs a report with its history (with_history)")
    changed = {change.name: change for change in history.changes}
    if not changed and not every_run:
        return None
    entries = tuple(
        (env, changed.get(env.name))
        for env in report.worst_first()
        if every_run or env.name in changed
    )
    return Message(report, entries, every_run)


@dataclass(frozen=True)
class Request:
    """One notification as HTTP: the body and its headers."""

    body: bytes
    headers: Mapping[str, str]


class Backend(Protocol):
    """The seam: a kind of receiver turns a Message into a Request. One module per kind."""

    kind: str

    def request(self, message: Message, *, secret: str | None) -> Request: ...
