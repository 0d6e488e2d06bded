"""`reconciler drift` end to end: the real CLI, environment files, the sandbox on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import ORDER_WEBHOOK
from click.testing import Result
from env_helpers import OFF_YAML, ON_YAML, STOCK_UNCONFIRMED_YAML, WriteEnv, run_cli
from jsonschema import Draft202012Validator

from reconciler.resources import schema_path
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.state import default_associate_app_config

HAND_MADE_KEY = "key-someone-pasted-by-hand-0042"  # what a person set live, by hand
SECRETS = (HAND_MADE_KEY, DEFAULT_WEBHOOK_API_KEY, "sandbox-secret")
OFF = OFF_YAML + STOCK_UNCONFIRMED_YAML


def seed(
    app: SandboxApp,
    base_url: str,
    tenant: str,
    *,
    oms: bool,
    atp: bool,
    ui: bool,
    webhook: dict[str, Any] | None = None,
) -> None:
    document = default_associate_app_config()
    document["ui_configurations"]["use_new_om_ui"] = ui
    hook = None
    if webhook is not None:
        hook = {
            "url": f"{base_url}{WEBHOOK_PATH}",
            "api_key": DEFAULT_WEBHOOK_API_KEY,
            "external_identifier": "product_id",
            "timeout": 5,
            **webhook,
        }
    app.seed(
        tenant,
        {
            "external_oms": {"enabled": oms},
            "availability_webhook": hook,
            "uses_external_atp": atp,
            "associate_app_config": document,
            # The new order UI is on only with the order webhook ON_YAML configures (rule 4).
            "external_order_webhook": dict(ORDER_WEBHOOK) if ui else None,
        },
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write_gone(directory: Path, name: str = "acme-gone") -> Path:
    """An environment file for a tenant whose NewStore does not answer (a closed port)."""
    port = closed_port()
    path = directory / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            tenant: acme-gone
            connection:
              base_url: http://127.0.0.1:{port}/acme-gone
              token_url: http://127.0.0.1:{port}/auth/realms/acme-gone/protocol/openid-connect/token
              client_id: sandbox
              client_secret: ${{SANDBOX_CLIENT_SECRET}}
              timeout: 2
              retry:
                attempts: 1
            """
        )
        + OFF
    )
    return path


def drift(directory: Path, *args: str) -> Result:
    return run_cli(directory, "drift", *args)


def assert_no_secret(result: Result) -> None:
    for secret in SECRETS:
        assert secret not in result.stdout
        assert secret not in result.stderr


@pytest.fixture
def envs(live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv) -> Path:
    """acme-eu in sync; acme-prod drifted by hand (and breaking rule 2); acme-back drifted
    with its fix blocked by the stock-confirmation gate."""
    sandbox, base = live_sandbox
    write_env("acme-eu", "acme-eu", base, OFF)
    write_env("acme-prod", "acme-prod", base, ON_YAML)
    write_env("acme-back", "acme-back", base, OFF)
    seed(
        sandbox,
        base,
        "acme-prod",
        oms=False,
        atp=True,
        ui=True,
        webhook={"timeout": 30, "api_key": HAND_MADE_KEY},
    )
    seed(sandbox, base, "acme-back", oms=True, atp=True, ui=True, webhook={})
    return write_env("acme-eu", "acme-eu", base, OFF).parent


def test_in_sync_exits_0(envs: Path) -> None:
    result = drift(envs, "acme-eu")
    assert result.exit_code == 0, result.output
    assert "acme-eu (tenant acme-eu): in sync" in result.stdout
    assert result.stdout.rstrip().endswith(
        "Drift: 1 environment: 1 in sync, 0 drifted, 0 blocked, 0 errors"
    )
    assert result.stderr == ""


def test_drift_and_blocked_exit_2_in_text(envs: Path, live_sandbox: tuple[SandboxApp, str]) -> None:
    result = drift(envs)

    assert result.exit_code == 2, result.output
    prod = result.stdout.split("acme-prod (tenant acme-prod): drift\n", 1)[1].split("\n\n")[0]
    assert "rule 2 (external ATP on ⇒ the external OMS flag is on)" in prod
    assert "external_oms (apply would update):\n      enabled: false → true" in prod
    assert "      timeout: 30 → 5" in prod
    assert "      api_key: (sensitive) → (sensitive, changed)" in prod
    back = result.stdout.split("acme-back (tenant acme-back): drift, fix blocked\n")[1]
    assert "external_atp (apply would update):\n      enabled: true → false" in back
    # Since issue 12: the dated line, in the environment's own file.
    assert "newstore_stock_confirmed: 20" in back
    assert "Drift: 3 environments: 1 in sync, 1 drifted, 1 blocked, 0 errors" in result.stdout
    assert_no_secret(result)
    sandbox, _ = live_sandbox
    assert all(sandbox.history(t) == [] for t in ("acme-eu", "acme-prod", "acme-back"))

    assert drift(envs, "acme-back").exit_code == 2, "blocked counts as drift"


def test_json_follows_the_schema(envs: Path) -> None:
    result = drift(envs, "--format", "json")

    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    schema = json.loads(schema_path("drift.schema.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(doc)] == []
    assert doc["format_version"] == 1
    assert doc["status"] == "drift"
    assert doc["summary"] == {
        "environments": 3,
        "in_sync": 1,
        "drift": 1,
        "blocked": 1,
        "unhealthy": 0,  # drift --probe's status (issue 12), counted like the others
        "error": 0,
    }
    by_name = {env["name"]: env for env in doc["environments"]}
    assert [by_name[n]["status"] for n in ("acme-back", "acme-eu", "acme-prod")] == [
        "blocked",
        "in_sync",
        "drift",
    ]
    prod = by_name["acme-prod"]
    assert [s["setting"] for s in prod["settings"]] == ["external_oms", "availability_webhook"]
    webhook = prod["settings"][1]
    assert webhook["fix"] == "update"
    assert {"path": "availability_webhook.timeout", "live": 30, "desired": 5} in webhook["fields"]
    assert {
        "path": "availability_webhook.api_key",
        "live": "(sensitive)",
        "desired": "(sensitive, changed)",
    } in webhook["fields"]
    assert prod["live_violations"] and prod["live_violations"][0].startswith("rule 2 ")
    back = by_name["acme-back"]
    assert back["blocked_by"] and back["settings"], "blocked still lists the drifted fields"
    assert_no_secret(result)


def test_markdown_has_a_summary_table_and_a_section_per_drifted_environment(envs: Path) -> None:
    result = drift(envs, "--format", "markdown")

    assert result.exit_code == 2, result.output
    text = result.stdout
    assert text.startswith("## NewStore drift report\n")
    assert "| acme-eu | `acme-eu` | ✅ in sync | – |" in text
    assert "| acme-prod | `acme-prod` | ⚠️ drift | external_oms, availability_webhook |" in text
    assert "| acme-back | `acme-back` | ⛔ drift, fix blocked |" in text
    assert "### acme-prod (`acme-prod`): ⚠️ drift" in text
    assert "### acme-eu" not in text, "an environment in sync needs no section"
    assert "| availability_webhook | update | `timeout` | `30` | `5` |" in text, (
        "field-level detail"
    )
    assert "| availability_webhook | update | `api_key` | `(sensitive)` |" in text
    assert_no_secret(result)


def test_an_unreadable_environment_exits_1_and_the_others_are_still_reported(
    envs: Path, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, _ = live_sandbox
    write_gone(envs)
    sandbox.set_faults(
        [{"method": "GET", "path": "/acme-eu/v0/config/routing/uses_external_atp", "status": 400}]
    )

    text = drift(envs)
    assert text.exit_code == 1, text.output
    assert "acme-gone (tenant acme-gone): error\n  ❌ [acme-gone]" in text.stdout
    assert "could not connect" in text.stdout
    assert "Error: [acme-gone]" in text.stderr
    assert "acme-prod (tenant acme-prod): drift" in text.stdout, "the others are reported"

    sandbox.set_faults(
        [{"method": "GET", "path": "/acme-eu/v0/config/routing/uses_external_atp", "status": 400}]
    )
    result = drift(envs, "--format", "json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "error"
    assert doc["summary"]["error"] == 2
    by_name = {env["name"]: env for env in doc["environments"]}
    assert "Request id: " in by_name["acme-eu"]["error"], "NewStore's request id is kept"
    assert by_name["acme-prod"]["status"] == "drift"
    assert_no_secret(result)
