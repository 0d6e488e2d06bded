"""The one timestamp format of the tool's records (journal lines, the sandbox's state)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TypeAlias


def now_iso() -> str:
    """Now in UTC as ISO 8601 with microseconds and a `Z`: sorts as text, reads everywhere."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


Clock: TypeAlias = Callable[[], datetime]
"""The one clock: where "now" comes from, for the change-window policy and (as a UTC date,
`today_utc`) the stock confirmation at apply. `system_clock` in use; tests pass their own (a
parameter, never an environment variable, so no user can move "now")."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def today_utc(clock: Clock = system_clock) -> date:
    """Today's date in UTC by `clock`: the calendar that stock confirmations are dated and
    expire in. Planning and loading take a `today` parameter defaulting to this; apply asks
    its clock, so a test pins both "now" and "today" with one clock."""
    return clock().astimezone(UTC).date()
