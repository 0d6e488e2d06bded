"""One exception tree for the whole tool; the CLI turns it into exit codes in one place.

    ReconcilerError                  exit 1 unless stated; `str(err)` is the one-paragraph message
    ├── ConfigError                  bad input in an environment file or a flag
    │   └── ValidationFailed         every problem found in one run (`.problems`)
    ├── PlanFileError                unreadable, edited, foreign or stale plan file
    ├── NewStoreError                a NewStore API call failed (setting, method, path, status,
    │   │                            request_id, message)
    │   ├── TransportError           no HTTP answer: connection refused, reset, timeout
    │   │   └── UnreachableError     nothing answers at host:port (refused, unknown host, TLS)
    │   ├── AuthError                the token endpoint refused us, or 401/403 persisted
    │   ├── IPBlockedError           403 with a non-JSON body: NewStore's per-IP rate-limit block
    │   │   └── HostBlockedError     not sent: the host blocked this IP earlier in the run
    │   ├── RetryBudgetExhausted     transient failures outlasted the retry budget
    │   ├── ConflictError            409 kept coming back after re-read and retry
    │   └── RejectedError            any other 4xx/5xx answer (validation, server error)
    └── ReportedError                may carry a stop report (`.stop`, a value: the words are
        │                            `render.stop_report.render_error`'s)
        ├── ApplyError               apply stopped; carries the safe-state report
        │   ├── ChangedUnderneath    live state moved away from what was planned
        │   ├── LockError            the apply lock could not be taken, checked or let go (a
        │   │   │                    git failure)
        │   │   ├── LockHeldError    another apply holds it (the message names the holder)
        │   │   └── OlderCommitError the run's config commit is older than the one applied last
        │   ├── JournalError         the apply journal cannot be written: no write without it
        │   └── Interrupted          exit 130 / 143: SIGINT / SIGTERM stopped apply before a write
        └── BlockedError             exit 3: a gate or safety rule stops a needed change;
                                     carries the safe-state report when apply stopped

Exit codes are `ExitCode` members, set on the classes above and nowhere else.

No message ever contains a header, token, api_key or client secret: messages are built from
the request method, path, status and NewStore's own `message`/`request_id` fields only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class ExitCode(enum.IntEnum):
    """The process exit codes: the one place they are defined."""

    OK = 0
    ERROR = 1  # any ReconcilerError without its own code
    CHANGES = 2  # `plan` / `drift`: there is something to apply
    BLOCKED = 3
    INTERRUPTED = 130  # 128 + SIGINT, as Unix shells report a Ctrl-C
    TERMINATED = 143  # 128 + SIGTERM, how CI systems cancel a job


class ReconcilerError(Exception):
    """Base of every error the tool raises on purpose."""

    exit_code: int = ExitCode.ERROR


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located as precisely as we can."""

    file: str
    line: int  # 1-based; 0 when unknown
    column: int  # 1-based; 0 when unknown
    path: str  # key path inside the document, e.g. "availability_webhook.timeout"; "" for root
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"


class ConfigError(ReconcilerError):
    """Bad input in an environment file or on the command line."""


MAX_PROBLEMS_SHOWN = 50
"""A generated file can have thousands of problems; the first ones are the ones to fix."""


class ValidationFailed(ConfigError):
    """Every problem found while loading environments, reported together: all of them in
    `.problems`, the first MAX_PROBLEMS_SHOWN (in file and line order) in the message."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.message))
        count = len(self.problems)
        lines = [f"  {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        more = count - len(lines)
        if more:
            lines.append(f"  … and {more} more problem{'s' if more != 1 else ''} (fix these first)")
        listed = "\n".join(lines)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found:\n{listed}")


class PlanFileError(ReconcilerError):
    """A plan file that cannot be applied: unreadable, edited, foreign, or stale."""


@dataclass
class NewStoreError(ReconcilerError):
    """A call to NewStore failed. Carries everything needed to ask NewStore support about it."""

    message: str
    setting: str = ""
    method: str = ""
    path: str = ""
    status: int | None = None
    request_id: str | None = None
    detail: str = ""  # NewStore's own message(s), never request or response headers
    environment: str = ""
    hint: str = ""

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = []
        if self.environment:
            parts.append(f"[{self.environment}]")
        if self.setting:
            parts.append(f"{self.setting}:")
        parts.append(self.message)
        where = " ".join(x for x in (self.method, self.path) if x)
        if where:
            parts.append(f"({where}")
            parts[-1] += f" → {self.status})" if self.status is not None else ")"
        if self.detail:
            parts.append(f"NewStore said: {self.detail}.")
        if self.request_id:
            parts.append(f"Request id: {self.request_id}.")
        if self.hint:
            parts.append(self.hint)
        return " ".join(parts)


class TransportError(NewStoreError):
    """No HTTP answer at all: connection refused or reset, DNS failure, timeout."""


class UnreachableError(TransportError):
    """Nothing answers at the address: connection refused, unknown host, TLS handshake failed.
    Retried at most once; the message names host:port, the cause and the likely fix."""


class AuthError(NewStoreError):
    """The token endpoint refused the credentials, or the API kept answering 401/403."""


class IPBlockedError(NewStoreError):
    """403 with a non-JSON body: NewStore blocked this source IP for exceeding its rate limit."""


class HostBlockedError(IPBlockedError):
    """A request not sent: NewStore blocked this IP earlier in the run (the run-wide circuit
    breaker), and every request more would extend the block."""


class RetryBudgetExhausted(NewStoreError):
    """Transient failures (429, 502-504, connection errors) outlasted the retry budget."""


class ConflictError(NewStoreError):
    """409 concurrent_update_on_tenant_setting persisted after re-reading and retrying."""


class RejectedError(NewStoreError):
    """NewStore answered with an error status that retrying will not fix."""


class StopValue(Protocol):
    """A stop report, as the errors see it: a value, empty or not. It is the core's
    `core.apply.report.RunReport`; the errors sit below the core, so they know no more of it
    than this, and `render.stop_report.render_error` words an error with its report."""

    def __bool__(self) -> bool: ...


@dataclass
class ReportedError(ReconcilerError):
    """Base of the errors that can carry a stop report: `stop` is the value (what was applied,
    what was not, what a fresh read says about each rule). `str(err)` is the message alone;
    `render.stop_report.render_error(err)` is the message and the report in words."""

    message: str
    stop: StopValue | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ApplyError(ReportedError):
    """Apply stopped part-way; `stop` is the safe-state report."""


class ChangedUnderneath(ApplyError):
    """The live state moved since it was planned (another run, or a hand edit)."""


class LockError(ApplyError):
    """The apply lock could not be taken (held by another apply, a git remote that cannot be
    reached or pushed to), the run's commit is older than the one applied last, or a lock
    could not be let go. Raised before any write, except when letting go."""


class LockHeldError(LockError):
    """Another apply holds a tenant's lock (still, after `--lock-timeout`); the message names
    the holder."""


class OlderCommitError(LockError):
    """The git lock found a newer config commit applied to the tenant than the run's."""


class JournalError(ApplyError):
    """The apply journal cannot be appended to (a full disk): apply writes nothing more, since
    no write may go out without its intent on disk. What the run did is in the stop report."""


@dataclass
class Interrupted(ApplyError):
    """SIGINT or SIGTERM stopped apply before its next write; exits 130 / 143."""

    signal_name: str = "SIGINT"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.exit_code = (
            ExitCode.TERMINATED if self.signal_name == "SIGTERM" else ExitCode.INTERRUPTED
        )


class BlockedError(ReportedError):
    """A change is needed but a gate or a safety rule stops it. When apply stops on a failed
    gate, `stop` is the same safe-state report an ApplyError carries."""

    exit_code = ExitCode.BLOCKED
