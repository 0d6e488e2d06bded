"""Issue 25.2: a reviewed webhook change planned with one API client applies with another.

A plan file's secret fingerprints are keyed with RECONCILER_FINGERPRINT_KEY, which the plan and
apply jobs share, never with the OAuth client secret of whoever planned; without the variable
they fall back to the client secret, and a plan made by another client is refused saying so
(not "the secrets changed"). The plan file alone still cannot be used to test guesses of a
secret. Through the real CLI against the sandbox on 127.0.0.1, with two API clients.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import textwrap
from pathlib import Path

import pytest
from apply_helpers import FORWARD, writes
from click.testing import Result
from env_helpers import ON_YAML, run_cli

from reconciler.sandbox import SandboxApp, SandboxConfig

TENANT = "acme-staging"
PLAN_CLIENT = ("sandbox-plan", "sandbox-plan-client-secret-01")
APPLY_CLIENT = ("sandbox", "sandbox-secret")
KEY = "0123456789abcdef0123456789abcdef-shared-by-both-jobs"
OTHER_KEY = "fedcba9876543210fedcba9876543210-another-one"
ATP_KEY = SandboxConfig().webhook_api_key

TWO_CLIENTS = SandboxConfig(more_clients={PLAN_CLIENT[0]: PLAN_CLIENT[1]})
pytestmark = pytest.mark.parametrize("sandbox_config", [TWO_CLIENTS], indirect=True)

HEAD = """\
tenant: acme-staging
connection:
  base_url: {sandbox}/acme-staging
  token_url: {sandbox}/auth/realms/acme-staging/protocol/openid-connect/token
  timeout: 5
"""


@pytest.fixture
def env_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_sandbox: tuple[SandboxApp, str]
) -> Path:
    _, base = live_sandbox
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_FINGERPRINT_KEY", raising=False)
    monkeypatch.setenv("SANDBOX_WEBHOOK_API_KEY", ATP_KEY)
    monkeypatch.setenv("SANDBOX_ORDER_WEBHOOK_API_KEY", "sandbox-order-webhook-key-0001")
    directory = tmp_path / "environments"
    directory.mkdir()
    text = textwrap.dedent(HEAD + ON_YAML).replace("{sandbox}", base)
    (directory / f"{TENANT}.yaml").write_text(text)
    return directory


def _as(monkeypatch: pytest.MonkeyPatch, client: tuple[str, str], key: str | None) -> None:
    monkeypatch.setenv("NEWSTORE_CLIENT_ID", client[0])
    monkeypatch.setenv("NEWSTORE_CLIENT_SECRET", client[1])
    if key is None:
        monkeypatch.delenv("RECONCILER_FINGERPRINT_KEY", raising=False)
    else:
        monkeypatch.setenv("RECONCILER_FINGERPRINT_KEY", key)


def _plan_then_apply(
    env_dir: Path, monkeypatch: pytest.MonkeyPatch, plan_key: str | None, apply_key: str | None
) -> tuple[Path, Result]:
    plan_file = env_dir.parent / "reviewed.json"
    _as(monkeypatch, PLAN_CLIENT, plan_key)
    planned = run_cli(env_dir, "plan", "--out", str(plan_file))
    assert planned.exit_code == 0, planned.output
    _as(monkeypatch, APPLY_CLIENT, apply_key)
    applied = run_cli(
        env_dir, "apply", "--plan", str(plan_file), "--auto-approve", "--journal", "j.jsonl"
    )
    return plan_file, applied


def test_one_key_two_clients_the_reviewed_change_is_applied(
    env_dir: Path, monkeypatch: pytest.MonkeyPatch, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, _ = live_sandbox

    _, result = _plan_then_apply(env_dir, monkeypatch, KEY, KEY)

    assert result.exit_code == 0, result.output
    assert writes(sandbox, TENANT) == FORWARD


def test_two_clients_without_the_key_is_refused_saying_why(
    env_dir: Path, monkeypatch: pytest.MonkeyPatch, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, _ = live_sandbox

    _, result = _plan_then_apply(env_dir, monkeypatch, None, None)

    assert result.exit_code == 1, result.output
    assert (
        "acme-staging: planned with API client `sandbox-plan`, applied with `sandbox`"
        in result.stderr
    )
    assert "set RECONCILER_FINGERPRINT_KEY" in result.stderr
    assert "secrets changed" not in result.stderr, "it is the key, not the secrets"
    assert writes(sandbox, TENANT) == []


@pytest.mark.parametrize(
    ("plan_key", "apply_key", "message"),
    [
        (KEY, OTHER_KEY, "were made with another RECONCILER_FINGERPRINT_KEY"),
        (KEY, None, "were made with RECONCILER_FINGERPRINT_KEY, which is not set here"),
        (None, KEY, "the plan was made without RECONCILER_FINGERPRINT_KEY"),
    ],
)
def test_a_key_that_differs_between_the_jobs_is_named(
    env_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    live_sandbox: tuple[SandboxApp, str],
    plan_key: str | None,
    apply_key: str | None,
    message: str,
) -> None:
    sandbox, _ = live_sandbox

    _, result = _plan_then_apply(env_dir, monkeypatch, plan_key, apply_key)

    assert result.exit_code == 1, result.output
    assert f"acme-staging: the plan's secret fingerprints {message}" in result.stderr or (
        f"acme-staging: {message}" in result.stderr
    ), result.stderr
    assert writes(sandbox, TENANT) == []
    for secret in (KEY, OTHER_KEY, ATP_KEY, PLAN_CLIENT[1], APPLY_CLIENT[1]):
        assert secret not in result.output


def test_a_rotated_webhook_key_is_still_caught_across_clients(
    env_dir: Path, monkeypatch: pytest.MonkeyPatch, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, _ = live_sandbox
    plan_file = env_dir.parent / "reviewed.json"
    _as(monkeypatch, PLAN_CLIENT, KEY)
    assert run_cli(env_dir, "plan", "--out", str(plan_file)).exit_code == 0

    _as(monkeypatch, APPLY_CLIENT, KEY)
    monkeypatch.setenv("SANDBOX_WEBHOOK_API_KEY", "a-rotated-webhook-key-0123456789")
    result = run_cli(
        env_dir, "apply", "--plan", str(plan_file), "--auto-approve", "--journal", "j.jsonl"
    )

    assert result.exit_code == 1, result.output
    assert "the environment file or secrets changed since the plan" in result.stderr
    assert writes(sandbox, TENANT) == []


def test_the_plan_file_alone_cannot_confirm_a_guess_of_the_secret(
    env_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attacker holds the plan file, the webhook key they guess, and (a merge-request
    pipeline can read it) the plan client's secret: none of it confirms the guess."""
    plan_file = env_dir.parent / "reviewed.json"
    _as(monkeypatch, PLAN_CLIENT, KEY)
    assert run_cli(env_dir, "plan", "--out", str(plan_file)).exit_code == 0
    text = plan_file.read_text()
    document = json.loads(text)

    assert KEY not in text and ATP_KEY not in text and PLAN_CLIENT[1] not in text
    guesses = {
        hashlib.sha256(ATP_KEY.encode()).hexdigest(),
        hmac.new(PLAN_CLIENT[1].encode(), ATP_KEY.encode(), hashlib.sha256).hexdigest(),
        hmac.new(b"", ATP_KEY.encode(), hashlib.sha256).hexdigest(),
    }
    assert not any(guess in text for guess in guesses)
    (env,) = document["environments"]
    assert env["fingerprint_key"]["source"] == "RECONCILER_FINGERPRINT_KEY"
    assert hashlib.sha256(KEY.encode()).hexdigest()[:32] != env["fingerprint_key"]["check"]


def test_a_short_key_is_refused_before_anything_is_read(
    env_dir: Path, monkeypatch: pytest.MonkeyPatch, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, _ = live_sandbox
    _as(monkeypatch, APPLY_CLIENT, "too-short-a-key")

    result = run_cli(env_dir, "plan")

    assert result.exit_code == 1, result.output
    assert "RECONCILER_FINGERPRINT_KEY holds 15 characters; it needs at least 32" in result.stderr
    assert "too-short-a-key" not in result.output
    assert "Traceback" not in result.output
    assert sandbox.requests(TENANT) == []
