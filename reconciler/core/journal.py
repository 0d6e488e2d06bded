"""The apply journal: one JSON line per event, on disk before the next thing happens.

Each write is recorded twice: an `intent` line (setting, action, masked before/after) flushed
and fsynced *before* the request goes out, and a `result` line after the answer. So a run that
is killed at any instant leaves an accurate record: the last line is either a result that
matches what NewStore holds, or an intent whose write may or may not have landed. Gate checks
(the webhook probe, and its skipping with --skip-probe) are recorded the same way.

Correctness never depends on the journal: apply always continues from the live state. It is
the audit trail of what this run did, and it never holds a secret (values arrive masked).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from reconciler.clock import now_iso
from reconciler.errors import ApplyError, ConfigError

DEFAULT_DIR = Path(".reconciler") / "journal"


def default_path(when: datetime | None = None, pid: int | None = None) -> Path:
    """`.reconciler/journal/apply-<UTC timestamp>-<pid>.jsonl`: unique per run, sorts by time."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return DEFAULT_DIR / f"apply-{stamp}-{os.getpid() if pid is None else pid}.jsonl"


class Journal:
    """An append-only JSON-lines file; every `record` is durable when it returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot write the apply journal {self.path}: {exc.strerror or exc}; "
                "choose another file with --journal."
            ) from None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def record(self, phase: str, **fields: Any) -> None:
        """Append `{"time", "phase", **fields}` and fsync it. Values must already be masked."""
        line = json.dumps({"time": now_iso(), "phase": phase, **fields}, ensure_ascii=False)
        try:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            # Write-ahead means no write without its intent on disk: stop rather than go on.
            raise ApplyError(
                f"cannot append to the apply journal {self.path}: {exc.strerror or exc}"
            ) from None


def read_journal(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete line of a journal (a run killed mid-line leaves a partial last line)."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries
