"""The git backend: one `reconciler apply` per tenant at a time on every machine that can push
to the configuration repository's own remote, and never an older commit over a newer one.

    hold(targets, request, on_event)     context manager: every lock of the run, checked
    read_lock(environments_dir, remote, target)    who holds a tenant's lock (None: nobody)
    unlock(environments_dir, remote, target, lock_id)   break it, only with its id

A tenant's lock is the ref `refs/reconciler/locks/<tenant identity>` in the remote, taken by
pushing a commit to it with a lease that it does not exist (`gitremote`: exactly one of two
runners pushing at once wins), and let go by deleting it with a lease on exactly that commit.
The commit's message records the holder as JSON: the lock id, who (the CI's actor or
user@host), where (the CI run's URL, host, pid), the config commit, the plan checksum, when,
and the TTL. A lock whose TTL passed may be broken by the next apply; without a TTL only
`reconciler unlock ENV --lock-id ID` breaks it (Terraform's force-unlock), so a SIGKILLed
holder's lock stays until someone who read its id says so.

Under the locks, each tenant's `refs/reconciler/applied/<tenant identity>` is read: a commit
whose parent is the config commit applied last, its message saying by whom and when. A run
whose config commit is an ancestor of it is refused before any write (unless
`allow_older_commit`). When a tenant's environments were all applied (or had nothing to do),
the run's commit is recorded there, in the same push that lets the lock go.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import socket
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from reconciler._version import __version__
from reconciler.core.lock.base import (
    GIT,
    CommitRecorded,
    Held,
    Holder,
    LockAcquired,
    LockBroken,
    LockReleased,
    LockRequest,
    LockWaiting,
    OnLockEvent,
    Target,
    TenantLock,
    text,
)
from reconciler.core.lock.gitremote import GitRemote, RefUpdate, RemoteCommit
from reconciler.errors import LockError, LockHeldError, OlderCommitError

LOCKS: Final = "refs/reconciler/locks/"
APPLIED: Final = "refs/reconciler/applied/"

_FIRST_POLL = 0.25  # seconds; doubled after every look at a held lock, up to _LAST_POLL
_LAST_POLL = 8.0
_RACES = 5  # pushes refused while no lock is there (another runner's ref update in flight)
# What a remote says when two pushes raced for one ref, or a lease did not hold: try again.
_RACE_WORDS = ("stale info", "failed to update ref", "failed to lock", "fetch first", "exists")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _about(message: str) -> dict[str, Any]:
    """The JSON a lock's or record's commit message carries after its title ({} if none)."""
    _, _, body = message.partition("\n\n")
    try:
        about = json.loads(body)
    except ValueError:
        return {}
    return about if isinstance(about, dict) else {}


def _holder(commit: RemoteCommit) -> Holder:
    about = _about(commit.message)
    pid, commit_of = about.get("pid"), about.get("config_commit")
    environments = about.get("environments")
    sha = text(commit_of.get("sha")) if isinstance(commit_of, dict) else ""
    dirty = " (dirty)" if isinstance(commit_of, dict) and commit_of.get("dirty") is True else ""
    return Holder(
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        hostname=text(about.get("host")),
        environments=text(", ".join(map(str, environments)))
        if isinstance(environments, list)
        else "",
        started=text(about.get("created")),
        lock_id=text(about.get("lock_id")) or f"(unreadable lock {commit.sha[:12]})",
        who=text(about.get("who")),
        run_url=text(about.get("run_url")),
        config_commit=f"{sha[:12]}{dirty}" if sha else "",
        plan_checksum=text(about.get("plan_checksum")),
        expires=text(about.get("expires")),
    )


def _expired(holder: Holder) -> bool:
    if not holder.expires:
        return False
    try:
        expires = datetime.fromisoformat(holder.expires.replace("Z", "+00:00"))
    except ValueError:
        return False  # unreadable: never broken on a guess
    if expires.tzinfo is None:
        return False
    return _now() >= expires


def _unlock_hint(target: Target, holder: Holder) -> str:
    env = target.environments[0] if target.environments else "ENV"
    return (
        "If it is gone for good (a cancelled or killed job), break its lock with "
        f"`reconciler unlock {env} --lock-id {holder.lock_id}`."
    )


def _held_message(target: Target, holder: Holder, timeout: float, remote: GitRemote) -> str:
    who = f"another `reconciler apply` ({holder.describe()})"
    if timeout > 0:
        return (
            f"{who} still holds the git lock of tenant {target.tenant} in {remote.where} after "
            f"{timeout:g} s of waiting; nothing was written. Wait for it to finish, or pass a "
            f"longer --lock-timeout SECONDS. {_unlock_hint(target, holder)}"
        )
    return (
        f"{who} holds the git lock of tenant {target.tenant} in {remote.where}; nothing was "
        "written. Wait for it to finish, or pass --lock-timeout SECONDS to wait for it. "
        f"{_unlock_hint(target, holder)}"
    )


class _GitHeld:
    """The git locks of one run: taken one by one, checked, let go in one push."""

    def __init__(self, remote: GitRemote, request: LockRequest, on_event: OnLockEvent) -> None:
        self.remote, self.request, self.on_event = remote, request, on_event
        self.taken: list[tuple[Target, str, TenantLock]] = []  # target, lock commit, record
        self.last: dict[str, str] = {}  # target key -> sha of its applied record ("": none)
        self.to_record: set[str] = set()
        self.problem = ""

    @property
    def locks(self) -> list[TenantLock]:
        return [lock for _, _, lock in self.taken]

    def record_applied(self, keys: Collection[str]) -> None:
        self.to_record |= set(keys)

    @property
    def release_problem(self) -> str:
        return self.problem

    # -- taking ----------------------------------------------------------------------------

    def _lock_message(self, target: Target, lock_id: str, created: datetime) -> str:
        ttl = self.request.ttl_seconds
        commit = self.request.config_commit
        about = {
            "lock_id": lock_id,
            "tenant": target.tenant,
            "identity": target.identity,
            "environments": list(target.environments),
            "who": self.request.actor,
            "run_url": self.request.run_url,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "config_commit": commit.to_json() if commit is not None else None,
            "plan_checksum": self.request.plan_checksum,
            "created": _iso(created),
            "ttl_seconds": ttl,
            "expires": _iso(created + timedelta(seconds=ttl)) if ttl is not None else None,
            "tool_version": __version__,
        }
        return f"reconciler apply lock: {target.identity}\n\n{json.dumps(about, indent=1)}\n"

    def take(self, target: Target) -> None:
        ref = LOCKS + target.key
        lock_id = str(uuid.uuid4())
        mine = self.remote.commit(self._lock_message(target, lock_id, _now()))
        try:
            waited, broke = self._acquire(target, ref, mine)
        except LockHeldError:
            raise
        except LockError as exc:
            # A push that timed out may have landed: then the lock is this run's, and stays.
            landed = (
                " If the push reached the remote after all, its lock is yours: `reconciler "
                f"unlock {target.environments[0]} --lock-id {lock_id}`."
                if "did not finish within" in exc.message
                else ""
            )
            raise LockError(
                f"cannot take the git lock of tenant {target.tenant}: {exc.message}; nothing "
                "was written. Check that the remote can be reached and that this clone may "
                f"push to {LOCKS}* (in CI: a token with write access to the repository).{landed}"
            ) from None
        lock = TenantLock(
            target.tenant,
            target.environments,
            None,
            True,
            waited_seconds=waited,
            backend=GIT,
            lock_id=lock_id,
            ref=ref,
            remote=self.remote.remote,
            broke=tuple(broke),
        )
        self.taken.append((target, mine, lock))

    def _acquire(self, target: Target, ref: str, mine: str) -> tuple[float, list[str]]:
        """Push `mine` to `ref` until it is there; (seconds waited, lock ids broken)."""
        timeout = self.request.timeout
        started = time.monotonic()
        told, races = False, 0
        broke: list[str] = []
        delay = _FIRST_POLL
        while True:
            pushed = self.remote.push([RefUpdate(ref, mine, "")])[ref]
            if pushed.ok:
                return time.monotonic() - started, broke
            current = self.remote.read(ref)
            if current is None or current.sha == mine:
                if current is not None:
                    return time.monotonic() - started, broke  # it landed; the answer did not
                races += 1
                if races > _RACES or not any(w in pushed.summary for w in _RACE_WORDS):
                    raise LockError(f"the remote refused the push of {ref}: {pushed.summary}")
                continue
            holder = _holder(current)
            if _expired(holder):
                gone = self.remote.push([RefUpdate(ref, None, current.sha)])[ref]
                if gone.ok:
                    self.on_event(LockBroken(target.tenant, holder))
                    broke.append(holder.lock_id)
                continue
            while True:
                waited = time.monotonic() - started
                if waited >= timeout:
                    raise LockHeldError(_held_message(target, holder, timeout, self.remote))
                if not told:
                    self.on_event(LockWaiting(target.tenant, holder, timeout, GIT))
                    told = True
                # Jittered, so that runners waiting on one lock do not push in step.
                time.sleep(min(delay * random.uniform(0.8, 1.2), timeout - waited))
                delay = min(delay * 2, _LAST_POLL)
                if self.remote.remote_sha(ref) != current.sha or _expired(holder):
                    break  # let go, taken by another, or expired: push again

    # -- the older-commit check ------------------------------------------------------------

    def check_not_older(self, target: Target, lock: TenantLock) -> TenantLock:
        """Refuse (LockError) when the run's commit is an ancestor of the one last applied to
        the tenant; returns `lock` saying what was applied last."""
        record = self.remote.read(APPLIED + target.key)
        self.last[target.key] = record.sha if record is not None else ""
        if record is None or record.parent is None:
            return lock
        about = _about(record.message)
        applied = record.parent
        last = {
            "commit": applied,
            "who": text(about.get("who")),
            "when": text(about.get("when")),
            "run_url": text(about.get("run_url")) or None,
        }
        lock = dataclasses.replace(lock, last_applied=last)
        head = self.request.config_commit.sha if self.request.config_commit else None
        if head is None or head == applied or not self.remote.is_ancestor(head, applied):
            return lock
        if self.request.allow_older_commit:
            return lock
        by = f" by {last['who']}" if last["who"] else ""
        when = f" at {last['when']}" if last["when"] else ""
        run = f" ({last['run_url']})" if last["run_url"] else ""
        raise OlderCommitError(
            f"newer configuration already applied to tenant {target.tenant}: {applied[:12]}"
            f"{by}{when}{run}; this checkout is at {head[:12]}, an ancestor of it, so applying "
            "it would put older settings over newer ones. Nothing was written. Apply the newer "
            "commit (pull first), revert in a new commit, or pass --allow-older-commit to "
            "apply this one anyway."
        )

    # -- letting go ------------------------------------------------------------------------

    def _record_message(self, target: Target, lock: TenantLock, head: str) -> str:
        commit = self.request.config_commit
        about = {
            "commit": head,
            "dirty": bool(commit and commit.dirty),
            "tenant": target.tenant,
            "identity": target.identity,
            "environments": list(target.environments),
            "who": self.request.actor,
            "run_url": self.request.run_url,
            "host": socket.gethostname(),
            "when": _iso(_now()),
            "lock_id": lock.lock_id,
            "plan_checksum": self.request.plan_checksum,
            "tool_version": __version__,
        }
        title = f"reconciler applied {head[:12]} to {target.identity}"
        return f"{title}\n\n{json.dumps(about, indent=1)}\n"

    def let_go(self) -> None:
        """Delete every lock ref this run took (each with a lease on its own commit) and
        record the applied commit where asked, in one push. A failure is kept in
        `problem` and told as a LockReleased event; it never raises."""
        if not self.taken:
            return
        updates: list[RefUpdate] = []
        records: dict[str, tuple[Target, str]] = {}
        head = self.request.config_commit.sha if self.request.config_commit else None
        try:
            for target, mine, lock in self.taken:
                if head is not None and target.key in self.to_record and target.key in self.last:
                    record = self.remote.commit(self._record_message(target, lock, head), head)
                    ref = APPLIED + target.key
                    updates.append(RefUpdate(ref, record, self.last[target.key]))
                    records[ref] = (target, head)
                updates.append(RefUpdate(lock.ref, None, mine))
            said = self.remote.push(updates)
        except LockError as exc:
            said = {}
            self.problem = exc.message
        problems = [self.problem] if self.problem else []
        for ref, (target, commit) in records.items():
            pushed = said.get(ref)
            if pushed is not None and pushed.ok:
                self.on_event(CommitRecorded(target.tenant, commit, ref))
            elif pushed is not None:
                problems.append(f"the applied commit of {target.tenant} was not recorded in {ref}")
        for target, _, lock in self.taken:
            pushed = said.get(lock.ref)
            problem = ""
            if pushed is None or not pushed.ok:
                why = pushed.summary if pushed is not None else self.problem
                problem = (
                    f"the git lock of tenant {target.tenant} (lock id {lock.lock_id}) could not "
                    f"be let go ({why}): it stays until `reconciler unlock "
                    f"{target.environments[0]} --lock-id {lock.lock_id}` (or its TTL)"
                )
                problems.append(problem)
            with contextlib.suppress(Exception):  # a report; the outcome is `problem`
                self.on_event(LockReleased(target.tenant, GIT, lock.lock_id, problem))
        self.problem = "; ".join(dict.fromkeys(problems))


@contextlib.contextmanager
def hold(targets: Sequence[Target], request: LockRequest, on_event: OnLockEvent) -> Iterator[Held]:
    """Take every target's git lock in key order (waiting up to `request.timeout` s for a
    held one), refuse a commit older than the one applied last, and hold them for the block;
    then record the commit for the tenants `record_applied` named and let every lock go.
    Raises LockError, before any write, naming the holder or what git said."""
    remote = GitRemote.open(request.environments_dir, request.remote)
    if request.config_commit is None:
        raise LockError(
            f"--lock git records the configuration commit it applies, and {remote.top} has no "
            "commit yet; nothing was written. Commit the environment files first."
        )
    held = _GitHeld(remote, request, on_event)
    try:
        for target in targets:
            held.take(target)
        for index, (target, mine, lock) in enumerate(held.taken):
            lock = held.check_not_older(target, lock)
            held.taken[index] = (target, mine, lock)
            on_event(LockAcquired(lock))
        yield held
    finally:
        held.let_go()


def _target_remote(environments_dir: Path, remote: str, target: Target) -> tuple[GitRemote, str]:
    return GitRemote.open(environments_dir, remote), LOCKS + target.key


def read_lock(environments_dir: Path, remote: str, target: Target) -> Holder | None:
    """Who holds `target`'s git lock, or None when nobody does."""
    git, ref = _target_remote(environments_dir, remote, target)
    current = git.read(ref)
    return _holder(current) if current is not None else None


def unlock(environments_dir: Path, remote: str, target: Target, lock_id: str) -> Holder:
    """Break `target`'s git lock if its id is `lock_id` (with a lease on exactly that lock);
    the holder it had. LockError when there is no lock, another id, or git fails."""
    git, ref = _target_remote(environments_dir, remote, target)
    current = git.read(ref)
    if current is None:
        raise LockError(
            f"tenant {target.tenant} has no git apply lock in {git.where}: nothing to unlock."
        )
    holder = _holder(current)
    if holder.lock_id != lock_id:
        raise LockError(
            f"the git lock of tenant {target.tenant} in {git.where} is held as "
            f"{holder.describe()}, not lock id {lock_id}: nothing was unlocked. Give the id "
            "its holder's messages name (an apply that is still running holds it rightly)."
        )
    pushed = git.push([RefUpdate(ref, None, current.sha)])[ref]
    if not pushed.ok:
        raise LockError(
            f"the git lock of tenant {target.tenant} changed while it was being broken "
            f"({pushed.summary}): nothing was unlocked. Look again: it may be let go already."
        )
    return holder
