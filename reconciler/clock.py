"""The one timestamp format of the tool's records (journal lines, the sandbox's state)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TypeAlias


def now_iso() -> str:
    """Now in UTC as ISO 8601 with microseconds and a `Z`: sorts as text, reads everywhere."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


Clock: TypeAlias = Callable[[], datetime]
"""Where "now" comes from for the change-window policy: `system_clock` in use; tests pass
their own (a parameter, never an environment variable, so no user can move "now")."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def today_utc() -> date:
    """Today's date in UTC: the calendar that stock confirmations are dated and expire in.
    Everything that needs it takes a `today` parameter defaulting to this, so tests pin it."""
    return datetime.now(UTC).date()
