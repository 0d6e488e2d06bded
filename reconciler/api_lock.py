"""The apply lock as the Python API uses it: which lock a run takes, which tenants a run may
record as applied, and `unlock` (`reconciler unlock ENV --lock-id ID`).

    lock_backend(envs, lock, remote, ttl)        the backend and settings of a run's lock
    applied_tenants(envs, done)                  the tenants whose environments were all done
    unlock(environments_dir, name, lock_id)      break a git lock, only with its id
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from reconciler.config import load_environments
from reconciler.core.lock import GIT, LOCAL, Holder, choose_lock, lock_key, targets
from reconciler.core.lock import git as git_lock
from reconciler.errors import ConfigError
from reconciler.model import Environment, LockChoice

PathLike = str | os.PathLike[str]


def lock_backend(
    envs: Sequence[Environment],
    lock: bool | str,
    remote: str | None,
    ttl_seconds: float | None,
) -> tuple[str | None, LockChoice]:
    """The backend a run locks with (None: no lock, `lock=False`) and its settings: `lock`
    "local"/"git" (the `--lock` flag) over the files' `apply_lock`, which over local."""
    if isinstance(lock, str) and lock not in (LOCAL, GIT):
        raise ConfigError(f"--lock {lock}: no such apply lock; one of {LOCAL}, {GIT}.")
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise ConfigError("--lock-ttl needs a number of seconds above 0.")
    flag = lock if isinstance(lock, str) else None
    choice = choose_lock(envs, flag=flag, remote=remote, ttl_seconds=ttl_seconds)
    return (choice.backend if lock is not False else None), choice


def applied_tenants(envs: Sequence[Environment], done: Collection[str]) -> list[str]:
    """The lock keys of the tenants whose every environment of the run is in `done` (applied,
    or already converged): the run's commit may be recorded as applied to those."""
    return [t.key for t in targets(envs) if all(name in done for name in t.environments)]


def unlock(
    environments_dir: PathLike,
    name: str,
    lock_id: str,
    *,
    remote: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Holder:
    """Break the git apply lock of environment `name`'s tenant, if it is `lock_id` (Terraform's
    force-unlock): for the lock of an apply that is gone (a killed CI job). Returns who held
    it. Raises LockError when the tenant has no lock, or another one, and ConfigError for a
    file that cannot be read. Secrets need not be set: nothing talks to NewStore."""
    directory = Path(environments_dir)
    (env,) = load_environments(directory, [name], environ=environ, allow_missing_secrets=True)
    choice = env.apply_lock or LockChoice()
    (target,) = targets([env])
    assert target.key == lock_key(env.connection.base_url)
    return git_lock.unlock(directory, remote or choice.remote, target, lock_id)


def read_lock(
    environments_dir: PathLike,
    name: str,
    *,
    remote: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Holder | None:
    """Who holds the git apply lock of environment `name`'s tenant (None: nobody)."""
    directory = Path(environments_dir)
    (env,) = load_environments(directory, [name], environ=environ, allow_missing_secrets=True)
    choice = env.apply_lock or LockChoice()
    (target,) = targets([env])
    return git_lock.read_lock(directory, remote or choice.remote, target)
