"""Issue 25.6: a full disk never eats the stop report.

The journal's file stops growing (RLIMIT_FSIZE, set on the running `reconciler apply` from the
sandbox's side, at the very moment a write of the run has been handled): the step shows as
applied, the stop report and the exit code are the apply's, the error names the journal's
problem, and the journal holds only whole lines. And a write whose answer was lost shows as
unknown, not failed. The real CLI as a subprocess against the sandbox on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from env_helpers import ON_YAML, WriteEnv

from reconciler.sandbox import SandboxApp, running
from reconciler.sandbox.app import WEBHOOK_PATH

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE needs a POSIX system")
if not hasattr(resource, "prlimit"):
    pytest.skip("prlimit (Linux) sets another process's file-size limit", allow_module_level=True)

TENANT = "acme-staging"
WEBHOOK_CONFIG = f"/{TENANT}/v0/config/availability/webhook"
ORDER_WEBHOOK_CONFIG = f"/{TENANT}/v0/config/sales_order/external_order_webhook"


class DiskFillsUp(SandboxApp):
    """The sandbox, which fills the apply's disk once it has handled `trigger` (method, path):
    from then on its journal cannot grow by more than `spare` bytes. Optionally it answers
    that request with `status` instead of handling it."""

    def __init__(self, trigger: tuple[str, str], spare: int, status: int | None = None) -> None:
        super().__init__()
        self.trigger, self.spare, self.status = trigger, spare, status
        self.pid: int | None = None
        self.journal: Path | None = None
        self.filled = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        hit = (environ["REQUEST_METHOD"], environ["PATH_INFO"]) == self.trigger
        if hit and self.status is not None:
            answer: Iterable[bytes] = [b'{"message": "down"}']
            start_response(f"{self.status} Oops", [("Content-Type", "application/json")])
        else:
            answer = list(super().__call__(environ, start_response))
        if hit and not self.filled and self.pid is not None and self.journal is not None:
            limit = self.journal.stat().st_size + self.spare
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (limit, limit))
            self.filled = True
        return answer


def _run_apply(
    app: DiskFillsUp, write_env: WriteEnv, tmp_path: Path, *extra: str
) -> tuple[int, str, str]:
    with running(app) as base:
        directory = write_env(TENANT, TENANT, base, ON_YAML).parent
        journal = tmp_path / "j.jsonl"
        app.journal = journal
        command = [sys.executable, "-m", "reconciler", "--environments-dir", str(directory)]
        command += ["apply", "--auto-approve", "--journal", str(journal), *extra]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=os.environ.copy(),
        )
        app.pid = proc.pid
        out, err = proc.communicate(timeout=120)
        assert app.filled, "the disk never filled: the trigger request never came"
        return proc.returncode, out, err


def _whole_lines(journal: Path) -> list[dict[str, Any]]:
    text = journal.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), f"half a line at the end: {text[-80:]!r}"
    return [json.loads(line) for line in text.splitlines()]


def test_a_full_disk_after_a_write_keeps_the_step_applied_and_the_stop_report(
    write_env: WriteEnv, tmp_path: Path
) -> None:
    # The disk fills while the webhook config (step 2) is being written: its result line
    # finds 7 bytes of room, then none.
    app = DiskFillsUp(("PUT", WEBHOOK_CONFIG), spare=7)

    code, out, err = _run_apply(app, write_env, tmp_path)

    assert code == 1, out + err
    assert "Traceback" not in err
    assert "cannot append to the apply journal" in err and "File too large" in err, err
    # The stop report, whole: what was applied, what not, and the fresh safety check.
    assert "applied       1/5 external_oms: update" in err, err
    assert "applied       2/5 availability_webhook: create" in err, err
    assert "not attempted 3/5 external_atp: update" in err, err
    assert "The live state, re-read just now, satisfies every safety rule." in err
    # Nothing more was written without a journal to record it in.
    methods = [(e["method"], e["path"]) for e in app.history(TENANT)]
    assert methods == [
        ("POST", f"/{TENANT}/v0/config/sales_order/external_oms"),
        ("PUT", WEBHOOK_CONFIG),
    ]
    lines = _whole_lines(tmp_path / "j.jsonl")
    assert lines[-1]["phase"] == "intent" and lines[-1]["setting"] == "availability_webhook"


def test_a_full_disk_is_its_own_error_kind_in_the_json_summary(
    write_env: WriteEnv, tmp_path: Path
) -> None:
    """A CI system reading `apply --format json` learns that the journal failed (kind
    `journal`), with the step that landed counted as applied."""
    from test_apply_events import records  # the schema-validating reader of JSON lines

    app = DiskFillsUp(("PUT", WEBHOOK_CONFIG), spare=7)

    code, out, err = _run_apply(app, write_env, tmp_path, "--format", "json")

    assert code == 1, out + err
    summary = records(out)[-1]
    assert summary["error"]["kind"] == "journal", summary
    assert "cannot append to the apply journal" in summary["error"]["message"]
    assert summary["steps"]["applied"] == 2 and summary["steps"]["not_attempted"] == 3
    assert summary["steps"]["failed"] == 0


def test_the_exit_code_stays_the_applys_when_the_journal_fails_on_a_blocked_gate(
    write_env: WriteEnv, tmp_path: Path
) -> None:
    # The probe before external ATP goes on (step 3) fails, and the disk is full as its result
    # is recorded: the apply is blocked (exit 3), not "failed because of the journal".
    app = DiskFillsUp(("POST", WEBHOOK_PATH), spare=0, status=503)

    code, out, err = _run_apply(app, write_env, tmp_path)

    assert code == 3, out + err
    assert "gate webhook_probe failed" in err, err
    assert "cannot append to the apply journal" in err
    assert "BLOCKED       3/5 external_atp: update" in err, err
    assert "Traceback" not in err
    _whole_lines(tmp_path / "j.jsonl")


def test_a_write_whose_answer_was_lost_is_unknown_not_failed(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    path = write_env(TENANT, TENANT, base, ON_YAML)
    # Two attempts, so that giving up comes quickly.
    path.write_text(
        path.read_text().replace("  timeout: 5\n", "  timeout: 5\n  retry:\n    attempts: 2\n", 1)
    )
    directory = path.parent
    # Every attempt at the order webhook config's write lands, then the connection drops.
    # (A write a safety rule relies on, such as the availability webhook's, is read back
    # instead of resent, and a read-back that shows it landed continues: test_review_safety_v3.)
    sandbox.set_faults(
        [{"method": "POST", "path": ORDER_WEBHOOK_CONFIG, "drop_connection": True, "times": 50}]
    )
    env = os.environ.copy()
    command = [sys.executable, "-m", "reconciler", "--environments-dir", str(directory)]
    proc = subprocess.run(
        [*command, "apply", "--auto-approve", "--journal", str(tmp_path / "j.jsonl")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "UNKNOWN       4/5 external_order_webhook: create" in proc.stderr, proc.stderr
    assert "the answer was lost: the write may have landed" in proc.stderr
    results = [e for e in _whole_lines(tmp_path / "j.jsonl") if e["phase"] == "result"]
    assert results[-1]["setting"] == "external_order_webhook"
    assert results[-1]["result"] == "unknown"
