"""What every apply-lock backend shares: the tenants to lock, what a lock records about its
holder, what was done per tenant (for the journal), the events a backend emits, and the
interface a backend implements (`Backend`, yielding `Held`)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias

from reconciler.identity import tenant_identity
from reconciler.model import Environment
from reconciler.provenance import ConfigCommit

LOCAL: Final = "local"
GIT: Final = "git"
BACKENDS: Final = (LOCAL, GIT)

SKIPPED_BY_FLAG: Final = "--no-lock was given"
SKIPPED_UNSUPPORTED: Final = "this platform has no fcntl file locks"

_FIELD_MAX_CHARS = 200


def lock_key(base_url: str) -> str:
    """The name a tenant API's lock goes by, in a file name or a git ref: its identity
    (`TenantIdentity.ref_name`), so that every spelling of one API shares a lock. (Config
    refuses a URL with credentials in it, so nothing secret is in the name.)"""
    return tenant_identity(base_url).ref_name


@dataclass(frozen=True)
class Target:
    """One tenant API to lock, and the environments of the run that write to it."""

    key: str  # lock_key of the tenant's base_url
    tenant: str  # the files' `tenant:` names, for people
    identity: str  # the canonical host and path
    environments: tuple[str, ...]


def targets(envs: Sequence[Environment]) -> list[Target]:
    """One lock per tenant API, sorted by key: every run takes them in the same order, so two
    runs that share several tenants cannot each hold one the other waits for."""
    grouped: dict[str, list[Environment]] = {}
    for env in envs:
        grouped.setdefault(lock_key(env.connection.base_url), []).append(env)
    return [
        Target(
            key,
            ", ".join(dict.fromkeys(env.tenant for env in grouped[key])),
            str(tenant_identity(grouped[key][0].connection.base_url)),
            tuple(env.name for env in grouped[key]),
        )
        for key in sorted(grouped)
    ]


def text(value: Any) -> str:
    """A field another process wrote, fit for a one-line message."""
    if not isinstance(value, str):
        return ""
    return "".join(c for c in value if c.isprintable())[:_FIELD_MAX_CHARS]


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as the lock says (fields are "" / None when it does not say: a local
    lock's holder may be between taking the lock and writing its file)."""

    pid: int | None
    hostname: str
    environments: str
    started: str
    # The git lock says more: which lock, who (the CI actor or user@host), the CI run, the
    # configuration and plan it applies, and when it expires (its TTL).
    lock_id: str = ""
    who: str = ""
    run_url: str = ""
    config_commit: str = ""
    plan_checksum: str = ""
    expires: str = ""

    def describe(self) -> str:
        parts = [f"lock id {self.lock_id}"] if self.lock_id else []
        if self.who:
            parts.append(f"by {self.who}")
        if self.run_url:
            parts.append(self.run_url)
        if self.lock_id:
            where = [f"host {self.hostname}"] if self.hostname else []
            where += [f"pid {self.pid}"] if self.pid is not None else []
            parts += [" ".join(where)] if where else []
        else:
            parts.append(f"pid {self.pid}" if self.pid is not None else "pid unknown")
        if self.environments:
            parts.append(f"environment {self.environments}")
        if self.started:
            parts.append(f"started {self.started}")
        if self.config_commit:
            parts.append(f"config commit {self.config_commit}")
        if self.plan_checksum:
            parts.append(f"plan {self.plan_checksum}")
        if self.lock_id:
            parts.append(f"expires {self.expires}" if self.expires else "no TTL")
        return ", ".join(parts)

    def where(self) -> str:
        if not self.hostname or self.hostname == socket.gethostname():
            return "from this machine"
        return f"from host {self.hostname}"


@dataclass(frozen=True)
class TenantLock:
    """One tenant API's lock for this run: taken, or skipped and why."""

    tenant: str
    environments: tuple[str, ...]
    file: Path | None  # the local lock's file
    acquired: bool
    skipped_because: str = ""
    waited_seconds: float = 0.0
    backend: str = LOCAL
    lock_id: str = ""  # the git lock's id (what `reconciler unlock --lock-id` takes)
    ref: str = ""  # the git lock's ref in the remote
    remote: str = ""  # the remote's name (never its URL: it may hold a token)
    broke: tuple[str, ...] = ()  # ids of expired locks this run broke to take the lock
    last_applied: dict[str, Any] | None = None  # the git lock: the commit applied last

    def journal_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "tenant": self.tenant,
            "environments": list(self.environments),
            "result": "acquired" if self.acquired else "skipped",
        }
        if not self.acquired:
            fields["reason"] = self.skipped_because
            return fields
        if self.backend == LOCAL:
            fields["file"] = str(self.file)
        else:
            fields |= {"backend": self.backend, "lock_id": self.lock_id, "ref": self.ref}
            fields |= {"remote": self.remote, "last_applied": self.last_applied}
            if self.broke:
                fields["broke_expired"] = list(self.broke)
        fields["waited_seconds"] = round(self.waited_seconds, 3)
        return fields


# --- the events a backend emits, as they happen ---------------------------------------------


@dataclass(frozen=True)
class LockWaiting:
    """Another apply holds the tenant's lock; this one waits up to `timeout` seconds."""

    tenant: str
    holder: Holder
    timeout: float
    backend: str


@dataclass(frozen=True)
class LockAcquired:
    lock: TenantLock


@dataclass(frozen=True)
class LockBroken:
    """An expired lock (its TTL passed) was broken to take the tenant's lock."""

    tenant: str
    holder: Holder


@dataclass(frozen=True)
class CommitRecorded:
    """The configuration commit this run applied, recorded as the tenant's last applied."""

    tenant: str
    commit: str
    ref: str


@dataclass(frozen=True)
class LockReleased:
    """The lock let go (`problem` "" ) or not (`problem` says why: it stays until `reconciler
    unlock` or its TTL)."""

    tenant: str
    backend: str
    lock_id: str = ""
    problem: str = ""


LockEvent: TypeAlias = LockWaiting | LockAcquired | LockBroken | CommitRecorded | LockReleased
OnLockEvent: TypeAlias = Callable[[LockEvent], None]


def ignore(event: LockEvent) -> None:
    pass


# --- the interface -------------------------------------------------------------------------


@dataclass(frozen=True)
class LockRequest:
    """What the run asks of its locks and what they record about it."""

    timeout: float = 0.0  # seconds to wait for a held lock (0: refuse at once)
    environments_dir: Path = Path("environments")
    remote: str = "origin"  # git: the remote holding the lock refs
    ttl_seconds: float | None = None  # git: a lock older than this may be broken
    allow_older_commit: bool = False  # git: apply a commit older than the one applied last
    config_commit: ConfigCommit | None = None
    plan_checksum: str | None = None
    actor: str = ""
    run_url: str | None = None
    directory: Path | None = None  # local: the lock directory (None: lock_directory())


class Held(Protocol):
    """The locks of a run, held: what was done per tenant, and, once a tenant's environments
    were all applied, the record that this commit was applied to it."""

    @property
    def locks(self) -> list[TenantLock]: ...

    def record_applied(self, keys: Collection[str]) -> None:
        """Record the run's config commit as applied to the tenants `keys` (Target.key), when
        the locks are let go. A backend without a record ignores it."""

    @property
    def release_problem(self) -> str:
        """Why a lock could not be let go, once the block is left ("" when all were)."""


Backend: TypeAlias = Callable[
    [Sequence[Target], LockRequest, OnLockEvent], AbstractContextManager[Held]
]


@dataclass
class SimpleHeld:
    """A `Held` with nothing to record and nothing that can fail to be let go."""

    taken: list[TenantLock] = field(default_factory=list)

    @property
    def locks(self) -> list[TenantLock]:
        return self.taken

    def record_applied(self, keys: Collection[str]) -> None:
        pass

    @property
    def release_problem(self) -> str:
        return ""
