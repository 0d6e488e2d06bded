"""Failures nothing in apply anticipated: a webhook url httpx cannot send to blocks the probe
gate (plan --probe and apply alike); any other exception inside a step still ends in the
safe-state report and the journal, named by its type only, never by its text."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from apply_helpers import FORWARD, OFF, ON, SANDBOX_SECRET, seed, writes
from click.testing import CliRunner, Result
from env_helpers import ON_YAML
from plan_helpers import make_env

from reconciler.cli import cli
from reconciler.core.apply import ApplyOptions, apply_run
from reconciler.core.journal import Journal, read_journal
from reconciler.core.plan import plan_environments
from reconciler.errors import ApplyError
from reconciler.model import Environment
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.render.stop_report import render_report
from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH

WriteEnv = Callable[..., Path]
Sandbox = tuple[SandboxApp, str]
TENANT = "acme-staging"
ATP_PATH = f"/{TENANT}/v0/config/routing/uses_external_atp"
# Text a careless message would pass on: it must never be shown.
LEAK = f"Authorization: {DEFAULT_WEBHOOK_API_KEY}"


def _cli(directory: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--environments-dir", str(directory), *args])


def _hook_at(url: str) -> str:
    return ON_YAML.replace("{sandbox}/_sandbox/webhook/availabilities", url)


# --- the probe: urls that pass the file's checks but not httpx's --------------------------------


def test_a_host_name_idna_cannot_encode_blocks_apply_at_the_probe(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    url = "https://a..b/availabilities"  # an empty label: the socket's IDNA codec refuses it
    directory = write_env(TENANT, TENANT, base, _hook_at(url)).parent

    planned = _cli(directory, "plan", "--probe")
    applied = _cli(directory, "apply", "--auto-approve", "--journal", str(tmp_path / "j.jsonl"))

    for result in (planned, applied):
        assert result.exit_code == 3, result.output
        assert f"webhook probe to {url}: the request could not be sent (UnicodeError)" in (
            result.output
        )
        assert "Traceback" not in result.output
        assert DEFAULT_WEBHOOK_API_KEY not in result.output
    assert "gate webhook_probe failed" in applied.stderr
    assert writes(sandbox, TENANT) == FORWARD[:2], "stopped before external ATP went on"


def test_a_host_name_httpx_cannot_parse_blocks_the_probe(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    _, base = live_sandbox
    directory = write_env(TENANT, TENANT, base, _hook_at("https://⒈.example/hook")).parent

    result = _cli(directory, "plan", "--probe")

    assert result.exit_code == 3, result.output
    assert "webhook probe: the webhook url is not one an HTTP client can send to" in result.stdout
    assert "Traceback" not in result.output


# --- anything else, inside a step ------------------------------------------------------------


class _BreaksOn(httpx.BaseTransport):
    """Passes requests to the sandbox until one matches `method path`; from then on every
    request raises a RuntimeError whose text holds a secret."""

    def __init__(self, inner: httpx.BaseTransport, method: str, path: str) -> None:
        self.inner, self.trigger = inner, (method, path)
        self.broken = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if (request.method, request.url.path) == self.trigger:
            self.broken = True
        if self.broken:
            raise RuntimeError(f"transport exploded; it held {LEAK}")
        return self.inner.handle_request(request)


def _env() -> Environment:
    return make_env(ON, name=TENANT, client_secret=SANDBOX_SECRET)


def _client(app: SandboxApp, env: Environment, transport: httpx.BaseTransport) -> NewStoreClient:
    return NewStoreClient(env, transport=transport, limiter=HostLimiter(), backoff=0)


def test_an_exception_in_a_write_ends_in_the_safe_state_report_and_the_journal(
    tmp_path: Path,
) -> None:
    app = SandboxApp(SandboxConfig())
    seed(app, TENANT, OFF)
    env = _env()
    run = plan_environments([env], client_factory=lambda e: _client(app, e, app.transport()))
    breaking = _BreaksOn(app.transport(), "POST", ATP_PATH)
    journal_path = tmp_path / "journal.jsonl"

    with Journal(journal_path) as journal, pytest.raises(ApplyError) as info:
        apply_run(
            [env],
            run,
            journal,
            ApplyOptions(
                client_factory=lambda e: _client(app, e, breaking),
                probe_transport=app.transport(),
            ),
        )

    error = info.value
    assert error.message.startswith(
        f"[{TENANT}] step 3/5 external_atp stopped on an unexpected RuntimeError; "
        "nothing more was written"
    )
    assert "FAILED        3/5 external_atp: update" in render_report(error)
    assert "not attempted 4/5 external_order_webhook: create" in render_report(error)
    assert "not attempted 5/5 associate_app: update" in render_report(error)
    # The client stays broken, so the re-read for the safety statement fails too: said so.
    assert (
        "WARNING: could not re-read the live state to check the safety rules "
        "(unexpected RuntimeError)" in render_report(error)
    )
    assert "transport exploded" not in str(error) and DEFAULT_WEBHOOK_API_KEY not in str(error)
    assert writes(app, TENANT) == FORWARD[:2]

    entries = read_journal(journal_path)
    (failure,) = [e for e in entries if e["phase"] == "error"]
    assert failure["setting"] == "external_atp" and failure["error"] == "RuntimeError"
    assert [e["phase"] for e in entries if e.get("setting") == "external_atp"][-2:] == [
        "intent",
        "error",
    ], "the write's intent was recorded before the request went out"
    assert entries[-1]["phase"] == "end" and entries[-1]["result"] == "failed"
    assert "transport exploded" not in json.dumps(entries)


def test_an_exception_in_the_probe_stops_apply_with_the_report(tmp_path: Path) -> None:
    app = SandboxApp(SandboxConfig())
    seed(app, TENANT, OFF)
    env = _env()
    run = plan_environments([env], client_factory=lambda e: _client(app, e, app.transport()))
    probe = _BreaksOn(app.transport(), "POST", WEBHOOK_PATH)

    with Journal(tmp_path / "journal.jsonl") as journal, pytest.raises(ApplyError) as info:
        apply_run(
            [env],
            run,
            journal,
            ApplyOptions(
                client_factory=lambda e: _client(app, e, app.transport()), probe_transport=probe
            ),
        )

    assert "step 3/5 external_atp stopped on an unexpected RuntimeError" in info.value.message
    assert "The live state, re-read just now, satisfies every safety rule." in render_report(
        info.value
    )
    assert "transport exploded" not in str(info.value)
    assert writes(app, TENANT) == FORWARD[:2]
