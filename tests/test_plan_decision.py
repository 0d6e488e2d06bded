"""Issue 25 (items 1 and 3): `apply --plan` applies exactly what was reviewed, or nothing.

Everything that decides a write is in the plan file and its fingerprint: the API and token
hosts the plan read (shown in every format), the tenant identity, the change policy after
`extends`, the gates and how long the plan is valid. A plan file records when and from which
commit it was made, and expires after `plan_valid_hours` (default 24). Each test plays the one
who moves something between review and apply, through the real CLI against sandboxes on
127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apply_helpers import FORWARD, writes
from click.testing import CliRunner, Result
from env_helpers import ON_YAML
from git_helpers import needs_git

from reconciler.cli import Injected, cli
from reconciler.core.planfile import load_plan_file
from reconciler.sandbox import SandboxApp, running

TENANT = "acme-staging"
PLANNED_AT = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)  # a Monday; no policy in these files

# The connection comes from ${NS_BASE}: one file, whichever host the variable names.
VARIABLE_HOST = """\
tenant: acme-staging
connection:
  base_url: ${NS_BASE}/acme-staging
  token_url: ${NS_BASE}/auth/realms/acme-staging/protocol/openid-connect/token
  client_id: sandbox
  client_secret: ${SANDBOX_CLIENT_SECRET}
  timeout: 5
"""


def _at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def run_at(moment: datetime, directory: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--environments-dir", str(directory), *args], obj=Injected(clock=_at(moment))
    )


def _apply(directory: Path, plan_file: Path, moment: datetime) -> Result:
    return run_at(
        moment,
        directory,
        "apply",
        "--plan",
        str(plan_file),
        "--auto-approve",
        "--journal",
        str(directory.parent / "j.jsonl"),
    )


@pytest.fixture
def two_sandboxes(
    live_sandbox: tuple[SandboxApp, str],
) -> Iterator[tuple[tuple[SandboxApp, str], tuple[SandboxApp, str]]]:
    """The reviewed host and another one, both fresh tenants that look exactly alike."""
    other = SandboxApp(live_sandbox[0].config)
    with running(other) as other_base:
        yield live_sandbox, (other, other_base)


@pytest.fixture
def env_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_sandbox: tuple[SandboxApp, str]
) -> Path:
    sandbox, _ = live_sandbox
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SANDBOX_CLIENT_SECRET", sandbox.config.client_secret)
    monkeypatch.setenv("SANDBOX_WEBHOOK_API_KEY", sandbox.config.webhook_api_key)
    monkeypatch.setenv("SANDBOX_ORDER_WEBHOOK_API_KEY", "sandbox-order-webhook-key-0001")
    directory = tmp_path / "environments"
    directory.mkdir()
    return directory


def _write(directory: Path, name: str, text: str, base: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).replace("{sandbox}", base))
    return path


def _refused(result: Result, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert "nothing was applied" in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.output


# -- 25.1: the hosts, the identity, the policy after `extends` ------------------------------------


def test_a_plan_applied_against_another_host_applies_nothing(
    two_sandboxes: tuple[tuple[SandboxApp, str], tuple[SandboxApp, str]],
    env_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (reviewed, reviewed_base), (other, other_base) = two_sandboxes
    _write(env_dir, f"{TENANT}.yaml", VARIABLE_HOST + ON_YAML, reviewed_base)
    monkeypatch.setenv("NS_BASE", reviewed_base)
    plan_file = env_dir.parent / "reviewed.json"
    assert run_at(PLANNED_AT, env_dir, "plan", "--out", str(plan_file)).exit_code == 0

    monkeypatch.setenv("NS_BASE", other_base)  # the apply job's variable points elsewhere
    result = _apply(env_dir, plan_file, PLANNED_AT + timedelta(minutes=5))

    reviewed_port = reviewed_base.rsplit(":", 1)[1]
    other_port = other_base.rsplit(":", 1)[1]
    _refused(
        result,
        f"acme-staging: planned against API loopback:{reviewed_port}/acme-staging, "
        f"now loopback:{other_port}/acme-staging",
        f"token endpoint loopback:{reviewed_port}",
    )
    assert writes(other, TENANT) == [], "nobody reviewed a plan against this host"
    assert writes(reviewed, TENANT) == []


def test_the_plan_shows_the_host_it_read_in_every_format(
    live_sandbox: tuple[SandboxApp, str], env_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base = live_sandbox
    _write(env_dir, f"{TENANT}.yaml", VARIABLE_HOST + ON_YAML, base)
    monkeypatch.setenv("NS_BASE", base)
    host = f"loopback:{base.rsplit(':', 1)[1]}"

    text = run_at(PLANNED_AT, env_dir, "plan").stdout
    markdown = run_at(PLANNED_AT, env_dir, "plan", "--format", "markdown").stdout
    document = json.loads(run_at(PLANNED_AT, env_dir, "plan", "--format", "json").stdout)

    assert f"acme-staging (tenant acme-staging, read from {host}/acme-staging)" in text
    assert f"read from `{host}/acme-staging`" in markdown
    (env,) = document["environments"]
    assert env["identity"] == f"{host}/acme-staging"
    assert env["api_host"] == host
    assert env["token_host"] == host


BASE_WITH_A_FREEZE = """\
policy:
  freezes:
    - from: 2030-03-01
      to: 2030-03-31
      reason: the spring sale
"""


def test_a_freeze_removed_from_the_base_after_the_plan_is_refused(
    live_sandbox: tuple[SandboxApp, str], env_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, base = live_sandbox
    monkeypatch.setenv("NS_BASE", base)
    _write(env_dir, "_base.yaml", BASE_WITH_A_FREEZE, base)
    _write(env_dir, f"{TENANT}.yaml", "extends: _base.yaml\n" + VARIABLE_HOST + ON_YAML, base)
    plan_file = env_dir.parent / "reviewed.json"
    planned = run_at(PLANNED_AT, env_dir, "plan", "--out", str(plan_file))
    assert planned.exit_code == 0, planned.output
    assert "BLOCKED by policy rule freeze" in planned.stdout, "the reviewer saw the freeze"

    (env_dir / "_base.yaml").write_text("policy: {}\n")  # the base drops it after the review
    result = _apply(env_dir, plan_file, PLANNED_AT + timedelta(minutes=5))

    _refused(result, "acme-staging: the change policy changed since the plan")
    assert writes(sandbox, TENANT) == []


def test_a_changed_gate_in_the_base_is_named(
    live_sandbox: tuple[SandboxApp, str], env_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, base = live_sandbox
    monkeypatch.setenv("NS_BASE", base)
    on_without_gates = ON_YAML.split("gates:")[0]
    gates = (
        'gates:\n  webhook_probe:\n    products: ["1000061"]\n    fulfillment_locations: ["US01"]\n'
    )
    _write(env_dir, "_base.yaml", gates, base)
    _write(
        env_dir, f"{TENANT}.yaml", "extends: _base.yaml\n" + VARIABLE_HOST + on_without_gates, base
    )
    plan_file = env_dir.parent / "reviewed.json"
    assert run_at(PLANNED_AT, env_dir, "plan", "--out", str(plan_file)).exit_code == 0

    (env_dir / "_base.yaml").write_text(gates.replace("US01", "US02"))
    result = _apply(env_dir, plan_file, PLANNED_AT + timedelta(minutes=5))

    _refused(result, "acme-staging: the gates changed since the plan")
    assert writes(sandbox, TENANT) == []


# -- 25.3: when and from which commit; expiry ------------------------------------------------------


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=directory,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@needs_git
def test_a_plan_file_records_when_and_from_which_commit(
    live_sandbox: tuple[SandboxApp, str], env_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base = live_sandbox
    monkeypatch.setenv("NS_BASE", base)
    _write(env_dir, f"{TENANT}.yaml", VARIABLE_HOST + ON_YAML, base)
    _git(env_dir.parent, "init", "--quiet")
    _git(env_dir.parent, "add", "environments")
    _git(env_dir.parent, "commit", "--quiet", "-m", "reviewed")
    sha = _git(env_dir.parent, "rev-parse", "HEAD")
    plan_file = env_dir.parent / "reviewed.json"

    assert run_at(PLANNED_AT, env_dir, "plan", "--out", str(plan_file)).exit_code == 0

    document = load_plan_file(plan_file)
    assert document["created_at"] == "2030-03-04T09:00:00+00:00"
    assert document["config_commit"] == {"sha": sha, "dirty": False}
    (env,) = document["environments"]
    assert env["plan_valid_hours"] == 24
    assert env["expires_at"] == "2030-03-05T09:00:00+00:00"


def test_an_expired_plan_applies_nothing(
    live_sandbox: tuple[SandboxApp, str], env_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay: a merged change whose apply failed, reverted since; someone re-runs the
    first apply job days later, and the live state still matches what it was planned from."""
    sandbox, base = live_sandbox
    monkeypatch.setenv("NS_BASE", base)
    _write(env_dir, f"{TENANT}.yaml", VARIABLE_HOST + ON_YAML, base)
    plan_file = env_dir.parent / "reviewed.json"
    assert run_at(PLANNED_AT, env_dir, "plan", "--out", str(plan_file)).exit_code == 0

    result = _apply(env_dir, plan_file, PLANNED_AT + timedelta(days=3))

    _refused(
        result,
        "acme-staging: the plan expired at 2030-03-05T09:00:00+00:00",
        "made 2030-03-04T09:00:00+00:00",
        "plan_valid_hours: 24",
    )
    assert writes(sandbox, TENANT) == []


def test_plan_valid_hours_comes_from_the_base_and_bounds_the_apply(
    live_sandbox: tuple[SandboxApp, str], env_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, base = live_sandbox
    monkeypatch.setenv("NS_BASE", base)
    _write(env_dir, "_base.yaml", "plan_valid_hours: 2\n", base)
    _write(env_dir, f"{TENANT}.yaml", "extends: _base.yaml\n" + VARIABLE_HOST + ON_YAML, base)
    plan_file = env_dir.parent / "reviewed.json"
    assert run_at(PLANNED_AT, env_dir, "plan", "--out", str(plan_file)).exit_code == 0

    late = _apply(env_dir, plan_file, PLANNED_AT + timedelta(hours=2, minutes=1))
    _refused(late, "plan_valid_hours: 2")
    assert writes(sandbox, TENANT) == []

    in_time = _apply(env_dir, plan_file, PLANNED_AT + timedelta(hours=1, minutes=59))
    assert in_time.exit_code == 0, in_time.output
    assert writes(sandbox, TENANT) == FORWARD


def test_a_plan_from_the_future_is_refused(
    live_sandbox: tuple[SandboxApp, str], env_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan made on a machine whose clock runs a day ahead would otherwise stay valid for
    two days."""
    sandbox, base = live_sandbox
    monkeypatch.setenv("NS_BASE", base)
    _write(env_dir, f"{TENANT}.yaml", VARIABLE_HOST + ON_YAML, base)
    plan_file = env_dir.parent / "reviewed.json"
    assert run_at(PLANNED_AT, env_dir, "plan", "--out", str(plan_file)).exit_code == 0

    result = _apply(env_dir, plan_file, PLANNED_AT - timedelta(hours=1))

    _refused(result, "acme-staging: the plan was made 2030-03-04T09:00:00+00:00, after now")
    assert writes(sandbox, TENANT) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "plan_valid_hours: must be between 1 and 720, not 0"),
        ("721", "plan_valid_hours: must be between 1 and 720, not 721"),
        ("1.5", "plan_valid_hours: must be a whole number, not a fraction"),
        ('"24"', "plan_valid_hours: must be a whole number, not a string"),
    ],
)
def test_plan_valid_hours_is_validated_at_its_line(
    env_dir: Path,
    value: str,
    message: str,
    live_sandbox: tuple[SandboxApp, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, base = live_sandbox
    monkeypatch.setenv("NS_BASE", base)
    (env_dir / "_base.yaml").write_text(f"# hours\nplan_valid_hours: {value}\n")
    _write(env_dir, f"{TENANT}.yaml", "extends: _base.yaml\n" + VARIABLE_HOST, base)

    result = CliRunner().invoke(
        cli, ["--environments-dir", str(env_dir), "validate", "--allow-missing-secrets"]
    )

    assert result.exit_code == 1, result.output
    assert f"_base.yaml:2:1: {message}" in result.stderr, result.stderr
