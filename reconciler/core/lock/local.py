"""The local backend: one `reconciler apply` per tenant at a time on this machine, an advisory
file lock.

A lock is `flock(LOCK_EX | LOCK_NB)` on `<lock dir>/apply-<key>.lock`, where the key is the
tenant's identity (`reconciler.identity`: canonical host and path of `base_url`, so
`localhost`, `127.0.0.1`, `LOCALHOST.` and a default port are one tenant), readable and with a
hash of the exact identity: different tenants never share a file, every spelling of one tenant
does, and the name carries no secret. The kernel drops the lock when its holder exits, however
it exits, so a SIGKILLed apply never leaves a stale lock. The file holds the holder's pid,
host, environments and start time, for the message its competitors show. It only guards
applies that share a lock directory: the default (`$XDG_RUNTIME_DIR` or the temporary
directory, + `newstore-reconciler-locks`) is one per machine and user, `RECONCILER_LOCK_DIR`
chooses another. Across machines, the git backend (`git.py`) is the one to use.

    hold(targets, request, on_event)   context manager: every lock of the run
    lock_directory(environ)            where the lock files live
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

from reconciler.clock import now_iso
from reconciler.core.lock.base import (
    LOCAL,
    SKIPPED_UNSUPPORTED,
    Held,
    Holder,
    LockAcquired,
    LockReleased,
    LockRequest,
    LockWaiting,
    OnLockEvent,
    SimpleHeld,
    Target,
    TenantLock,
    text,
)
from reconciler.errors import ConfigError, LockHeldError

LOCK_DIR_VARIABLE: Final = "RECONCILER_LOCK_DIR"
DEFAULT_DIR_NAME: Final = "newstore-reconciler-locks"

_POLL_SECONDS = 0.1
_HOLDER_MAX_BYTES = 4096  # the file is written by another process: read a bounded amount


def lock_directory(environ: Mapping[str, str] | None = None) -> Path:
    """`$RECONCILER_LOCK_DIR`, else `$XDG_RUNTIME_DIR` or the temporary directory, plus
    `newstore-reconciler-locks`."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(LOCK_DIR_VARIABLE)
    if chosen:
        return Path(chosen)
    return Path(environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / DEFAULT_DIR_NAME


def _fcntl() -> ModuleType | None:
    try:
        # lazy: not on every platform (Windows has no fcntl)
        import fcntl
    except ImportError:
        return None
    return fcntl


@contextlib.contextmanager
def hold(targets: Sequence[Target], request: LockRequest, on_event: OnLockEvent) -> Iterator[Held]:
    """Hold the apply lock of every target, in key order, for the `with` block.

    A lock held by another apply is waited for up to `request.timeout` seconds (0: not at
    all), then ApplyError naming the holder, with every lock taken so far released. A
    platform without fcntl takes no lock and says so in the records. Raises ConfigError when
    the lock directory or a lock file cannot be used.
    """
    directory = lock_directory() if request.directory is None else request.directory
    fcntl = _fcntl()
    if fcntl is None:
        yield SimpleHeld(
            [
                TenantLock(
                    t.tenant, t.environments, _file(directory, t), False, SKIPPED_UNSUPPORTED
                )
                for t in targets
            ]
        )
        return
    if targets:
        _make_directory(directory)
    records: list[TenantLock] = []
    try:
        with contextlib.ExitStack() as held:
            for target in targets:
                path = _file(directory, target)
                fd, waited = _acquire(fcntl, path, target, request.timeout, on_event)
                held.callback(_release, fd)
                lock = TenantLock(target.tenant, target.environments, path, True, "", waited)
                records.append(lock)
                on_event(LockAcquired(lock))
            yield SimpleHeld(records)
    finally:
        for lock in records:
            with contextlib.suppress(Exception):  # a report of what the kernel did anyway
                on_event(LockReleased(lock.tenant, LOCAL))


def _file(directory: Path, target: Target) -> Path:
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
    fcntl: ModuleType, path: Path, target: Target, timeout: float, on_event: OnLockEvent
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
                    raise LockHeldError(_held_message(target, holder, timeout)) from None
                if not told:
                    on_event(LockWaiting(target.tenant, holder, timeout, LOCAL))
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
        text(about.get("hostname")),
        text(", ".join(map(str, environments)) if isinstance(environments, list) else ""),
        text(about.get("started")),
    )


def _held_message(target: Target, holder: Holder, timeout: float) -> str:
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
