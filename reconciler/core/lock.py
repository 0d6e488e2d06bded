"""One `reconciler apply` per tenant at a time on this machine: an advisory file lock.

NewStore offers no locks, ETags or conditional writes, so two applies of one tenant at once can
land a write between the other's re-read and its write (RELIABILITY.md, Limits). Like
Terraform's state lock, apply therefore holds an exclusive lock per tenant API from before its
first read until its last write:

    tenant_locks(envs, timeout=, enabled=, on_wait=)   context manager: every lock of the run
    lock_directory(environ)                            where the lock files live
    lock_key(base_url)                                 which file a tenant API locks

A lock is `flock(LOCK_EX | LOCK_NB)` on `<lock dir>/apply-<key>.lock`, where the key is the
tenant's identity (`reconciler.identity`: canonical host and path of `base_url`, so
`localhost`, `127.0.0.1`, `LOCALHOST.` and a default port are one tenant), readable and with a
hash of the exact identity: different tenants never share a file, every spelling of one tenant
does, and the name carries no secret. The kernel drops the lock when its holder exits, however
it exits, so a SIGKILLed apply never leaves a stale lock. The file holds the holder's pid,
host, environments and start time, for the message its competitors show. It only guards
applies that share a lock directory: the default (`$XDG_RUNTIME_DIR` or the temporary
directory, + `newstore-reconciler-locks`) is one per machine and user, `RECONCILER_LOCK_DIR`
chooses another.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from reconciler.clock import now_iso
from reconciler.errors import ApplyError, ConfigError
from reconciler.identity import tenant_identity
from reconciler.model import Environment

LOCK_DIR_VARIABLE: Final = "RECONCILER_LOCK_DIR"
DEFAULT_DIR_NAME: Final = "newstore-reconciler-locks"

SKIPPED_BY_FLAG: Final = "--no-lock was given"
SKIPPED_UNSUPPORTED: Final = "this platform has no fcntl file locks"

_POLL_SECONDS = 0.1
_HOLDER_MAX_BYTES = 4096  # the file is written by another process: read a bounded amount
_FIELD_MAX_CHARS = 200


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its file says (fields are "" / None when it could not be read:
    the holder may be between taking the lock and writing the file)."""

    pid: int | None
    hostname: str
    environments: str
    started: str

    def describe(self) -> str:
        parts = [f"pid {self.pid}" if self.pid is not None else "pid unknown"]
        if self.environments:
            parts.append(f"environment {self.environments}")
        if self.started:
            parts.append(f"started {self.started}")
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
    file: Path
    acquired: bool
    skipped_because: str = ""
    waited_seconds: float = 0.0

    def journal_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "tenant": self.tenant,
            "environments": list(self.environments),
            "result": "acquired" if self.acquired else "skipped",
        }
        if self.acquired:
            fields["file"] = str(self.file)
            fields["waited_seconds"] = round(self.waited_seconds, 3)
        else:
            fields["reason"] = self.skipped_because
        return fields


OnWait = Callable[[str, Holder, float], None]
"""Called once per lock that is held by another apply when `timeout` > 0:
(tenant, holder, timeout in seconds)."""


def _ignore(tenant: str, holder: Holder, timeout: float) -> None:
    pass


def lock_directory(environ: Mapping[str, str] | None = None) -> Path:
    """`$RECONCILER_LOCK_DIR`, else `$XDG_RUNTIME_DIR` or the temporary directory, plus
    `newstore-reconciler-locks`."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(LOCK_DIR_VARIABLE)
    if chosen:
        return Path(chosen)
    return Path(environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / DEFAULT_DIR_NAME


def lock_key(base_url: str) -> str:
    """The name part of a tenant API's lock file: its identity (`TenantIdentity.ref_name`), so
    that every spelling of one API shares a lock. (Config refuses a URL with credentials in
    it, so nothing secret is in the name.)"""
    return tenant_identity(base_url).ref_name


def _fcntl() -> ModuleType | None:
    try:
        # lazy: not on every platform (Windows has no fcntl)
        import fcntl
    except ImportError:
        return None
    return fcntl


@dataclass(frozen=True)
class _Target:
    key: str
    tenant: str
    environments: tuple[str, ...]


def _targets(envs: Sequence[Environment]) -> list[_Target]:
    """One lock per tenant API, sorted by key: every run takes them in the same order, so two
    runs that share several tenants cannot each hold one the other waits for."""
    grouped: dict[str, list[Environment]] = {}
    for env in envs:
        grouped.setdefault(lock_key(env.connection.base_url), []).append(env)
    return [
        _Target(
            key,
            ", ".join(dict.fromkeys(env.tenant for env in grouped[key])),
            tuple(env.name for env in grouped[key]),
        )
        for key in sorted(grouped)
    ]


@contextlib.contextmanager
def tenant_locks(
    envs: Sequence[Environment],
    *,
    timeout: float = 0.0,
    enabled: bool = True,
    directory: Path | None = None,
    on_wait: OnWait = _ignore,
) -> Iterator[list[TenantLock]]:
    """Hold the apply lock of every tenant API `envs` use, in key order, for the `with` block;
    yields what was done per tenant (for the journal).

    A lock held by another apply is waited for up to `timeout` seconds (0: not at all), then
    ApplyError naming the holder, with every lock taken so far released. `enabled=False`
    (--no-lock), or a platform without fcntl, takes no lock and says so in the records.
    Raises ConfigError when the lock directory or a lock file cannot be used.
    """
    directory = lock_directory() if directory is None else directory
    targets = _targets(envs)
    fcntl = _fcntl() if enabled else None
    if fcntl is None:
        why = SKIPPED_BY_FLAG if not enabled else SKIPPED_UNSUPPORTED
        yield [
            TenantLock(t.tenant, t.environments, _file(directory, t), False, why) for t in targets
        ]
        return
    if targets:
        _make_directory(directory)
    with contextlib.ExitStack() as held:
        records = []
        for target in targets:
            path = _file(directory, target)
            fd, waited = _acquire(fcntl, path, target, timeout, on_wait)
            held.callback(_release, fd)
            records.append(TenantLock(target.tenant, target.environments, path, True, "", waited))
        yield records


def _file(directory: Path, target: _Target) -> Path:
    return directory / f"apply-{target.key}.lock"


def _unusable(what: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot use the apply lock file {what}: {exc.strerror or type(exc).__name__}; nothing "
        f"was written. Point {LOCK_DIR_VARIABLE} at a directory you can write, or pass "
        "--no-lock if you are sure no other apply of these tenants runs."
    )


def _make_directory(directory: Path) -> None:
    try:
        # Private when we create it: a lock directory in a shared /tmp is per user.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(directory, exc) from None


def _acquire(
    fcntl: ModuleType, path: Path, target: _Target, timeout: float, on_wait: OnWait
) -> tuple[int, float]:
    """The open, locked file descriptor of `path`, and the seconds spent waiting for it."""
    try:
        # No O_TRUNC: the file holds the current holder's details until we hold the lock.
        # O_NOFOLLOW: a symlink planted in a shared directory must not redirect the write.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:
        raise _unusable(path, exc) from None
    try:
        started = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                waited = time.monotonic() - started
                if waited >= timeout:
                    raise ApplyError(_held_message(target, holder, timeout)) from None
                if not told:
                    on_wait(target.tenant, holder, timeout)
                    told = True
                time.sleep(min(_POLL_SECONDS, timeout - waited))
        waited = time.monotonic() - started
        about = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "environments": list(target.environments),
            "tenant": target.tenant,
            "started": now_iso(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(about) + "\n").encode("utf-8"), 0)
    except OSError as exc:
        os.close(fd)
        raise _unusable(path, exc) from None
    except BaseException:
        os.close(fd)
        raise
    return fd, waited


def _release(fd: int) -> None:
    try:
        # Emptied first so the file never names a finished run as its holder.
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the last descriptor is what drops a flock


def _holder(fd: int) -> Holder:
    try:
        about = json.loads(os.pread(fd, _HOLDER_MAX_BYTES, 0))
    except (OSError, ValueError):
        about = None
    if not isinstance(about, dict):
        return Holder(None, "", "", "")
    pid = about.get("pid")
    environments = about.get("environments")
    return Holder(
        pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        _text(about.get("hostname")),
        _text(", ".join(map(str, environments)) if isinstance(environments, list) else ""),
        _text(about.get("started")),
    )


def _text(value: Any) -> str:
    """A field another process wrote, fit for a one-line message."""
    if not isinstance(value, str):
        return ""
    return "".join(c for c in value if c.isprintable())[:_FIELD_MAX_CHARS]


def _held_message(target: _Target, holder: Holder, timeout: float) -> str:
    who = f"another `reconciler apply` ({holder.describe()})"
    where = holder.where()
    if timeout > 0:
        return (
            f"{who} is still applying tenant {target.tenant} {where} after {timeout:g} s of "
            "waiting; nothing was written. Wait for it to finish, or pass a longer "
            "--lock-timeout SECONDS."
        )
    return (
        f"{who} is applying tenant {target.tenant} {where}; nothing was written. Wait for "
        "it to finish, or pass --lock-timeout SECONDS to wait for it."
    )
