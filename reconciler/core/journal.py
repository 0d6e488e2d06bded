"""The apply journal: one JSON line per event, on disk before the next thing happens.

Each write is recorded twice: an `intent` line (setting, action, masked before/after) flushed
and fsynced *before* the request goes out, and a `result` line after the answer. So a run that
is killed at any instant leaves an accurate record: the last line is either a result that
matches what NewStore holds, or an intent whose write may or may not have landed. Gate checks
(the webhook probe, and its skipping with --skip-probe) are recorded the same way.

Correctness never depends on the journal: apply always continues from the live state. It is
the audit trail of what this run did, and it never holds a secret (values arrive masked).

When the file cannot grow (a full disk, a quota), the journal keeps only whole lines (a record
written in part is cut off again), remembers the failure (`failure`) and records nothing more.
Only the records that must precede a write (`start`, `intent`) raise JournalError then: the
run stops before its next write, and everything else (the result of a write that landed, a
blocked gate, the stop report) goes on as the apply's own outcome says.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from reconciler.clock import now_iso
from reconciler.errors import ConfigError, JournalError

DEFAULT_DIR = Path(".reconciler") / "journal"
WRITE_AHEAD: Final = frozenset({"start", "intent"})
"""Records without which no write may go out."""


def default_path(when: datetime | None = None, pid: int | None = None) -> Path:
    """`.reconciler/journal/apply-<UTC timestamp>-<pid>.jsonl`: unique per run, sorts by time."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return DEFAULT_DIR / f"apply-{stamp}-{os.getpid() if pid is None else pid}.jsonl"


class Journal:
    """An append-only JSON-lines file; every `record` is durable when it returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.failure: str | None = None  # why the journal stopped recording, once it did
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise ConfigError(
                f"cannot write the apply journal {self.path}: {exc.strerror or exc}; "
                "choose another file with --journal."
            ) from None
        self._closed = False
        if self._size and not self._ends_a_line():
            # An earlier run killed mid-line: start ours on a line of its own.
            self._append(b"\n")

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def _ends_a_line(self) -> bool:
        try:
            with self.path.open("rb") as stream:
                stream.seek(-1, os.SEEK_END)
                return stream.read(1) == b"\n"
        except OSError:
            return True

    def _append(self, data: bytes) -> bool:
        """Write `data` whole and fsync it; on failure cut the file back to its last whole
        line, remember why, and return False."""
        if self.failure is not None:
            return False
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError as exc:
            self.failure = f"cannot append to the apply journal {self.path}: {exc.strerror or exc}"
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            return False
        self._size += len(data)
        return True

    def record(self, phase: str, **fields: Any) -> None:
        """Append `{"time", "phase", **fields}` and fsync it. Values must already be masked.
        A write-ahead record (`start`, `intent`) that cannot be written raises JournalError;
        any other is dropped once the journal failed (`failure` says why)."""
        line = json.dumps({"time": now_iso(), "phase": phase, **fields}, ensure_ascii=False)
        if not self._append(line.encode("utf-8") + b"\n") and phase in WRITE_AHEAD:
            raise JournalError(f"{self.failure}; nothing more was written")


def read_journal(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete line of a journal (a run killed mid-line leaves a partial last line)."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries
