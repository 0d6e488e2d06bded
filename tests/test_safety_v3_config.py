"""Safety v3 (issue 20, items 5, 7 and 8) through the real CLI: a stock confirmation only counts
in the environment's own file; a file's tenant is the tenant its URLs name, and one tenant has
one file; secrets leak neither through NewStore's error `data` nor through a url's query."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from env_helpers import ON_YAML, WriteEnv, run_cli

from reconciler.clock import today_utc
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH

Sandbox = tuple[SandboxApp, str]


def _connection(tenant: str, base: str = "http://127.0.0.1:8765", url_tenant: str = "") -> str:
    named = url_tenant or tenant
    return textwrap.dedent(
        f"""\
        tenant: {tenant}
        connection:
          base_url: {base}/{named}
          token_url: {base}/auth/realms/{named}/protocol/openid-connect/token
          client_id: sandbox
          client_secret: ${{SANDBOX_CLIENT_SECRET}}
        """
    )


@pytest.fixture
def environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SANDBOX_CLIENT_SECRET", "sandbox-secret")
    monkeypatch.setenv("NEWSTORE_CLIENT_ID", "sandbox")
    monkeypatch.setenv("NEWSTORE_CLIENT_SECRET", "sandbox-secret")
    directory = tmp_path / "environments"
    directory.mkdir()
    return directory


# -- 5. a stock confirmation in a base file ------------------------------------------------------


def test_a_stock_confirmation_in_a_base_file_is_refused_at_the_base(environments: Path) -> None:
    (environments / "_company.yaml").write_text(
        "external_atp:\n  enabled: false\n"
        f"gates:\n  newstore_stock_confirmed: {today_utc().isoformat()}\n"
    )
    (environments / "acme-production.yaml").write_text(
        "extends: _company.yaml\n" + _connection("acme-production")
    )
    result = run_cli(environments, "validate")
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert f"{environments / '_company.yaml'}:4:" in err, err
    assert "belongs in the environment's own file" in err
    assert str(environments / "acme-production.yaml") in err
    assert "every environment that extends" in err


def test_false_in_a_base_file_is_no_confirmation_and_is_fine(environments: Path) -> None:
    (environments / "_company.yaml").write_text("gates:\n  newstore_stock_confirmed: false\n")
    (environments / "acme-production.yaml").write_text(
        "extends: _company.yaml\n" + _connection("acme-production")
    )
    assert run_cli(environments, "validate").exit_code == 0


# -- 7. tenant identity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "connection",
    [
        _connection("acme-production", url_tenant="acme-staging"),
        "tenant: acme-production\nconnection:\n  base_url: https://acme-staging.p.newstore.net\n",
        "tenant: acme-production\nconnection:\n  token_url: "
        "https://id.p.newstore.net/auth/realms/acme-staging/protocol/openid-connect/token\n",
    ],
    ids=["sandbox-form", "newstore-base-url", "newstore-token-url"],
)
def test_a_tenant_its_urls_contradict_is_refused_at_the_url(
    environments: Path, connection: str
) -> None:
    path = environments / "acme-production.yaml"
    path.write_text(connection)
    result = run_cli(environments, "validate")
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert f"{path}:3:" in err, err
    assert "names tenant acme-staging, but `tenant:` says acme-production" in err, err
    assert f"({path}:1:" in err


def test_two_files_for_one_tenant_are_refused_naming_both(environments: Path) -> None:
    one = environments / "acme.yaml"
    other = environments / "acme-copy.yaml"
    one.write_text(_connection("acme", base="http://localhost:8765"))
    other.write_text(_connection("acme", base="http://127.0.0.1:8765"))
    result = run_cli(environments, "validate")
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert str(one) in err and str(other) in err, err
    assert "both manage tenant acme (loopback:8765/acme)" in err
    assert "allow_shared_tenant: true" in err

    planned = run_cli(environments, "plan")
    assert planned.exit_code == 1
    assert "both manage tenant acme" in planned.output

    for path in (one, other):
        path.write_text(path.read_text() + "allow_shared_tenant: true\n")
    assert run_cli(environments, "validate").exit_code == 0


# -- 8a. NewStore's error data is scrubbed before it is cut --------------------------------------

LEAKY_KEY = 'LEAKY-key-with-"quotes"-and-\\backslash\\-0123456789abcdef'


@pytest.mark.parametrize(
    "data",
    [
        {"padding": "x" * 140, "received": {"api_key": LEAKY_KEY}},
        {"received": {"api_key": LEAKY_KEY}},
        {"echo": f"https://atp.example/?key={quote(LEAKY_KEY, safe='')}"},
        {"echo": f"key={quote_plus(LEAKY_KEY)}"},
    ],
    ids=["cut-inside-the-key", "json-escaped", "url-encoded", "form-encoded"],
)
def test_a_key_newstore_echoes_in_error_data_is_scrubbed_in_every_form(
    live_sandbox: Sandbox,
    write_env: WriteEnv,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    data: dict[str, object],
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-leak", "acme-leak", base, ON_YAML).parent
    monkeypatch.setenv("SANDBOX_WEBHOOK_API_KEY", LEAKY_KEY)
    sandbox.set_faults(
        [
            {
                "method": "PUT",
                "path": "/acme-leak/v0/config/availability/webhook",
                "status": 400,
                "message": "Invalid webhook configuration.",
                "data": data,
            }
        ]
    )
    journal = tmp_path / "journal.jsonl"
    result = run_cli(directory, "apply", "--auto-approve", "--journal", str(journal))
    assert result.exit_code == 1, result.output
    assert "Invalid webhook configuration" in result.stderr
    assert "data: " in result.stderr
    shown = result.output + journal.read_text()
    forms = [
        LEAKY_KEY,
        json.dumps(LEAKY_KEY)[1:-1],
        json.dumps(json.dumps(LEAKY_KEY))[1:-1],
        quote(LEAKY_KEY, safe=""),
        quote_plus(LEAKY_KEY),
    ]
    for form in forms:
        for piece in (form, form[:12], form[-12:]):
            assert piece not in shown, piece


# -- 8b. a ${...} in a url's query makes the url a secret ----------------------------------------

QUERY_KEY = "query-secret-0f9e8d7c6b5a"


def test_a_url_with_a_variable_in_its_query_is_a_secret_everywhere(
    live_sandbox: Sandbox, write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    monkeypatch.setenv("ATP_QUERY_KEY", QUERY_KEY)
    body = ON_YAML.replace(
        "url: {sandbox}/_sandbox/webhook/availabilities",
        "url: {sandbox}/_sandbox/webhook/availabilities?code=${ATP_QUERY_KEY}",
    )
    directory = write_env("acme-query", "acme-query", base, body).parent
    plan_file = tmp_path / "plan.json"
    journal = tmp_path / "journal.jsonl"

    approved = ("--auto-approve", "--journal", str(journal))
    validated = run_cli(directory, "validate")
    assert validated.exit_code == 0, validated.output
    assert (
        "availability_webhook.url has ${ATP_QUERY_KEY} in its query: the whole url is a secret"
        in validated.output
    ), validated.output
    outputs = [
        validated,
        run_cli(directory, "plan"),
        run_cli(directory, "plan", "--format", "markdown"),
        run_cli(directory, "plan", "--format", "json", "--out", str(plan_file)),
        run_cli(directory, "apply", "--plan", str(plan_file), *approved),
        run_cli(directory, "drift", "--format", "json"),
        run_cli(directory, "drift", "--probe"),
    ]
    assert outputs[4].exit_code == 0, outputs[4].output
    url = f"{base}{WEBHOOK_PATH}?code={QUERY_KEY}"
    assert sandbox.state("acme-query")["availability_webhook"]["url"] == url
    everything = "".join(r.output for r in outputs) + plan_file.read_text() + journal.read_text()
    assert QUERY_KEY not in everything
    assert DEFAULT_WEBHOOK_API_KEY not in everything
    (env,) = json.loads(plan_file.read_text())["environments"]
    (step,) = [s for s in env["steps"] if s["setting"] == "availability_webhook"]
    assert {"path": "availability_webhook.url", "from": None, "to": "(sensitive)"} in step[
        "changes"
    ]
    assert "(sensitive)" in outputs[1].stdout
