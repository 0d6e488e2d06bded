"""The apply journal: write-ahead intent before every write, its result after, gate events, all
masked; appended across runs; an unusable journal stops apply before it writes anything."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from apply_helpers import writes
from click.testing import Result
from env_helpers import ON_YAML, WriteEnv, run_cli

from reconciler.core.journal import read_journal
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY

Sandbox = tuple[SandboxApp, str]
TENANT = "acme-staging"


@pytest.fixture
def directory(live_sandbox: Sandbox, write_env: WriteEnv) -> Path:
    _, base = live_sandbox
    return write_env(TENANT, TENANT, base, ON_YAML).parent


def _apply(directory: Path, journal: Path, *args: str) -> Result:
    return run_cli(directory, "apply", "--auto-approve", "--journal", str(journal), *args)


def test_every_write_has_an_intent_before_and_a_result_after(
    directory: Path, tmp_path: Path
) -> None:
    journal = tmp_path / "deep" / "er" / "apply.jsonl"  # directories are created

    assert _apply(directory, journal).exit_code == 0

    text = journal.read_text()
    for secret in (DEFAULT_WEBHOOK_API_KEY, "sandbox-secret"):
        assert secret not in text
    entries = [json.loads(line) for line in text.splitlines()]
    assert [(e["phase"], e.get("setting"), e.get("result")) for e in entries] == [
        ("start", None, None),
        ("intent", "external_oms", None),
        ("result", "external_oms", "applied"),
        ("intent", "availability_webhook", None),
        ("result", "availability_webhook", "applied"),
        ("gate", "external_atp", "passed"),
        ("intent", "external_atp", None),
        ("result", "external_atp", "applied"),
        ("intent", "external_order_webhook", None),
        ("result", "external_order_webhook", "applied"),
        ("intent", "associate_app", None),
        ("result", "associate_app", "applied"),
        ("converged", None, None),
        ("end", None, "ok"),
    ]
    webhook_intent = entries[3]
    assert webhook_intent["environment"] == TENANT and webhook_intent["tenant"] == TENANT
    assert webhook_intent["action"] == "create"
    assert webhook_intent["before"] is None
    assert webhook_intent["after"]["api_key"] == "(sensitive)"
    assert webhook_intent["after"]["timeout"] == 5
    assert entries[1]["before"] == {"enabled": False} and entries[1]["after"] == {"enabled": True}
    for result in (e for e in entries if e["phase"] == "result"):
        assert re.fullmatch(r"[0-9a-f]{32}", result["request_id"])
    times = [e["time"] for e in entries]
    assert times == sorted(times) and all(t.endswith("Z") for t in times)


def test_a_failed_write_is_recorded_with_its_request_id(
    live_sandbox: Sandbox, directory: Path, tmp_path: Path
) -> None:
    sandbox, _ = live_sandbox
    path = f"/{TENANT}/v0/config/availability/webhook"
    sandbox.set_faults([{"method": "PUT", "path": path, "status": 400, "times": 10}])
    journal = tmp_path / "apply.jsonl"

    result = _apply(directory, journal)

    assert result.exit_code == 1
    entries = read_journal(journal)
    intent, failed = entries[3], entries[4]
    assert (intent["phase"], intent["setting"]) == ("intent", "availability_webhook")
    assert (failed["phase"], failed["result"]) == ("result", "failed")
    assert failed["request_id"] and failed["request_id"] in result.stderr
    assert "NewStore rejected the call" in failed["error"]
    assert DEFAULT_WEBHOOK_API_KEY not in journal.read_text()
    assert entries[-1]["phase"] == "end" and entries[-1]["result"] == "failed"


def test_runs_append_to_the_same_journal(directory: Path, tmp_path: Path) -> None:
    journal = tmp_path / "apply.jsonl"
    assert _apply(directory, journal).exit_code == 0
    env_file = directory / f"{TENANT}.yaml"
    env_file.write_text(env_file.read_text().replace("timeout: 5\n", "timeout: 6\n"))
    assert _apply(directory, journal).exit_code == 0

    phases = [e["phase"] for e in read_journal(journal)]
    assert phases.count("start") == 2 and phases.count("end") == 2


def test_an_unusable_journal_stops_apply_before_any_write(
    live_sandbox: Sandbox, directory: Path, tmp_path: Path
) -> None:
    sandbox, _ = live_sandbox
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    result = _apply(directory, blocker / "apply.jsonl")

    assert result.exit_code == 1
    assert "cannot write the apply journal" in result.stderr
    assert writes(sandbox, TENANT) == []
