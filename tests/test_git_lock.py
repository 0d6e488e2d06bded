"""The shared apply lock in the configuration repository's own git remote (`--lock git`),
through the real CLI as subprocesses, against the sandbox on 127.0.0.1 and real git: a bare
repository as the remote (file://, and `git daemon` on 127.0.0.1 for the network path), and two
clones standing for two CI runners, each with a local lock directory of its own (so only the
git lock can keep them apart).

A holder is an apply waiting at its confirmation prompt on a pseudo-terminal: it holds its
locks from before its first read until it is answered, however long the test takes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from apply_helpers import FORWARD, ORDER_WEBHOOK_API_KEY, writes
from env_helpers import OFF_YAML, ON_YAML, STOCK_CONFIRMED_YAML
from git_helpers import (
    bare_remote,
    clone,
    commit_files,
    git,
    git_daemon,
    head,
    needs_git,
    ref_message,
    remote_refs,
    seed_repository,
)
from prompt_helpers import WAIT_SECONDS, Holder, at_prompt
from test_apply_events import records

from reconciler.core.journal import read_journal
from reconciler.core.lock import lock_key
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY

pytestmark = [pytest.mark.e2e, needs_git]

Sandbox = tuple[SandboxApp, str]
TENANT = "acme-staging"
SECRETS = {
    "SANDBOX_CLIENT_SECRET": "sandbox-secret",
    "SANDBOX_WEBHOOK_API_KEY": DEFAULT_WEBHOOK_API_KEY,
    "SANDBOX_ORDER_WEBHOOK_API_KEY": ORDER_WEBHOOK_API_KEY,
}
LOCK_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def env_file(base: str, tenant: str, body: str) -> str:
    head_ = (
        f"tenant: {tenant}\nconnection:\n  base_url: {base}/{tenant}\n"
        f"  token_url: {base}/auth/realms/{tenant}/protocol/openid-connect/token\n"
        "  client_id: sandbox\n  client_secret: ${SANDBOX_CLIENT_SECRET}\n  timeout: 5\n"
    )
    return head_ + body.replace("{sandbox}", base)


@dataclass
class Runner:
    """A clone of the configuration repository, as one CI runner or laptop sees it."""

    work: Path
    locks: Path  # its own local lock directory
    name: str

    @property
    def environments(self) -> Path:
        return self.work / "environments"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **SECRETS,
            "RECONCILER_LOCK_DIR": str(self.locks),
            "GITHUB_ACTOR": self.name,  # who, as the lock records it
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "reconciler", "--environments-dir", "environments", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            cwd=self.work,
            env=self.env(),
            timeout=120,
        )

    def start(self, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.work,
            env=self.env(),
        )

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        return commit_files(self.work, files, message)

    def pull(self) -> None:
        git(self.work, "pull", "--quiet", "--ff-only", "origin", "main")

    def push(self) -> None:
        git(self.work, "push", "--quiet", "origin", "HEAD:main")


@dataclass
class Repo:
    remote: Path
    url: str
    base: str  # the sandbox's origin
    tmp: Path

    def runner(self, name: str, *, depth: int | None = None) -> Runner:
        work = clone(self.url, self.tmp / name, depth=depth)
        locks = self.tmp / f"locks-{name}"
        locks.mkdir()
        return Runner(work, locks, name)


def _repo(tmp_path: Path, base: str, url: str | None = None) -> Repo:
    remote = bare_remote(tmp_path / "remote.git")
    url = url or remote.as_uri()
    files = {
        f"environments/{TENANT}.yaml": env_file(base, TENANT, ON_YAML),
        "environments/acme-eu.yaml": env_file(base, "acme-eu", OFF_YAML),
    }
    seed_repository(url, tmp_path / "seed", files)
    return Repo(remote, url, base, tmp_path)


@pytest.fixture
def repo(live_sandbox: Sandbox, tmp_path: Path) -> Repo:
    return _repo(tmp_path, live_sandbox[1])


@contextmanager
def holding(runner: Runner, *args: str) -> Iterator[Holder]:
    """An apply of `runner` waiting at its confirmation prompt, holding its locks."""
    with at_prompt(lambda stdin: runner.start("apply", *args, stdin=stdin)) as holder:
        yield holder


def _lock_ref(base: str) -> str:
    return f"refs/reconciler/locks/{lock_key(f'{base}/{TENANT}')}"


def _applied_ref(base: str) -> str:
    return f"refs/reconciler/applied/{lock_key(f'{base}/{TENANT}')}"


def _lock_about(repo: Repo) -> dict[str, object]:
    message = ref_message(repo.remote, _lock_ref(repo.base))
    title, _, body = message.partition("\n\n")
    assert title.startswith("reconciler apply lock: loopback:")
    about = json.loads(body)
    assert isinstance(about, dict)
    return about


def _one_paragraph_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    err = result.stderr
    assert "Traceback" not in err, err
    assert err.startswith("Error: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err


# --- one lock across runners ---------------------------------------------------------------


def test_a_second_runner_is_refused_naming_the_holder_then_waits_for_it(
    repo: Repo, live_sandbox: Sandbox
) -> None:
    sandbox, base = live_sandbox
    a, b = repo.runner("runner-a"), repo.runner("runner-b")

    with holding(a, TENANT, "--lock", "git", "--journal", "a.jsonl") as holder:
        about = _lock_about(repo)
        lock_id = str(about["lock_id"])
        assert re.fullmatch(LOCK_ID, lock_id)
        assert about["who"] == "runner-a (github)" and about["pid"] == holder.proc.pid
        assert about["config_commit"] == {"sha": head(a.work), "dirty": False}
        assert about["environments"] == [TENANT] and about["ttl_seconds"] is None
        requests = len(sandbox.requests(TENANT))

        refused = b.run("apply", TENANT, "--lock", "git", "--auto-approve", "--journal", "b.jsonl")

        err = _one_paragraph_error(refused)
        assert (
            f"Error: another `reconciler apply` (lock id {lock_id}, by runner-a (github), host "
        ) in err
        assert f"pid {holder.proc.pid}, environment {TENANT}, started " in err
        assert f"config commit {head(a.work)[:12]}, no TTL) holds the git lock of tenant " in err
        assert "nothing was written. Wait for it to finish, or pass --lock-timeout" in err
        assert f"`reconciler unlock {TENANT} --lock-id {lock_id}`" in err
        assert len(sandbox.requests(TENANT)) == requests, "refused before reading the tenant"
        assert not (b.work / "b.jsonl").exists()

        waiting = b.start(
            *("apply", TENANT, "--lock", "git", "--auto-approve", "--lock-timeout", "600"),
            *("--format", "json"),
        )
        assert waiting.stderr is not None
        told = waiting.stderr.readline()
        assert told.startswith(
            f"Waiting up to 600 s for another `reconciler apply` (lock id {lock_id}"
        )
        assert writes(sandbox, TENANT) == []

        out, err = holder.answer("y\n")
        assert holder.proc.returncode == 0, out + err
        out, err = waiting.communicate(timeout=WAIT_SECONDS)

    assert waiting.returncode == 0, out + err
    assert "Nothing to do: the live state already matches." in err
    found = records(out)
    assert [r["type"] for r in found] == [
        "version",
        "lock_waiting",
        "lock_acquired",
        "plan_accepted",
        "commit_recorded",
        "lock_released",
        "summary",
    ]
    assert found[1]["holder"]["lock_id"] == lock_id
    assert found[1]["holder"]["who"] == "runner-a (github)"
    assert found[2]["last_applied"]["commit"] == head(a.work)
    assert found[2]["last_applied"]["who"] == "runner-a (github)"
    assert found[-1]["outcome"] == "nothing_to_do"
    assert writes(sandbox, TENANT) == FORWARD
    refs = remote_refs(repo.remote)
    assert _lock_ref(base) not in refs, "let go"
    record = ref_message(repo.remote, _applied_ref(base))
    assert record.startswith(f"reconciler applied {head(a.work)[:12]} to loopback:")
    assert git(repo.remote, "rev-parse", f"{_applied_ref(base)}^1").strip() == head(a.work)
    (lock,) = read_journal(a.work / "a.jsonl")[0]["locks"]
    assert lock["backend"] == "git" and lock["lock_id"] == lock_id
    assert lock["ref"] == _lock_ref(base) and lock["remote"] == "origin"


def test_a_sigkilled_holders_lock_is_named_and_broken_only_by_unlock_with_its_id(
    repo: Repo, live_sandbox: Sandbox
) -> None:
    sandbox, base = live_sandbox
    a, b = repo.runner("runner-a"), repo.runner("runner-b")
    with holding(a, TENANT, "--lock", "git") as holder:
        lock_id = str(_lock_about(repo)["lock_id"])
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(timeout=WAIT_SECONDS)

    # Dead, but its lock stays: a kill cannot say it is gone, and no TTL was set.
    for _ in range(2):
        refused = b.run("apply", TENANT, "--lock", "git", "--auto-approve")
        err = _one_paragraph_error(refused)
        assert f"(lock id {lock_id}, by runner-a (github)" in err
    assert writes(sandbox, TENANT) == []

    wrong = b.run("unlock", TENANT, "--lock-id", "0000-not-the-id")
    err = _one_paragraph_error(wrong)
    assert f"is held as lock id {lock_id}" in err and "not lock id 0000-not-the-id" in err
    assert _lock_ref(base) in remote_refs(repo.remote)

    broken = b.run("unlock", TENANT, "--lock-id", lock_id)
    assert broken.returncode == 0, broken.stderr
    assert broken.stdout.startswith(f"Unlocked {TENANT}'s tenant: broke lock id {lock_id} (")
    assert _lock_ref(base) not in remote_refs(repo.remote)
    again = b.run("unlock", TENANT, "--lock-id", lock_id)
    assert "has no git apply lock in remote `origin`" in _one_paragraph_error(again)

    applied = b.run("apply", TENANT, "--lock", "git", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert writes(sandbox, TENANT) == FORWARD


def test_a_dead_holders_lock_expires_after_its_ttl(repo: Repo, live_sandbox: Sandbox) -> None:
    sandbox, base = live_sandbox
    a, b = repo.runner("runner-a"), repo.runner("runner-b")
    with holding(a, TENANT, "--lock", "git", "--lock-ttl", "1") as holder:
        about = _lock_about(repo)
        assert about["ttl_seconds"] == 1.0 and str(about["expires"]).endswith("Z")
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(timeout=WAIT_SECONDS)

    result = b.run(
        *("apply", TENANT, "--lock", "git", "--auto-approve", "--lock-timeout", "600"),
        *("--format", "json", "--journal", "b.jsonl"),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    found = records(result.stdout)
    (broken,) = [r for r in found if r["type"] == "lock_broken"]
    assert broken["holder"]["lock_id"] == about["lock_id"]
    (acquired,) = [r for r in found if r["type"] == "lock_acquired"]
    assert acquired["broke_expired"] == [about["lock_id"]]
    assert f"Broke the expired git lock of tenant {TENANT} (lock id {about['lock_id']}" in (
        result.stderr
    )
    assert writes(sandbox, TENANT) == FORWARD
    assert _lock_ref(base) not in remote_refs(repo.remote)


# --- never an older commit over a newer one ------------------------------------------------


def test_an_older_commit_is_refused_once_a_newer_one_was_applied(
    repo: Repo, live_sandbox: Sandbox
) -> None:
    sandbox, base = live_sandbox
    # A shallow clone, as CI checks out (actions/checkout: depth 1).
    old = repo.runner("old", depth=1)
    new = repo.runner("new")
    older = head(old.work)
    back = OFF_YAML + STOCK_CONFIRMED_YAML
    newer = new.commit({f"environments/{TENANT}.yaml": env_file(base, TENANT, back)})
    new.push()

    # The newer commit has nothing to do yet (the tenant is as OFF_YAML says): still recorded.
    done = new.run("apply", TENANT, "--lock", "git", "--auto-approve")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Nothing to do" in done.stdout
    assert f"Recorded {newer[:12]} as the configuration applied to tenant {TENANT}" in done.stdout

    refused = old.run("apply", TENANT, "--lock", "git", "--auto-approve")
    err = _one_paragraph_error(refused)
    assert re.search(
        rf"newer configuration already applied to tenant {TENANT}: {newer[:12]} by new \(github\)"
        rf" at \d{{4}}-\d\d-\d\dT[0-9:]+Z; this checkout is at {older[:12]}, an ancestor of it",
        err,
    ), err
    assert "Nothing was written." in err and "--allow-older-commit" in err
    assert writes(sandbox, TENANT) == []
    assert _lock_ref(base) not in remote_refs(repo.remote), "the refusal let the lock go"

    # The same commit again is no older; a deliberate rollback is allowed and recorded.
    again = new.run("apply", TENANT, "--lock", "git", "--auto-approve")
    assert again.returncode == 0, again.stdout + again.stderr
    rollback = old.run("apply", TENANT, "--lock", "git", "--auto-approve", "--allow-older-commit")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert writes(sandbox, TENANT) == FORWARD
    assert git(repo.remote, "rev-parse", f"{_applied_ref(base)}^1").strip() == older
    # ... and then the newer commit, a descendant, is applied again.
    forward = new.run("apply", TENANT, "--lock", "git", "--auto-approve")
    assert forward.returncode == 0, forward.stdout + forward.stderr
    assert git(repo.remote, "rev-parse", f"{_applied_ref(base)}^1").strip() == newer


def test_a_run_that_failed_records_no_commit(repo: Repo, live_sandbox: Sandbox) -> None:
    sandbox, _ = live_sandbox
    runner = repo.runner("runner")
    sandbox.set_faults([{"method": "POST", "path": f"/{TENANT}/v0/config/routing/uses_external_atp",
                         "status": 400, "times": 1}])  # fmt: skip
    failed = runner.run("apply", TENANT, "--lock", "git", "--auto-approve")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert remote_refs(repo.remote) == {}, "no lock left, no commit recorded"


# --- the setting, and git failures -------------------------------------------------------------


def test_a_base_file_opts_the_repository_in(repo: Repo) -> None:
    runner = repo.runner("runner")
    runner.commit({"environments/_base.yaml": "apply_lock:\n  backend: git\n  ttl_minutes: 30\n"})
    for name in (TENANT, "acme-eu"):
        path = runner.environments / f"{name}.yaml"
        path.write_text("extends: _base.yaml\n" + path.read_text())
    runner.commit({}, "extend the base")

    with holding(runner, TENANT):
        assert _lock_about(repo)["ttl_seconds"] == 1800.0, "the file's lock and its TTL"
        local = runner.run("apply", TENANT, "--lock", "local", "--auto-approve")
        assert local.returncode == 0, "--lock local: this machine's file lock only, not held"

    path = runner.environments / "acme-eu.yaml"
    path.write_text(path.read_text() + "apply_lock: local\n")
    runner.commit({}, "disagree")
    mixed = runner.run("apply", "--auto-approve")
    err = _one_paragraph_error(mixed)
    assert "the environments of this run choose different apply locks" in err
    assert "acme-eu.yaml:" in err and "says local" in err and "says git (remote origin)" in err


def _no_write(sandbox: SandboxApp, result: subprocess.CompletedProcess[str], *words: str) -> None:
    err = _one_paragraph_error(result)
    for word in words:
        assert word in err, err
    assert "nothing was written" in err.lower(), err
    assert sandbox.requests(TENANT) == [] and writes(sandbox, TENANT) == []


def test_every_git_failure_is_one_paragraph_before_any_request(
    repo: Repo, live_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    runner = repo.runner("runner")
    apply = ("apply", TENANT, "--lock", "git", "--auto-approve")

    _no_write(sandbox, runner.run(*apply, "--lock-remote", "upstream"), "has no remote `upstream`")

    git(runner.work, "remote", "set-url", "origin", (tmp_path / "gone.git").as_uri())
    _no_write(sandbox, runner.run(*apply), "cannot take the git lock of tenant", "git push failed")

    # A token in the remote's URL never reaches a message.
    token = "ghp_not-a-real-token-0123456789"
    git(
        runner.work,
        "remote",
        "set-url",
        "origin",
        f"https://x-access-token:{token}@127.0.0.1:9/r.git",
    )
    failed = runner.run(*apply)
    _no_write(sandbox, failed, "git push failed")
    assert token not in failed.stdout + failed.stderr

    outside = tmp_path / "not-a-repository"
    (outside / "environments").mkdir(parents=True)
    (outside / "environments" / f"{TENANT}.yaml").write_text(env_file(base, TENANT, ON_YAML))
    lone = Runner(outside, runner.locks, "lone").run(*apply)
    _no_write(sandbox, lone, "is in no git repository", "Apply from a clone")

    uncommitted = tmp_path / "fresh"
    (uncommitted / "environments").mkdir(parents=True)
    git(uncommitted, "init", "--quiet")
    git(uncommitted, "remote", "add", "origin", repo.url)
    (uncommitted / "environments" / f"{TENANT}.yaml").write_text(env_file(base, TENANT, ON_YAML))
    fresh = Runner(uncommitted, runner.locks, "fresh").run(*apply)
    _no_write(sandbox, fresh, "has no commit yet")


def test_no_push_rights_and_no_network_over_git_daemon(
    live_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    with git_daemon(tmp_path) as served:
        repo = _repo(tmp_path, base, served + "remote.git")
        runner = repo.runner("runner")
    # The daemon is gone: nothing answers at its port.
    _no_write(sandbox, runner.run("apply", TENANT, "--lock", "git", "--auto-approve"),
              "cannot take the git lock", "git push failed")  # fmt: skip

    with git_daemon(tmp_path, push=False) as served:
        git(runner.work, "remote", "set-url", "origin", served + "remote.git")
        _no_write(sandbox, runner.run("apply", TENANT, "--lock", "git", "--auto-approve"),
                  "cannot take the git lock")  # fmt: skip


def test_two_runners_over_git_daemon(live_sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox, base = live_sandbox
    with git_daemon(tmp_path) as served:
        repo = _repo(tmp_path, base, served + "remote.git")
        a, b = repo.runner("runner-a"), repo.runner("runner-b")
        with holding(a, TENANT, "--lock", "git") as holder:
            lock_id = str(_lock_about(repo)["lock_id"])
            refused = b.run("apply", TENANT, "--lock", "git", "--auto-approve")
            assert f"(lock id {lock_id}, by runner-a (github)" in _one_paragraph_error(refused)
            out, err = holder.answer("y\n")
            assert holder.proc.returncode == 0, out + err
        assert writes(sandbox, TENANT) == FORWARD
        assert set(remote_refs(repo.remote)) == {_applied_ref(base)}
