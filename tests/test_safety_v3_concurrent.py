"""Safety v3 (issue 20, item 6): concurrent writers, end to end.

Apply A (the real CLI, a subprocess) turns external ATP on; the moment A's write reaches the
sandbox, a second apply B (the real CLI, in-process, another checkout) runs to completion
first: it deletes the webhook config. That is two machines at the worst moment, made exact by
the sandbox's `before_request` hook instead of by luck.

(a) On one machine the two share the lock, however the files spell the host (`localhost`,
    `127.0.0.1`, a trailing dot): B is refused before it reads anything.
(b) From two machines (separate lock directories) nothing can stop B; A re-reads rule 1's
    settings right after its write, finds the webhook gone, and its very next write puts
    external ATP back off. Its stop report says truthfully which writes were its own and names
    the concurrent change.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import ORDER_WEBHOOK
from click.testing import CliRunner, Result
from env_helpers import ON_YAML
from plan_helpers import make_env
from werkzeug.wrappers import Request

from reconciler.cli import cli
from reconciler.core.journal import read_journal
from reconciler.core.lock import LOCAL, LockRequest, hold_locks
from reconciler.errors import ApplyError
from reconciler.rules import violations
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.values import state_to_values

Sandbox = tuple[SandboxApp, str]
TENANT = "acme-two"
ATP_PATH = f"/{TENANT}/v0/config/routing/uses_external_atp"
HOOK_PATH = f"/{TENANT}/v0/config/availability/webhook"

BACK_YAML = """\
external_atp:
  enabled: false
availability_webhook: absent
"""


def _env_file(root: Path, name: str, base_url: str, token_url: str, body: str) -> Path:
    directory = root / name / "environments"
    directory.mkdir(parents=True)
    (directory / f"{TENANT}.yaml").write_text(
        f"tenant: {TENANT}\n"
        "connection:\n"
        f"  base_url: {base_url}\n"
        f"  token_url: {token_url}\n"
        "  client_id: sandbox\n"
        "  client_secret: ${SANDBOX_CLIENT_SECRET}\n"
        "  timeout: 5\n" + body
    )
    return directory


def _seed(sandbox: SandboxApp, base: str) -> dict[str, Any]:
    sandbox.seed(
        TENANT,
        {
            "external_oms": {"enabled": True},
            "availability_webhook": {
                "url": f"{base}{WEBHOOK_PATH}",
                "api_key": DEFAULT_WEBHOOK_API_KEY,
                "external_identifier": "product_id",
                "timeout": 5,
            },
            "uses_external_atp": False,
            "external_order_webhook": dict(ORDER_WEBHOOK),
        },
    )
    return sandbox.state(TENANT)


def _b_runs_inside_a(sandbox: SandboxApp, directory: Path, lock_dir: str) -> list[Result]:
    """Arm the hook: when A's external ATP write arrives, B applies to completion first."""
    ran: list[Result] = []

    def other_machine(request: Request) -> None:
        if request.method == "POST" and request.path == ATP_PATH and not ran:
            journal = directory.parent / "b.jsonl"
            ran.append(
                CliRunner().invoke(
                    cli,
                    [
                        "--environments-dir",
                        str(directory),
                        "apply",
                        "--auto-approve",
                        "--journal",
                        str(journal),
                    ],
                    env={"RECONCILER_LOCK_DIR": lock_dir},
                )
            )

    sandbox.before_request = other_machine
    return ran


def _apply_a(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "--environments-dir",
            str(directory),
            "apply",
            "--auto-approve",
            "--journal",
            str(directory.parent / "a.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )


def _urls(base: str, host: str) -> tuple[str, str]:
    port = base.rsplit(":", 1)[1]
    origin = f"http://{host}:{port}"
    return f"{origin}/{TENANT}", f"{origin}/auth/realms/{TENANT}/protocol/openid-connect/token"


def _a_and_b(tmp_path: Path, base: str, a_host: str, b_host: str) -> tuple[Path, Path]:
    a = _env_file(tmp_path, "a", *_urls(base, a_host), ON_YAML.replace("{sandbox}", base))
    b = _env_file(tmp_path, "b", *_urls(base, b_host), BACK_YAML)
    return a, b


@pytest.mark.parametrize(
    ("a_host", "b_host"),
    [("localhost", "127.0.0.1"), ("127.0.0.1", "localhost."), ("LocalHost", "localhost")],
)
def test_one_machine_one_lock_however_the_host_is_spelled(
    live_sandbox: Sandbox, write_env: Any, tmp_path: Path, a_host: str, b_host: str
) -> None:
    write_env("unused", "unused", "http://127.0.0.1:1")  # exports the secrets' variables
    sandbox, base = live_sandbox
    _seed(sandbox, base)
    a, b = _a_and_b(tmp_path, base, a_host, b_host)
    ran = _b_runs_inside_a(sandbox, b, os.environ["RECONCILER_LOCK_DIR"])

    result = _apply_a(a)

    assert result.returncode == 0, result.stdout + result.stderr
    (b_result,) = ran
    assert b_result.exit_code == 1, b_result.output
    assert "is applying tenant acme-two from this machine; nothing was written" in (b_result.stderr)
    state = sandbox.state(TENANT)
    assert state["availability_webhook"] is not None and state["uses_external_atp"] is True
    assert violations(state_to_values(state)) == []


def test_two_machines_the_write_a_rule_relies_on_is_undone_at_once(
    live_sandbox: Sandbox, write_env: Any, tmp_path: Path
) -> None:
    write_env("unused", "unused", "http://127.0.0.1:1")
    sandbox, base = live_sandbox
    _seed(sandbox, base)
    a, b = _a_and_b(tmp_path, base, "127.0.0.1", "127.0.0.1")
    ran = _b_runs_inside_a(sandbox, b, str(tmp_path / "the-other-machines-locks"))

    result = _apply_a(a)

    (b_result,) = ran
    assert b_result.exit_code == 0, b_result.output  # B deleted the webhook, ATP still off
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    # A's very next write after its own ATP-on write is the compensating one.
    writes = [
        (h["method"], h["path"], h["state_after"]["uses_external_atp"])
        for h in sandbox.history(TENANT)
        if h["status"] < 300
    ]
    assert writes == [
        ("DELETE", HOOK_PATH, False),  # B
        ("POST", ATP_PATH, True),  # A: landed after B's delete
        ("POST", ATP_PATH, False),  # A: undone at once
    ], writes
    state = sandbox.state(TENANT)
    assert violations(state_to_values(state)) == []

    err = result.stderr
    assert "someone else deleted availability_webhook" in err, err
    assert "this apply turned external_atp on" in err
    assert "set external_atp back off (request id" in err and ") at once" in err, err
    assert "The live state, re-read just now, satisfies every safety rule." in err
    assert "This apply did not write that state" not in err
    journal = read_journal(a.parent / "a.jsonl")
    assert [e["phase"] for e in journal if e.get("setting") == "external_atp"][-2:] == [
        "compensate",
        "result",
    ], journal


def test_the_lock_is_keyed_by_tenant_identity(tmp_path: Path) -> None:
    env = make_env({})
    other = replace(
        env,
        name="other-spelling",
        connection=replace(env.connection, base_url="http://LOCALHOST.:8765/acme-staging/"),
    )
    request = LockRequest(directory=tmp_path)
    with hold_locks([env], LOCAL, request) as held:
        assert held.locks[0].acquired
        with (
            pytest.raises(ApplyError, match="is applying tenant acme-staging"),
            hold_locks([other], LOCAL, request),
        ):
            pass
    (lock_file,) = tmp_path.iterdir()
    assert lock_file.name.startswith("apply-loopback-8765-acme-staging-")
