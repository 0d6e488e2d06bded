"""Where a run came from: the configuration commit, who ran it, from where, with which tool.

Plan files, the drift report, apply's journal and JSON events record it, so a reader can tell
which reviewed commit a change or a report belongs to. Everything here is read from the
process (git, the CI's own variables, the host) and never fails a run: outside a git
repository, or without git, the commit is simply unknown (None).

    config_commit(Path("environments"))  -> ConfigCommit(sha="3f2c…", dirty=False) | None
    actor(os.environ)                    -> "octocat (github)" | "ana@laptop"
    run_url(os.environ)                  -> "https://github.com/o/r/actions/runs/42" | None
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler._version import __version__

_GIT_TIMEOUT = 10.0  # seconds; a hung git (a network filesystem) must not hang a plan


@dataclass(frozen=True)
class ConfigCommit:
    """`git rev-parse HEAD` of the repository holding the environments directory, and whether
    that directory has uncommitted changes (then the commit is not all of what ran)."""

    sha: str
    dirty: bool

    def __str__(self) -> str:
        return f"{self.sha[:12]}{' (dirty)' if self.dirty else ''}"

    def to_json(self) -> dict[str, object]:
        return {"sha": self.sha, "dirty": self.dirty}


def _git(cwd: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def config_commit(environments_dir: Path) -> ConfigCommit | None:
    """The commit the environments directory is at, or None outside a git work tree."""
    directory = environments_dir if environments_dir.is_dir() else environments_dir.parent
    sha = _git(directory, "rev-parse", "--verify", "--quiet", "HEAD")
    if not sha or not sha.strip():
        return None
    status = _git(directory, "status", "--porcelain", "--untracked-files=normal", "--", ".")
    return ConfigCommit(sha=sha.strip(), dirty=bool(status and status.strip()))


# The CI systems whose variables say who triggered a run and where it can be seen.
_CI_ACTORS: tuple[tuple[str, str], ...] = (
    ("GITHUB_ACTOR", "github"),
    ("GITLAB_USER_LOGIN", "gitlab"),
    ("BUILDKITE_BUILD_CREATOR", "buildkite"),
)


def actor(environ: Mapping[str, str] | None = None) -> str:
    """Who runs this: the CI's actor when a CI says, else user@host."""
    environ = os.environ if environ is None else environ
    for variable, ci in _CI_ACTORS:
        if environ.get(variable):
            return f"{environ[variable]} ({ci})"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container running as a bare uid)
        user = environ.get("USER") or f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def run_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The CI run's page, from the CI's own variables; None outside a known CI."""
    environ = os.environ if environ is None else environ
    server, repository, run_id = (
        environ.get("GITHUB_SERVER_URL"),
        environ.get("GITHUB_REPOSITORY"),
        environ.get("GITHUB_RUN_ID"),
    )
    if server and repository and run_id:
        return f"{server}/{repository}/actions/runs/{run_id}"
    for variable in ("CI_JOB_URL", "CI_PIPELINE_URL", "BUILDKITE_BUILD_URL", "BUILD_URL"):
        if environ.get(variable):
            return environ[variable]
    return None


def tool_version() -> str:
    return __version__


@dataclass(frozen=True)
class Provenance:
    """Where a run came from, as one value: recorded in apply's journal and JSON summary and
    in its git lock, so each names the same commit, actor and CI run."""

    config_commit: ConfigCommit | None
    actor: str
    run_url: str | None
    tool_version: str

    def to_json(self) -> dict[str, object]:
        return {
            "config_commit": self.config_commit.to_json() if self.config_commit else None,
            "actor": self.actor,
            "run_url": self.run_url,
            "tool_version": self.tool_version,
        }


def of_run(environments_dir: Path, environ: Mapping[str, str] | None = None) -> Provenance:
    """The provenance of a run over `environments_dir`, read now from git and the process."""
    return Provenance(
        config_commit(environments_dir), actor(environ), run_url(environ), __version__
    )
