"""The per-tenant apply lock, through real CLI subprocesses against the sandbox on 127.0.0.1.

The holder is an apply waiting at its confirmation prompt on a pseudo-terminal: it holds the
lock from before its first read until it is answered, however long the test takes, so no case
depends on timing. Each test locks in its own directory (conftest sets RECONCILER_LOCK_DIR).
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
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import FORWARD, writes
from env_helpers import ON_YAML, WriteEnv, run_cli, run_cli_process
from prompt_helpers import WAIT_SECONDS, Holder, at_prompt, read_until

from reconciler.core.journal import read_journal
from reconciler.core.lock import lock_directory, lock_key
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY

pytestmark = pytest.mark.e2e

Sandbox = tuple[SandboxApp, str]
TENANT = "acme-staging"


def _start(directory: Path, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--environments-dir", str(directory), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=directory.parent,
        env=os.environ.copy(),
    )


@contextmanager
def _holding(directory: Path, *args: str) -> Iterator[Holder]:
    with at_prompt(lambda stdin: _start(directory, "apply", *args, stdin=stdin)) as holder:
        yield holder


def _refused(result: subprocess.CompletedProcess[str], holder: Holder, tenant: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    err = result.stderr
    assert re.fullmatch(
        rf"Error: another `reconciler apply` \(pid {holder.proc.pid}, environment {tenant}, "
        rf"started \d{{4}}-\d\d-\d\dT[0-9:.]+Z\) is applying tenant {tenant} from this "
        r"machine; nothing was written\. Wait for it to finish, or pass --lock-timeout "
        r"SECONDS to wait for it\.\n",
        err,
    ), err


def _start_line(journal: Path) -> dict[str, Any]:
    start = read_journal(journal)[0]
    assert start["phase"] == "start"
    return start


def test_a_second_apply_is_refused_at_once_and_reads_nothing(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    with _holding(directory, "--journal", "a.jsonl") as holder:
        requests = len(sandbox.requests(TENANT))

        second = run_cli_process(directory, "apply", "--auto-approve", "--journal", "b.jsonl")

        _refused(second, holder, TENANT)
        assert len(sandbox.requests(TENANT)) == requests, "refused before reading the tenant"
        assert not (tmp_path / "b.jsonl").exists()

        reviewed = tmp_path / "reviewed.json"
        assert run_cli(directory, "plan", "--out", str(reviewed)).exit_code == 0, "plan: no lock"
        assert run_cli(directory, "drift").exit_code == 2, "drift takes no lock either"
        from_file = run_cli(directory, "apply", "--plan", str(reviewed), "--auto-approve")
        assert from_file.exit_code == 1
        assert f"is applying tenant {TENANT} from this machine" in from_file.stderr
        assert writes(sandbox, TENANT) == []

        out, err = holder.answer("y\n")

    assert holder.proc.returncode == 0, out + err
    assert writes(sandbox, TENANT) == FORWARD
    (lock,) = _start_line(tmp_path / "a.jsonl")["locks"]
    assert lock["result"] == "acquired" and lock["environments"] == [TENANT]
    assert lock["file"] == str(lock_directory() / f"apply-{lock_key(f'{base}/{TENANT}')}.lock")


def test_lock_timeout_waits_for_the_holder_then_finds_the_work_done(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    with _holding(directory, "--journal", "a.jsonl") as holder:
        short = run_cli_process(directory, "apply", "--auto-approve", "--lock-timeout", "0.3")
        assert short.returncode == 1
        told, error = short.stderr.splitlines()
        assert told.startswith("Waiting up to 0.3 s for another `reconciler apply`"), told
        assert error.startswith(
            f"Error: another `reconciler apply` (pid {holder.proc.pid}, environment {TENANT}"
        )
        assert (
            f"is still applying tenant {TENANT} from this machine after 0.3 s of waiting; "
            "nothing was written. Wait for it to finish, or pass a longer --lock-timeout"
        ) in error

        waiting = _start(directory, "apply", "--auto-approve", "--lock-timeout", "600")
        told = read_until(waiting.stderr, "…", waiting)
        assert told.startswith(
            f"Waiting up to 600 s for another `reconciler apply` (pid {holder.proc.pid}, "
            f"environment {TENANT}, started "
        ), told
        assert writes(sandbox, TENANT) == []

        out, err = holder.answer("y\n")
        assert holder.proc.returncode == 0, out + err
        out, err = waiting.communicate(timeout=WAIT_SECONDS)

    # It planned only once the holder had written everything and let go: nothing left to do.
    assert waiting.returncode == 0, out + err
    assert "Nothing to do: the live state already matches." in out
    assert writes(sandbox, TENANT) == FORWARD


def test_a_killed_holder_leaves_no_stale_lock(live_sandbox: Sandbox, write_env: WriteEnv) -> None:
    sandbox, base = live_sandbox
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    with _holding(directory) as holder:
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(timeout=WAIT_SECONDS)

        result = run_cli_process(directory, "apply", "--auto-approve", "--journal", "b.jsonl")

    assert result.returncode == 0, result.stdout + result.stderr
    assert writes(sandbox, TENANT) == FORWARD


def test_no_lock_bypasses_the_lock_and_the_journal_says_so(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    with _holding(directory, "--journal", "a.jsonl") as holder:
        bypass = run_cli_process(
            directory, "apply", "--auto-approve", "--no-lock", "--journal", "b.jsonl"
        )
        assert bypass.returncode == 0, bypass.stdout + bypass.stderr
        assert writes(sandbox, TENANT) == FORWARD

        # The holder planned before the bypass wrote: each step's re-read finds it done.
        out, err = holder.answer("y\n")

    assert holder.proc.returncode == 0, out + err
    assert out.count("… already done, skipped") == 5, out
    assert writes(sandbox, TENANT) == FORWARD
    assert _start_line(tmp_path / "b.jsonl")["locks"] == [
        {
            "tenant": TENANT,
            "environments": [TENANT],
            "result": "skipped",
            "reason": "--no-lock was given",
        }
    ]


def test_different_tenants_do_not_block_each_other(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    write_env("acme-a", "acme-a", base, ON_YAML)
    directory = write_env("acme-b", "acme-b", base, ON_YAML).parent

    with _holding(directory, "acme-a") as holder:
        other = run_cli_process(directory, "apply", "acme-b", "--auto-approve", "--journal", "b")
        assert other.returncode == 0, other.stdout + other.stderr
        assert writes(sandbox, "acme-b") == FORWARD

        # A run that includes the held tenant takes no lock, and writes nowhere, until it has
        # every lock of the run.
        sandbox.seed("acme-b", {})
        both = run_cli_process(directory, "apply", "--auto-approve", "--journal", "both")
        _refused(both, holder, "acme-a")
        assert writes(sandbox, "acme-b") == FORWARD, "nothing more, though acme-b was free"

        holder.answer("n\n")

    assert len(list(lock_directory().glob("apply-*.lock"))) == 2


def test_the_lock_file_names_the_holder_and_holds_no_secret(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    _, base = live_sandbox
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent
    secrets = (DEFAULT_WEBHOOK_API_KEY, "sandbox-secret")

    with _holding(directory) as holder:
        (lock,) = lock_directory().iterdir()
        text = lock.read_text()
        about = json.loads(text)
        assert about["pid"] == holder.proc.pid
        assert about["environments"] == [TENANT] and about["tenant"] == TENANT
        assert about["hostname"] and about["started"].endswith("Z")
        # Named by the tenant's identity (readable, plus a hash of it): no secret in the name.
        assert re.fullmatch(r"apply-loopback-\d+-[a-z0-9-]+-[0-9a-f]{12}\.lock", lock.name)
        for secret in secrets:
            assert secret not in text
        holder.answer("y\n")

    assert holder.proc.returncode == 0
    assert lock.read_text() == "", "a finished run is not named as the holder"


def test_without_fcntl_apply_warns_and_runs_unlocked(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent
    # What a platform without fcntl (Windows) looks like to the import system.
    windows = "import sys; sys.modules['fcntl'] = None; from reconciler.cli import main; main()"
    args = ["--environments-dir", str(directory), "apply", "--auto-approve", "--journal", "j"]

    result = subprocess.run(
        [sys.executable, "-c", windows, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=os.environ.copy(),
        timeout=WAIT_SECONDS,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == (
        "Warning: this platform has no fcntl file locks: applying without the per-tenant lock.\n"
    )
    assert writes(sandbox, TENANT) == FORWARD
    (lock,) = _start_line(tmp_path / "j")["locks"]
    assert lock["result"] == "skipped"
    assert lock["reason"] == "this platform has no fcntl file locks"
    assert not lock_directory().exists() or not any(lock_directory().iterdir())


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("https://ACME.p.newstore.net:443/", "https://acme.p.newstore.net", True),
        ("http://127.0.0.1:8765/acme-a", "http://127.0.0.1:8765/acme-a/", True),
        ("http://127.0.0.1:8765/acme-a", "http://127.0.0.1:8765/acme-b", False),
        ("http://127.0.0.1:8765/acme-a", "http://127.0.0.1:8766/acme-a", False),
        ("https://acme.p.newstore.net", "https://acme-eu.p.newstore.net", False),
    ],
)
def test_one_lock_per_tenant_api(one: str, other: str, same: bool) -> None:
    assert (lock_key(one) == lock_key(other)) is same
