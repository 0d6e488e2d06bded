"""Change windows and freezes: may an apply write to an environment at a given moment?

    Policy                  an environment's `policy` section, parsed (config/build.py makes it)
    decide(policy, now)     Decision: allowed or blocked, the rule and reason, and the next
                            moment writes are allowed (or, when allowed, until when)

Pure: no I/O, no clock of its own. `now` is an aware datetime the caller passes in (the CLI's
clock, or a test's); nothing a user sets can move it.

Windows and freezes are wall-clock times in the policy's timezone, so a window keeps its local
hours across a DST change (it is an hour shorter or longer that day). Every comparison is made
in UTC: aware datetimes sharing one tzinfo compare by wall time in Python, which is wrong
across a DST change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RULE_FREEZE: Final = "freeze"
RULE_WINDOW: Final = "apply_windows"

# A window's days repeat weekly and freezes are finite, so the next allowed moment is found in
# a few hops; the cap only guards against a policy no moment satisfies (validation refuses
# those, but the core never trusts that).
_MAX_HOPS: Final = 1000
# Windows that join into one stretch (e.g. every day, 00:00-24:00) are followed this many weeks
# ahead; past that the stretch has no end in sight.
_MAX_WEEKS: Final = 60


@dataclass(frozen=True)
class Window:
    """Writes allowed from `start` to `end` (local wall time) on each of `days` (0 = Monday).
    An `end` at or before `start` ends the next day (a window across midnight); `end` None
    means midnight at the end of the day (`to: "24:00"`)."""

    days: frozenset[int]
    start: time
    end: time | None

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        end = "24:00" if self.end is None else self.end.strftime("%H:%M")
        return f"{days} {self.start.strftime('%H:%M')}-{end}"


@dataclass(frozen=True)
class Freeze:
    """No writes from the start of `first` to the end of `last` (local days, inclusive)."""

    first: date
    last: date
    reason: str


@dataclass(frozen=True)
class Policy:
    timezone: str = "UTC"
    windows: tuple[Window, ...] = ()  # empty: any time
    freezes: tuple[Freeze, ...] = ()

    @property
    def zone(self) -> tzinfo:
        return UTC if self.timezone == "UTC" else ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Decision:
    """What the policy says at `at`. When blocked: `rule` (RULE_FREEZE or RULE_WINDOW), `reason`
    in words, and `next_allowed` (None: never, within reach). When allowed: `until`, the moment
    it stops being allowed (None: no end in sight). Times are aware, in the policy's zone."""

    allowed: bool
    at: datetime
    timezone: str
    rule: str = ""
    reason: str = ""
    next_allowed: datetime | None = None
    until: datetime | None = None


ALWAYS: Final = Policy()


def _utc(day: date, at: time | None, zone: tzinfo) -> datetime:
    """Local `day` at `at` (None: the midnight ending the day) in `zone`, as UTC. A wall time
    the DST change skips is read with the offset before the change (zoneinfo's fold=0, as
    iCalendar does): 02:30 on a night that jumps from 02:00 to 03:00 is 03:30. A wall time that
    happens twice is its first occurrence."""
    if at is None:
        day, at = day + timedelta(days=1), time(0)
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _window_spans(policy: Policy, around: datetime) -> list[tuple[datetime, datetime]]:
    """Every window's (start, end) in UTC that starts from two local days before `around` (a
    window lasts at most 25 hours: under a day, plus a DST hour) to a week and a day after it,
    sorted."""
    zone = policy.zone
    today = around.astimezone(zone).date()
    spans = []
    for offset in range(-2, 9):
        day = today + timedelta(days=offset)
        for window in policy.windows:
            if day.weekday() not in window.days:
                continue
            start = _utc(day, window.start, zone)
            crosses = window.end is not None and window.end <= window.start
            end = _utc(day + timedelta(days=1) if crosses else day, window.end, zone)
            if end > start:
                spans.append((start, end))
    return sorted(spans)


def _freeze_span(freeze: Freeze, zone: tzinfo) -> tuple[datetime, datetime]:
    return _utc(freeze.first, time(0), zone), _utc(freeze.last, None, zone)


def _freeze_at(policy: Policy, now: datetime) -> tuple[Freeze, datetime] | None:
    """The freeze `now` is in (the one ending last, if several overlap) and its end."""
    zone = policy.zone
    found: tuple[Freeze, datetime] | None = None
    for freeze in policy.freezes:
        start, end = _freeze_span(freeze, zone)
        if start <= now < end and (found is None or end > found[1]):
            found = (freeze, end)
    return found


def _window_at(policy: Policy, now: datetime) -> tuple[bool, datetime | None]:
    """Whether `now` is inside a window, and the next window edge after it: the end of the
    window it is in (windows that touch or overlap are joined; None when they never stop within
    reach), else the next start."""
    if not policy.windows:
        return True, None
    spans = _window_spans(policy, now)
    containing = [stop for start, stop in spans if start <= now < stop]
    if not containing:
        starts = [start for start, _ in spans if start > now]
        return False, min(starts) if starts else None
    end = max(containing)
    for _ in range(_MAX_WEEKS):
        # Sorted by start and `end` only grows: one pass joins every chain of windows.
        for start, stop in spans:
            if start <= end < stop:
                end = stop
        if end < spans[-1][0]:
            return True, end  # every span that could run on past `end` was looked at
        spans = _window_spans(policy, end)
    return True, None


def _next_allowed(policy: Policy, now: datetime) -> datetime | None:
    moment: datetime | None = now
    for _ in range(_MAX_HOPS):
        if moment is None:
            return None
        frozen = _freeze_at(policy, moment)
        if frozen is not None:
            moment = frozen[1]
            continue
        inside, edge = _window_at(policy, moment)
        if not inside:
            moment = edge
            continue
        return moment
    return None


def _until(policy: Policy, now: datetime) -> datetime | None:
    """When an allowed period that contains `now` ends: its window's end or the next freeze's
    start, whichever comes first."""
    zone = policy.zone
    starts = [_freeze_span(freeze, zone)[0] for freeze in policy.freezes]
    candidates = [start for start in starts if start > now]
    _, window_end = _window_at(policy, now)
    if window_end is not None:
        candidates.append(window_end)
    return min(candidates) if candidates else None


def describe_windows(policy: Policy) -> str:
    return "; ".join(w.describe() for w in policy.windows)


def decide(policy: Policy, now: datetime) -> Decision:
    """Whether `policy` lets an apply write at `now` (an aware datetime)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("decide() needs an aware datetime")
    now = now.astimezone(UTC)
    zone = policy.zone

    def local(moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(zone)

    at = now.astimezone(zone)
    frozen = _freeze_at(policy, now)
    if frozen is not None:
        freeze, _ = frozen
        return Decision(
            allowed=False,
            at=at,
            timezone=policy.timezone,
            rule=RULE_FREEZE,
            reason=(
                f"change freeze {freeze.first.isoformat()} to {freeze.last.isoformat()} "
                f"({policy.timezone}): {freeze.reason}"
            ),
            next_allowed=local(_next_allowed(policy, now)),
        )
    inside, _ = _window_at(policy, now)
    if not inside:
        return Decision(
            allowed=False,
            at=at,
            timezone=policy.timezone,
            rule=RULE_WINDOW,
            reason=(f"outside the apply windows ({describe_windows(policy)}, {policy.timezone})"),
            next_allowed=local(_next_allowed(policy, now)),
        )
    return Decision(allowed=True, at=at, timezone=policy.timezone, until=local(_until(policy, now)))


def shown_time(moment: datetime) -> str:
    """`2026-12-01 02:00 EST (07:00 UTC)`: the policy's local time, and UTC for CI logs."""
    local = moment.strftime("%Y-%m-%d %H:%M %Z")
    if moment.utcoffset() == timedelta(0):
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"{local} ({moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')})"


def decision_dict(decision: Decision) -> dict[str, Any]:
    """A decision as JSON: the plan file's `policy`, apply's journal lines."""

    def when(moment: datetime | None) -> str | None:
        return None if moment is None else moment.isoformat(timespec="seconds")

    return {
        "apply_allowed": decision.allowed,
        "checked_at": when(decision.at),
        "timezone": decision.timezone,
        "rule": decision.rule or None,
        "reason": decision.reason or None,
        "next_allowed": when(decision.next_allowed),
        "allowed_until": when(decision.until),
    }


def explain(decision: Decision) -> str:
    """The decision in one line, e.g. "blocked by policy rule freeze: change freeze 2026-11-20
    to 2026-12-31 (America/New_York): peak season; next allowed 2027-01-04 02:00 EST (...)"."""
    if decision.allowed:
        until = f" until {shown_time(decision.until)}" if decision.until is not None else ""
        return f"allowed by the policy{until}"
    following = (
        f"next allowed {shown_time(decision.next_allowed)}"
        if decision.next_allowed is not None
        else "no allowed time ahead"
    )
    return f"blocked by policy rule {decision.rule}: {decision.reason}; {following}"


def decision_from_dict(doc: Mapping[str, Any]) -> Decision:
    """The decision `decision_dict` wrote (a plan file's `policy`), as a value again."""

    def when(text: Any) -> datetime | None:
        return None if text is None else datetime.fromisoformat(str(text))

    at = when(doc["checked_at"])
    assert at is not None  # the plan schema requires it
    return Decision(
        allowed=bool(doc["apply_allowed"]),
        at=at,
        timezone=str(doc["timezone"]),
        rule=str(doc.get("rule") or ""),
        reason=str(doc.get("reason") or ""),
        next_allowed=when(doc.get("next_allowed")),
        until=when(doc.get("allowed_until")),
    )
