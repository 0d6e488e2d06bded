"""The external order webhook (fifth setting), rule 4 and store-level Associate App documents,
end to end: the real CLI against the sandbox on 127.0.0.1, judged on the sandbox's history."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from apply_helpers import ORDER_WEBHOOK, ORDER_WEBHOOK_API_KEY, assert_no_write_adds_a_violation
from click.testing import Result
from env_helpers import STOCK_CONFIRMED_YAML, WriteEnv, run_cli

from reconciler.errors import ConflictError, RejectedError
from reconciler.model import ABSENT, Masked
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.settings import BY_KEY
from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.state import default_associate_app_config
from reconciler.sandbox.values import state_to_values

Sandbox = tuple[SandboxApp, str]


def _apply(directory: Path, *args: str) -> Result:
    """`apply` with its journal beside the environments (in the test's tmp dir), never in the
    checkout's `.reconciler/`."""
    journal = directory.parent / f"journal-{uuid.uuid4().hex}.jsonl"
    return run_cli(directory, "apply", "--journal", str(journal), *args)


TENANT = "acme-stores"
ORDER_PATH = f"/{TENANT}/v0/config/sales_order/external_order_webhook"
APP_PATH = f"/{TENANT}/api/v1/associate-app/config"

FORWARD_YAML = """\
external_oms:
  enabled: true
availability_webhook:
  url: {sandbox}/_sandbox/webhook/availabilities
  api_key: ${SANDBOX_WEBHOOK_API_KEY}
  timeout: 5
external_atp:
  enabled: true
external_order_webhook:
  url: https://oms.acme.example/newstore
  api_key: ${SANDBOX_ORDER_WEBHOOK_API_KEY}
associate_app:
  use_new_om_ui: true
  stores:
    US01:
      use_new_om_ui: true
    US02:
      use_new_om_ui: false
gates:
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
"""
# Back to NewStore: the order webhook cannot be deleted, so it stays; the pilot store's
# document goes (it falls back to the global one), the other store's flag is turned off.
BACK_YAML = (
    """\
external_oms:
  enabled: false
availability_webhook: absent
external_atp:
  enabled: false
external_order_webhook:
  url: https://oms.acme.example/newstore
  api_key: ${SANDBOX_ORDER_WEBHOOK_API_KEY}
associate_app:
  use_new_om_ui: false
  stores:
    US01: absent
    US02:
      use_new_om_ui: false
"""
    + STOCK_CONFIRMED_YAML
)


def _document(ui: bool, **extra: Any) -> dict[str, Any]:
    document = default_associate_app_config()
    document["ui_configurations"]["use_new_om_ui"] = ui
    document.update(extra)
    return document


def _writes(app: SandboxApp, tenant: str = TENANT) -> list[tuple[str, str]]:
    return [
        (entry["method"], entry["path"].removeprefix(f"/{tenant}"))
        for entry in app.history(tenant)
        if entry["status"] < 300
    ]


def _plan_json(directory: Path) -> dict[str, Any]:
    result = run_cli(directory, "plan", "--format", "json")
    assert result.exit_code in (0, 3), result.output
    (env,) = json.loads(result.stdout)["environments"]
    doc: dict[str, Any] = env
    return doc


def test_forward_and_back_with_five_settings_and_two_stores(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    app, base = live_sandbox
    # US02 has a document of its own (with a store-specific tweak that must survive).
    us02 = _document(False, last_published_release="1.61.0")
    app.seed(TENANT, {"associate_app_store_configs": {"US02": us02}})
    start = app.state(TENANT)
    path = write_env(TENANT, TENANT, base, FORWARD_YAML)
    directory = path.parent

    planned = _plan_json(directory)
    assert [s["setting"] for s in planned["steps"]] == [
        "external_oms",
        "availability_webhook",
        "external_atp",
        "external_order_webhook",
        "associate_app",
    ]
    ui_step = planned["steps"][-1]
    assert (
        "rule 4" in ui_step["why"]
        and "after external_oms and external_order_webhook" in (ui_step["why"])
    )
    assert {c["path"]: (c["from"], c["to"]) for c in ui_step["changes"]} == {
        "associate_app.use_new_om_ui": (False, True),
        "associate_app.stores.US01.use_new_om_ui": (None, True),
    }

    forward = _apply(directory, "--auto-approve")
    assert forward.exit_code == 0, forward.output
    assert_no_write_adds_a_violation(app, TENANT, start)
    writes = _writes(app)
    assert writes.index(("POST", "/v0/config/sales_order/external_order_webhook")) < writes.index(
        ("PUT", "/api/v1/associate-app/config")
    ), "the order webhook is registered before the UI flag"
    assert ("PUT", "/api/v1/associate-app/config/US01") in writes
    assert ("PUT", "/api/v1/associate-app/config/US02") not in writes, "already off: untouched"
    state = app.state(TENANT)
    assert state["external_order_webhook"] == ORDER_WEBHOOK
    # US01 had no document: it gets the global one (what it showed) with the flag on.
    assert state["associate_app_store_configs"]["US01"] == _document(True)
    assert state["associate_app_store_configs"]["US02"] == us02
    again = run_cli(directory, "plan", "--detailed-exitcode")
    assert again.exit_code == 0, again.output

    # Someone turns the new UI on in US02 by hand before the back migration.
    hand = app.state(TENANT)
    hand["associate_app_store_configs"]["US02"]["ui_configurations"]["use_new_om_ui"] = True
    app.seed(TENANT, hand)
    middle = app.state(TENANT)
    path.write_text(path.read_text().split("external_oms:")[0] + BACK_YAML)

    back_plan = _plan_json(directory)
    settings = [s["setting"] for s in back_plan["steps"]]
    assert settings.index("associate_app") < settings.index("external_oms")
    back = _apply(directory, "--auto-approve")
    assert back.exit_code == 0, back.output
    assert_no_write_adds_a_violation(app, TENANT, middle)
    writes = _writes(app)[len(writes) :]
    oms_off = writes.index(("POST", "/v0/config/sales_order/external_oms"))
    assert writes.index(("DELETE", "/api/v1/associate-app/config/US01")) < oms_off
    assert writes.index(("PUT", "/api/v1/associate-app/config/US02")) < oms_off
    state = app.state(TENANT)
    assert "US01" not in state["associate_app_store_configs"]
    expected_us02 = copy.deepcopy(us02)
    assert state["associate_app_store_configs"]["US02"] == expected_us02, "every other key kept"
    assert state["external_order_webhook"] == ORDER_WEBHOOK, "no DELETE: it stays"
    assert state_to_values(state)["associate_app"] == {
        "use_new_om_ui": False,
        "stores.US02.use_new_om_ui": False,
    }
    rerun = run_cli(directory, "plan", "--detailed-exitcode")
    assert rerun.exit_code == 0, rerun.output
    assert ORDER_WEBHOOK_API_KEY not in forward.output + back.output + rerun.output


def test_a_store_flag_on_with_the_external_oms_off_is_an_error_at_its_line(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    _, base = live_sandbox
    body = BACK_YAML.replace(
        "    US02:\n      use_new_om_ui: false", "    US02:\n      use_new_om_ui: true"
    )
    path = write_env(TENANT, TENANT, base, body)

    result = run_cli(path.parent, "validate")

    assert result.exit_code == 1
    line = path.read_text().splitlines().index("      use_new_om_ui: true") + 1
    assert f"{path}:{line}:7: associate_app.stores.US02.use_new_om_ui: breaks rule 3" in (
        result.stderr
    )
    assert "Traceback" not in result.output


def test_the_order_webhook_cannot_be_absent_and_is_needed_by_the_new_ui(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    _, base = live_sandbox
    absent = write_env("a", TENANT, base, "external_order_webhook: absent\n")
    needs = write_env(
        "b",
        TENANT,
        base,
        "external_oms:\n  enabled: true\nassociate_app:\n  use_new_om_ui: true\n",
    )
    bad_timeout = write_env(
        "c",
        TENANT,
        base,
        "external_order_webhook:\n  url: http://oms.example/x\n"
        "  api_key: ${SANDBOX_ORDER_WEBHOOK_API_KEY}\n  timeout: 30\n",
    )

    result = run_cli(absent.parent, "validate")

    assert result.exit_code == 1
    err = result.stderr
    assert f"{absent}:" in err and "cannot delete the external order webhook" in err
    assert f"{needs}:" in err and "rule 4 (use_new_om_ui true ⇒ the external order webhook" in err
    assert f"{bad_timeout}:" in err
    assert "external_order_webhook.timeout: must be between 1 and 25, not 30" in err
    assert "external_order_webhook.url: must use https" in err


def _client(app: SandboxApp, base: str, write_env: WriteEnv) -> NewStoreClient:
    from reconciler.config import load_environment

    path = write_env(TENANT, TENANT, base, "")
    return NewStoreClient(load_environment(path))


def test_the_order_webhook_reads_writes_and_masks(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    app, base = live_sandbox
    setting = BY_KEY["external_order_webhook"]
    with _client(app, base, write_env) as client:
        assert setting.read(client) is ABSENT, "never set: not configured"
        value = {"url": "https://oms.example/api", "api_key": "k" * 24, "timeout": 15}
        assert setting.write(client, value)
        assert setting.read(client) == value
    (post,) = [e for e in app.history(TENANT) if e["method"] == "POST"]
    assert post["path"] == ORDER_PATH
    app.seed(TENANT, {**app.state(TENANT), "options": {"mask_webhook_api_key": True}})
    with _client(app, base, write_env) as client:
        masked = setting.read(client)
    # The shared masked-key reading: what the mask leaves visible is compared with a key.
    assert masked is not ABSENT and isinstance(masked["api_key"], Masked)
    assert masked["api_key"].could_be(value["api_key"])
    assert not masked["api_key"].could_be("x" * 24)


def test_a_409_on_the_order_webhook_is_re_read_and_retried(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    app, base = live_sandbox
    setting = BY_KEY["external_order_webhook"]
    conflict = {
        "method": "POST",
        "path": ORDER_PATH,
        "status": 409,
        "error_code": "concurrent_update_on_tenant_setting",
    }
    value = {"url": "https://oms.example/api", "api_key": "k" * 24, "timeout": 20}
    app.set_faults([{**conflict, "times": 1}])
    with _client(app, base, write_env) as client:
        setting.write(client, value)
        assert setting.read(client) == value
    app.set_faults([{**conflict, "times": 10}])
    with _client(app, base, write_env) as client, pytest.raises(ConflictError) as caught:
        setting.write(client, {**value, "timeout": 25})
    assert "kept losing a concurrent update (409), 3 attempts" in str(caught.value)
    assert "k" * 24 not in str(caught.value)


class _Tamper(httpx.BaseTransport):
    """NewStore normalising a document behind the client's back: after a PUT to `path`, the
    stored document gains a key (as if someone wrote it in between)."""

    def __init__(self, app: SandboxApp, path: str) -> None:
        self.app, self.path, self.inner = app, path, app.transport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "PUT" and request.url.path == self.path:
            state = self.app.state(TENANT)
            state["associate_app_config"]["customizations"]["hang_tag_printing_enabled"] = True
            self.app.seed(TENANT, state)
        return response


def test_an_associate_app_write_is_verified_on_read_back(
    sandbox: SandboxApp, write_env: WriteEnv
) -> None:
    from reconciler.config import load_environment

    path = write_env(TENANT, TENANT, "http://127.0.0.1:9", "")
    env = load_environment(path)
    setting = BY_KEY["associate_app"]
    with (
        NewStoreClient(env, transport=_Tamper(sandbox, APP_PATH)) as client,
        pytest.raises(RejectedError) as caught,
    ):
        setting.write(client, {"use_new_om_ui": True})
    message = str(caught.value)
    assert "differs from the one written at customizations.hang_tag_printing_enabled" in message
    assert "NewStore or someone else changed it" in message


def test_dump_store_writes_the_store_documents(live_sandbox: Sandbox, write_env: WriteEnv) -> None:
    app, base = live_sandbox
    app.seed(
        TENANT,
        {
            "external_oms": {"enabled": True},
            "external_order_webhook": dict(ORDER_WEBHOOK),
            "associate_app_store_configs": {"US01": _document(True)},
        },
    )
    source = write_env(TENANT, TENANT, base)

    result = run_cli(source.parent, "dump", TENANT, "--store", "US01", "--store", "US02")

    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "associate_app:\n  use_new_om_ui: false\n  stores:\n    US01:\n" in text
    assert "      use_new_om_ui: true\n    US02: absent\n" in text
    assert "external_order_webhook:\n  url: https://oms.acme.example/newstore\n" in text
    assert ORDER_WEBHOOK_API_KEY not in text
    bad = run_cli(source.parent, "dump", TENANT, "--store", "../x")
    assert bad.exit_code == 1 and "is not a store id" in bad.stderr


def test_the_back_plan_notes_that_unlisted_stores_were_not_checked(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    app, base = live_sandbox
    app.seed(
        TENANT,
        {
            "external_oms": {"enabled": True},
            "external_order_webhook": dict(ORDER_WEBHOOK),
        },
    )
    body = BACK_YAML.replace(
        "  stores:\n    US01: absent\n    US02:\n      use_new_om_ui: false\n", ""
    )
    path = write_env(TENANT, TENANT, base, body)

    result = run_cli(path.parent, "plan")

    assert result.exit_code == 0, result.output
    assert "NewStore's API cannot list stores" in result.stdout
    assert "no store is listed" in result.stdout


@pytest.mark.parametrize(
    "sandbox_config", [SandboxConfig(mask_webhook_api_key=True)], indirect=True
)
def test_store_requests_match_the_spec(sandbox: SandboxApp, write_env: WriteEnv) -> None:
    from reconciler.config import load_environment

    sandbox.seed(TENANT, {"associate_app_store_configs": {"US02": _document(True)}})
    path = write_env(TENANT, TENANT, "http://127.0.0.1:9", "")
    env = load_environment(path)
    setting = BY_KEY["associate_app"]
    value = {
        "use_new_om_ui": False,
        "stores.US01.use_new_om_ui": True,
        "stores.US02.use_new_om_ui": None,
    }
    with NewStoreClient(env, transport=sandbox.transport()) as client:
        setting.write(client, value)
        assert setting.read_managed(client, value) == value
    assert [
        (r["method"], r["path"])
        for r in sandbox.requests(TENANT)
        if r["path"] != (f"/auth/realms/{TENANT}/protocol/openid-connect/token")
    ] == [
        # Every document is read before the first write (issue 25.4).
        ("GET", APP_PATH),
        ("GET", f"{APP_PATH}/US01"),
        ("GET", f"{APP_PATH}/US02"),
        ("PUT", f"{APP_PATH}/US01"),
        ("GET", f"{APP_PATH}/US01"),
        ("DELETE", f"{APP_PATH}/US02"),
        ("GET", f"{APP_PATH}/US02"),
        ("GET", APP_PATH),
        ("GET", f"{APP_PATH}/US01"),
        ("GET", f"{APP_PATH}/US02"),
    ]


def test_a_reviewed_plan_with_store_documents_is_applied_exactly(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    app, base = live_sandbox
    directory = write_env(TENANT, TENANT, base, FORWARD_YAML).parent
    reviewed = tmp_path / "reviewed.json"
    assert run_cli(directory, "plan", "--out", str(reviewed)).exit_code == 0
    doc = json.loads(reviewed.read_text())
    (env,) = doc["environments"]
    assert env["live"]["associate_app"] == {
        "use_new_om_ui": False,
        "stores.US01.use_new_om_ui": None,
        "stores.US02.use_new_om_ui": None,
    }
    assert ORDER_WEBHOOK_API_KEY not in reviewed.read_text()

    # A store document appears between review and apply: the plan is stale.
    app.seed(TENANT, {"associate_app_store_configs": {"US02": _document(False)}})
    stale = _apply(directory, "--plan", str(reviewed), "--auto-approve")
    assert stale.exit_code == 1
    assert "associate_app.stores.US02.use_new_om_ui: planned from absent, now false" in stale.stderr
    assert _writes(app) == []

    app.seed(TENANT, {})
    applied = _apply(directory, "--plan", str(reviewed), "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert run_cli(directory, "plan", "--detailed-exitcode").exit_code == 0
