"""Issue 25.4: a read that fails never passes for "absent" or "off".

NewStore answering 404 once, where the plan (or the re-read just before) found a document, is
retried within the retry budget; if it persists, apply stops before writing, as "changed
underneath". A 404 on the tenant's global Associate App document is unknown, like 422: never
`use_new_om_ui` off. Through the real CLI against the sandbox on 127.0.0.1, with fault rules
playing the 404s (a rule without a status lets its requests through: it counts reads).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import ON, WEBHOOK, seed, writes
from click.testing import Result
from env_helpers import OFF_YAML, ON_YAML, STOCK_CONFIRMED_YAML, WriteEnv, run_cli

from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import WEBHOOK_PATH
from reconciler.sandbox.state import default_associate_app_config

Sandbox = tuple[SandboxApp, str]
TENANT = "acme-staging"
STORE = "S1"
GLOBAL_PATH = f"/{TENANT}/api/v1/associate-app/config"
STORE_PATH = f"{GLOBAL_PATH}/{STORE}"
WITH_STORE = ON_YAML.replace(
    "associate_app:\n  use_new_om_ui: true\n",
    f"associate_app:\n  use_new_om_ui: true\n  stores:\n    {STORE}:\n      use_new_om_ui: true\n",
)


def _on(base: str) -> dict[str, Any]:
    """The migrated state, its webhook the environment file's (only Associate App differs)."""
    hook = {**WEBHOOK, "url": f"{base}{WEBHOOK_PATH}"}
    return {**ON, "availability_webhook": hook}


def _store_document() -> dict[str, Any]:
    """The store's own document: its own logout time, barcodes and paper size."""
    document = default_associate_app_config()
    document["ui_configurations"]["use_new_om_ui"] = False
    document["ui_configurations"]["seconds_until_logout_on_inactivity"] = 120
    document["commerce_components"]["barcode_types"] = ["EAN8"]
    document["capabilities"]["printer_management"]["air_print_paper_width"] = 58
    return document


@pytest.fixture
def store_env(live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path) -> Path:
    """The tenant migrated, store S1 with a document of its own that still shows the old UI."""
    sandbox, base = live_sandbox
    seed(sandbox, TENANT, _on(base))
    state = sandbox.state(TENANT)
    state["associate_app_config"]["ui_configurations"]["use_new_om_ui"] = True
    state["associate_app_store_configs"] = {STORE: _store_document()}
    sandbox.seed(TENANT, state)
    return write_env(TENANT, TENANT, base, WITH_STORE).parent


def _apply(directory: Path) -> Result:
    return run_cli(
        directory, "apply", "--auto-approve", "--journal", str(directory.parent / "j.jsonl")
    )


def _reads_then_404(path: str, reads: int, times: int) -> list[dict[str, Any]]:
    return [
        {"method": "GET", "path": path, "times": reads},  # let the first `reads` through
        {"method": "GET", "path": path, "status": 404, "times": times},
    ]


def _store(sandbox: SandboxApp) -> dict[str, Any]:
    document: dict[str, Any] = sandbox.state(TENANT)["associate_app_store_configs"][STORE]
    return document


def test_one_404_inside_the_write_does_not_copy_the_global_document_over_the_store(
    live_sandbox: Sandbox, store_env: Path
) -> None:
    sandbox, _ = live_sandbox
    # The plan's read and the re-read before the step pass; the read inside the write is 404.
    sandbox.set_faults(_reads_then_404(STORE_PATH, 2, 1))

    result = _apply(store_env)

    assert result.exit_code == 0, result.output
    expected = _store_document()
    expected["ui_configurations"]["use_new_om_ui"] = True
    assert _store(sandbox) == expected, "only the managed field changed"


def test_a_404_inside_the_write_that_persists_stops_before_writing(
    live_sandbox: Sandbox, store_env: Path
) -> None:
    sandbox, _ = live_sandbox
    sandbox.set_faults(_reads_then_404(STORE_PATH, 2, 50))

    result = _apply(store_env)

    assert result.exit_code == 1, result.output
    assert "associate_app changed underneath" in result.stderr, result.stderr
    assert f"store {STORE}" in result.stderr
    assert "Traceback" not in result.output
    assert writes(sandbox, TENANT) == []
    assert _store(sandbox) == _store_document()


def test_one_404_on_the_reread_before_the_step_is_retried(
    live_sandbox: Sandbox, store_env: Path
) -> None:
    sandbox, _ = live_sandbox
    # The plan's read passes; the re-read right before the step answers 404 once.
    sandbox.set_faults(_reads_then_404(STORE_PATH, 1, 1))

    result = _apply(store_env)

    assert result.exit_code == 0, result.output
    assert _store(sandbox)["ui_configurations"]["use_new_om_ui"] is True
    assert _store(sandbox)["ui_configurations"]["seconds_until_logout_on_inactivity"] == 120


def test_a_404_on_the_reread_that_persists_is_changed_underneath(
    live_sandbox: Sandbox, store_env: Path
) -> None:
    sandbox, _ = live_sandbox
    sandbox.set_faults(_reads_then_404(STORE_PATH, 1, 50))

    result = _apply(store_env)

    assert result.exit_code == 1, result.output
    assert "associate_app changed underneath" in result.stderr
    assert writes(sandbox, TENANT) == []


def test_404s_on_the_global_document_are_unknown_never_off(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """The migration back, with the new OM UI live: reading the global document as "off"
    would switch the external OMS off under it (rule 3)."""
    sandbox, base = live_sandbox
    seed(sandbox, TENANT, _on(base))
    state = sandbox.state(TENANT)
    state["associate_app_config"]["ui_configurations"]["use_new_om_ui"] = True
    sandbox.seed(TENANT, state)
    before = copy.deepcopy(sandbox.state(TENANT))
    directory = write_env(TENANT, TENANT, base, OFF_YAML).parent
    (directory / f"{TENANT}.yaml").write_text(
        (directory / f"{TENANT}.yaml").read_text() + STOCK_CONFIRMED_YAML
    )
    sandbox.set_faults([{"method": "GET", "path": GLOBAL_PATH, "status": 404, "times": 2}])

    result = _apply(directory)

    assert result.exit_code == 1, result.output
    assert "whether ui_configurations.use_new_om_ui is on is unknown" in result.stderr
    assert "(404)" in result.stderr
    assert writes(sandbox, TENANT) == []
    assert sandbox.state(TENANT) == before


def test_the_tenant_without_a_global_document_is_an_error_in_plan(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    sandbox.seed(TENANT, {"associate_app_config": None})
    directory = write_env(TENANT, TENANT, base, OFF_YAML).parent

    result = run_cli(directory, "plan")

    assert result.exit_code == 1, result.output
    assert "has no Associate App configuration document for the tenant (404)" in result.stderr
    assert "Traceback" not in result.output
