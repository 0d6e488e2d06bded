"""Git, for the shared apply lock: the repository holding the environments directory and one of
its remotes, driven through the `git` program (plumbing commands, read in the C locale).

    GitRemote.open(environments_dir, "origin")   the repository and its remote, or LockError
    remote.commit(message, parent)               a commit of the empty tree (a lock, a record)
    remote.push([RefUpdate(...)])                one push, each ref with its own lease
    remote.read(ref)                             the remote ref's commit (sha, message, parent)
    remote.remote_sha(ref)                       the remote ref's sha, or None (ls-remote)
    remote.is_ancestor(older, newer)

A lease is what makes the lock a lock: `--force-with-lease=<ref>:<expected>` asks the remote
to update the ref only if it still holds `expected` (empty: only if the ref does not exist),
checked by the remote under its ref lock, so of two runners pushing at once exactly one wins.

Every failure is a `LockError` (one paragraph: the remote is named, never its URL, which may
hold a token; git's own words are scrubbed of credentials). Nothing here talks to NewStore.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from reconciler.errors import LockError

GIT_TIMEOUT: Final = 60.0  # seconds per git command; a hung network must not hang apply
_MAX_MESSAGE_BYTES: Final = 16_384  # a commit message another runner wrote: read a bounded amount
_SCRATCH: Final = "refs/reconciler/fetched"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
_WORDS_MAX_CHARS: Final = 300


def scrub(text: str) -> str:
    """git's stderr, fit for a one-paragraph message: no credentials in URLs, no hints, the
    first lines only, on one line."""
    lines = [
        line.strip()
        for line in _USERINFO.sub(r"\1***@", text).splitlines()
        if line.strip() and not line.lstrip().lower().startswith("hint:")
    ]
    joined = " ".join(lines[:4]).rstrip(".")
    return joined if len(joined) <= _WORDS_MAX_CHARS else joined[: _WORDS_MAX_CHARS - 1] + "…"


@dataclass(frozen=True)
class RefUpdate:
    """Set `ref` to `new` (None: delete it) if the remote holds `expected` ("": no such ref)."""

    ref: str
    new: str | None
    expected: str


@dataclass(frozen=True)
class Pushed:
    """What the remote said about one ref of a push: done, or rejected and why."""

    ref: str
    ok: bool
    summary: str  # git's words: "[new reference]", "[rejected] (stale info)", ...


@dataclass(frozen=True)
class RemoteCommit:
    sha: str
    message: str
    parent: str | None


class GitRemote:
    """The repository holding the environments directory, and one of its remotes by name."""

    def __init__(self, git: str, top: Path, remote: str) -> None:
        self.git, self.top, self.remote = git, top, remote

    @property
    def where(self) -> str:
        return f"remote `{self.remote}` of {self.top}"

    @classmethod
    def open(cls, environments_dir: Path, remote: str) -> GitRemote:
        """The repository holding `environments_dir` and its remote `remote`; LockError when
        there is no git, no repository or no such remote."""
        git = shutil.which("git")
        if git is None:
            raise LockError(
                "--lock git needs the `git` program, and there is none on PATH; nothing was "
                "written. Install git, or apply with --lock local on one machine only."
            )
        directory = environments_dir if environments_dir.is_dir() else environments_dir.parent
        found = _run(git, directory, "rev-parse", "--show-toplevel")
        if found.returncode != 0 or not found.stdout.strip():
            raise LockError(
                f"--lock git keeps the lock in the git remote of the repository holding "
                f"{environments_dir}, and {directory} is in no git repository "
                f"({scrub(found.stderr) or 'git rev-parse failed'}); nothing was written. "
                "Apply from a clone of the configuration repository."
            )
        self = cls(git, Path(found.stdout.strip()), remote)
        if self.run("remote", "get-url", "--", remote).returncode != 0:
            raise LockError(
                f"--lock git: the repository {self.top} has no remote `{remote}`; nothing was "
                f"written. Add it (`git remote add {remote} URL`) or name the remote that holds "
                "the configuration with --lock-remote NAME."
            )
        return self

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = GIT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return _run(self.git, self.top, *args, stdin=stdin, timeout=timeout)

    def failed(self, what: str, done: subprocess.CompletedProcess[str]) -> LockError:
        words = scrub(done.stderr) or f"git exited {done.returncode}"
        return LockError(f"{what} ({self.where}): {words}")

    def commit(self, message: str, parent: str | None = None) -> str:
        """A new commit of the empty tree with `message` (and `parent`), in the local
        repository's objects; its sha."""
        tree = self.run("mktree", stdin="")
        if tree.returncode != 0:
            raise self.failed("cannot write a git object for the lock", tree)
        args = ["commit-tree", tree.stdout.strip(), *(["-p", parent] if parent else []), "-F", "-"]
        done = self.run(*args, stdin=message)
        if done.returncode != 0 or not done.stdout.strip():
            raise self.failed("cannot write a git commit for the lock", done)
        return done.stdout.strip()

    def push(self, updates: Sequence[RefUpdate]) -> dict[str, Pushed]:
        """Push every update in one `git push`, each with its lease; what the remote said per
        ref. LockError when git could not push at all (no network, no rights, no remote)."""
        # (Not --quiet: it silences the porcelain lines too.)
        args = ["push", "--porcelain", "--no-verify"]
        args += [f"--force-with-lease={u.ref}:{u.expected}" for u in updates]
        args += ["--", self.remote]
        args += [f"{u.new or ''}:{u.ref}" for u in updates]
        done = self.run(*args)
        said: dict[str, Pushed] = {}
        for line in done.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) < 3 or ":" not in parts[1]:
                continue
            ref = parts[1].rpartition(":")[2]
            said[ref] = Pushed(ref, parts[0].strip() != "!", parts[2].strip())
        if not said and done.returncode != 0:
            raise self.failed("git push failed", done)
        for update in updates:
            fallback = Pushed(update.ref, done.returncode == 0, scrub(done.stderr) or "no answer")
            said.setdefault(update.ref, fallback)
        return said

    def remote_sha(self, ref: str) -> str | None:
        """The sha `ref` has in the remote, or None when it has no such ref."""
        done = self.run("ls-remote", "--refs", "--", self.remote, ref)
        if done.returncode != 0:
            raise self.failed("git ls-remote failed", done)
        for line in done.stdout.splitlines():
            sha, _, name = line.partition("\t")
            if name.strip() == ref:
                return sha.strip()
        return None

    def read(self, ref: str) -> RemoteCommit | None:
        """The commit `ref` points at in the remote (fetched), or None when there is no such
        ref. Fetched into a ref of this process's own (removed again), so that two applies in
        one clone never race on FETCH_HEAD or on a shared ref."""
        scratch = f"{_SCRATCH}/{uuid.uuid4().hex}"
        done = self.run(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--",
            self.remote,
            f"+{ref}:{scratch}",
        )
        if done.returncode != 0:
            if "couldn't find remote ref" in done.stderr:
                return None
            raise self.failed("git fetch failed", done)
        try:
            shown = self.run("cat-file", "commit", scratch)
            sha = self.run("rev-parse", "--verify", "--quiet", scratch).stdout.strip()
        finally:
            self.run("update-ref", "-d", scratch)
        if shown.returncode != 0 or not sha:
            raise self.failed(f"cannot read {ref} as fetched", shown)
        head, _, message = shown.stdout.partition("\n\n")
        parents = [line.split()[1] for line in head.splitlines() if line.startswith("parent ")]
        return RemoteCommit(sha, message[:_MAX_MESSAGE_BYTES], parents[0] if parents else None)

    def is_ancestor(self, older: str, newer: str) -> bool:
        """Whether commit `older` is an ancestor of `newer` (a commit is its own)."""
        done = self.run("merge-base", "--is-ancestor", older, newer)
        if done.returncode in (0, 1):
            return done.returncode == 0
        raise self.failed("git merge-base failed", done)


def _run(
    git: str, cwd: Path, *args: str, stdin: str | None = None, timeout: float = GIT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # Never wait for a password on a terminal nobody watches; read git's words in English.
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        "LANGUAGE": "C",
        # The lock's commits are the tool's; who holds the lock is in their message. Fixed, so
        # that a runner without user.name configured can still write them.
        "GIT_AUTHOR_NAME": "newstore-reconciler",
        "GIT_AUTHOR_EMAIL": "reconciler@localhost",
        "GIT_COMMITTER_NAME": "newstore-reconciler",
        "GIT_COMMITTER_EMAIL": "reconciler@localhost",
    }
    command = [git, "-c", "gc.auto=0", "-c", "maintenance.auto=false", *args]
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LockError(
            f"git {args[0]} did not finish within {timeout:g} s (in {cwd}); nothing was "
            "written. Check the network to the configuration repository's remote."
        ) from None
    except OSError as exc:
        raise LockError(
            f"cannot run git ({exc.strerror or type(exc).__name__}); nothing was written."
        ) from None
