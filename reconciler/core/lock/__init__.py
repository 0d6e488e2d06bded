"""One `reconciler apply` per tenant at a time: the apply lock, a seam with two backends.

NewStore offers no locks, ETags or conditional writes, so two applies of one tenant at once can
land a write between the other's re-read and its write (RELIABILITY.md, Limits). Like
Terraform's state lock, apply therefore holds an exclusive lock per tenant API from before its
first read until its last write:

    hold_locks(envs, backend, request, on_event)   context manager: every lock of the run
    choose_lock(envs, flag=, remote=, ttl=)        which backend, remote and TTL a run uses
    lock_directory(environ), lock_key(base_url)    where local lock files live, and their names

The backends, one module each, chosen in `BACKENDS` and nowhere else:
  - `local` (local.py): a `flock` per tenant in a directory of this machine. The kernel drops
    it however its holder ends, so it never goes stale; it cannot see another machine.
  - `git` (git.py): a ref per tenant in the configuration repository's own git remote, taken
    by an atomic create-if-absent push, so every CI runner and laptop shares it; with it,
    apply refuses a commit older than the one applied last, and records each one it applied.
Both key the lock by the tenant's identity (`reconciler.identity`), emit `LockEvent`s, and
yield a `Held` (base.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Final

from reconciler.core.lock import git, local
from reconciler.core.lock.base import (
    BACKENDS as BACKEND_NAMES,
)
from reconciler.core.lock.base import (
    GIT,
    LOCAL,
    SKIPPED_BY_FLAG,
    SKIPPED_UNSUPPORTED,
    Backend,
    CommitRecorded,
    Held,
    Holder,
    LockAcquired,
    LockBroken,
    LockEvent,
    LockReleased,
    LockRequest,
    LockWaiting,
    OnLockEvent,
    SimpleHeld,
    Target,
    TenantLock,
    ignore,
    lock_key,
    targets,
)
from reconciler.core.lock.local import LOCK_DIR_VARIABLE, lock_directory
from reconciler.errors import ConfigError
from reconciler.model import Environment, LockChoice

__all__ = [
    "BACKENDS",
    "GIT",
    "LOCAL",
    "LOCK_DIR_VARIABLE",
    "SKIPPED_BY_FLAG",
    "SKIPPED_UNSUPPORTED",
    "CommitRecorded",
    "Held",
    "Holder",
    "LockAcquired",
    "LockBroken",
    "LockEvent",
    "LockReleased",
    "LockRequest",
    "LockWaiting",
    "OnLockEvent",
    "Target",
    "TenantLock",
    "choose_lock",
    "hold_locks",
    "lock_directory",
    "lock_key",
    "targets",
]

BACKENDS: Final[dict[str, Backend]] = {LOCAL: local.hold, GIT: git.hold}
assert tuple(BACKENDS) == BACKEND_NAMES


def choose_lock(
    envs: Sequence[Environment],
    *,
    flag: str | None = None,
    remote: str | None = None,
    ttl_seconds: float | None = None,
) -> LockChoice:
    """The lock a run takes: `flag` (`--lock`), else what the environments' files say
    (`apply_lock`; every file of the run must agree), else local; `remote` (`--lock-remote`)
    and `ttl_seconds` (`--lock-ttl`) over the files'. ConfigError when files disagree."""
    said: dict[LockChoice, list[Environment]] = {}
    for env in envs:
        if env.apply_lock is not None:
            said.setdefault(env.apply_lock, []).append(env)
    if flag is None and len(said) > 1:
        listed = "; ".join(
            f"{envs_[0].where('apply_lock')} says {choice.backend}"
            + (f" (remote {choice.remote})" if choice.backend == GIT else "")
            for choice, envs_ in said.items()
        )
        raise ConfigError(
            f"the environments of this run choose different apply locks ({listed}); nothing "
            "was written. Make their `apply_lock` agree (a base file is the place), apply them "
            "separately, or choose one with --lock local|git."
        )
    chosen = next(iter(said), LockChoice())
    if flag is not None and flag != chosen.backend:
        chosen = LockChoice(backend=flag, remote=chosen.remote, ttl_seconds=chosen.ttl_seconds)
    return LockChoice(
        backend=chosen.backend,
        remote=remote if remote is not None else chosen.remote,
        ttl_seconds=ttl_seconds if ttl_seconds is not None else chosen.ttl_seconds,
    )


@contextlib.contextmanager
def hold_locks(
    envs: Sequence[Environment],
    backend: str | None,
    request: LockRequest,
    on_event: OnLockEvent = ignore,
) -> Iterator[Held]:
    """Hold the lock of every tenant API `envs` use with `backend` (None: --no-lock, which
    takes none and says so in the records) for the `with` block."""
    tenants = targets(envs)
    if backend is None:
        yield SimpleHeld(
            [TenantLock(t.tenant, t.environments, None, False, SKIPPED_BY_FLAG) for t in tenants]
        )
        return
    with BACKENDS[backend](tenants, request, on_event) as held:
        yield held
