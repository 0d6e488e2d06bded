"""Real git for the shared apply lock's tests: a bare repository standing for the configuration
repository's remote, served over file:// or by `git daemon` on 127.0.0.1, and clones of it
standing for CI runners and laptops.

    remote = bare_remote(tmp_path / "remote.git")
    url = remote.as_uri()                          # file://
    with git_daemon(tmp_path) as base: ...         # git://127.0.0.1:PORT/ (base + "remote.git")
    runner = clone(url, tmp_path / "runner-a")     # a checkout with environments/ committed
"""

from __future__ import annotations

import os
import shutil
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

GIT = shutil.which("git")


def _exec_path() -> Path:
    """Where git keeps its programs (`git --exec-path`; /usr/lib/git-core on Debian)."""
    if GIT is None:
        return Path("/usr/lib/git-core")
    done = subprocess.run([GIT, "--exec-path"], capture_output=True, text=True, timeout=60)
    return Path(done.stdout.strip() or "/usr/lib/git-core")


GIT_CORE = _exec_path()
needs_git = pytest.mark.skipif(GIT is None, reason="needs the git program")

_IDENTITY = ("-c", "user.name=test", "-c", "user.email=test@example.invalid")


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` (an identity given, no prompts); its stdout. Fails the test on error."""
    assert GIT is not None
    done = subprocess.run(
        [GIT, *_IDENTITY, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        timeout=120,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def bare_remote(path: Path) -> Path:
    """An empty bare repository at `path` (the remote every runner pushes its locks to)."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--bare", "--initial-branch=main")
    return path


def seed_repository(remote_url: str, work: Path, files: dict[str, str]) -> str:
    """Clone `remote_url` into `work`, commit `files` (relative path -> text) on main and push
    it; the commit's sha."""
    git(work.parent, "clone", "--quiet", remote_url, work.name)
    commit_files(work, files, "the configuration")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    return head(work)


def clone(remote_url: str, dest: Path, *, depth: int | None = None) -> Path:
    args = ["clone", "--quiet", *(["--depth", str(depth)] if depth else []), remote_url, dest.name]
    git(dest.parent, *args)
    return dest


def commit_files(work: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "--allow-empty", "-m", message)
    return head(work)


def head(work: Path) -> str:
    return git(work, "rev-parse", "HEAD").strip()


def remote_refs(remote: Path, prefix: str = "refs/reconciler/") -> dict[str, str]:
    """The refs under `prefix` in the bare repository: name -> sha."""
    out = git(remote, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
    return dict(line.split() for line in out.splitlines())


def ref_message(remote: Path, ref: str) -> str:
    return git(remote, "log", "-1", "--format=%B", ref)


@contextmanager
def git_daemon(base: Path, *, push: bool = True) -> Iterator[str]:
    """`git daemon` serving every repository under `base` on 127.0.0.1 (a free port), pushes
    allowed unless `push` is False; yields its base URL, `git://127.0.0.1:PORT/`.

    The daemon runs in inetd mode, one per connection, behind a socket server of ours: the
    port is the kernel's free one, with no race between choosing and binding it."""
    daemon = GIT_CORE / "git-daemon"
    if not daemon.exists():
        pytest.skip(f"needs git daemon ({daemon})")
    services = ["--enable=receive-pack"] if push else ["--disable=receive-pack"]
    command = [
        str(daemon),
        "--inetd",
        "--export-all",
        f"--base-path={base}",
        *services,
        str(base),
    ]

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            connection: socket.socket = self.request
            subprocess.run(
                command,
                stdin=connection.fileno(),
                stdout=connection.fileno(),
                stderr=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"git://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
