"""The one timestamp format of the tool's records (journal lines, the sandbox's state)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """Now in UTC as ISO 8601 with microseconds and a `Z`: sorts as text, reads everywhere."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
