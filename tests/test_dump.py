"""`reconciler dump` end to end: adopt a tenant from its live state, then plan it to zero."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from env_helpers import WriteEnv, run_cli

from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.state import default_associate_app_config

LIVE_KEY = "live-webhook-key-only-newstore-has-01"
ORDER_KEY = "live-order-webhook-key-newstore-has-01"
SECRETS = (LIVE_KEY, ORDER_KEY, DEFAULT_WEBHOOK_API_KEY, "sandbox-secret")
STORES_NOTE = (
    "NewStore's API cannot list stores: only the store documents the file lists or --store "
    "names were read "
)


def _state(*, oms: bool | None, hook: bool, atp: bool | None, ui: bool) -> dict[str, Any]:
    document = default_associate_app_config()
    document["ui_configurations"]["use_new_om_ui"] = ui
    return {
        "external_oms": None if oms is None else {"enabled": oms},
        "availability_webhook": {
            "url": f"https://atp.acme.example{WEBHOOK_PATH}",
            "api_key": LIVE_KEY,
            "external_identifier": "product_id",
            "timeout": 15,
        }
        if hook
        else None,
        "uses_external_atp": atp,
        "associate_app_config": document,
        # The new order UI fetches external orders through it (rule 4).
        "external_order_webhook": {
            "url": "https://oms.acme.example/newstore",
            "api_key": ORDER_KEY,
            "timeout": 15,
        }
        if ui
        else None,
    }


# The example environments' states, as a tenant has them live.
STATES = {
    "fresh": None,  # never configured: the sandbox's defaults
    "mid-way": _state(oms=True, hook=True, atp=False, ui=False),  # acme-staging
    "fully-external": _state(oms=True, hook=True, atp=True, ui=True),  # acme-production
    "back-on-newstore": _state(oms=False, hook=False, atp=False, ui=False),  # acme-eu
}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize(
    "sandbox_config",
    [SandboxConfig(), SandboxConfig(mask_webhook_api_key=True)],
    ids=["clear", "masked"],
    indirect=True,
)
def test_dump_then_plan_shows_no_changes(
    state: str,
    sandbox_config: SandboxConfig,
    live_sandbox: tuple[SandboxApp, str],
    write_env: WriteEnv,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox, base = live_sandbox
    if STATES[state] is not None:
        sandbox.seed("acme-adopt", STATES[state])
    source = write_env("acme-adopt", "acme-adopt", base)  # tenant and connection only
    directory = source.parent

    result = run_cli(directory, "dump", "acme-adopt", "--out", str(source), "--force")

    assert result.exit_code == 0, result.output
    assert (
        result.stderr
        == f"Note: {STORES_NOTE}(none); add `--store ID` for any other store with a document "
        "of its own\n"
    )
    dumped = source.read_text()
    assert_no_secret(dumped, result.output)
    for key in ("external_oms:", "availability_webhook:", "external_atp:", "associate_app:"):
        assert f"\n{key}" in dumped
    assert "client_secret: ${SANDBOX_CLIENT_SECRET}" in dumped, "copied as written"
    hook = STATES[state] is not None and STATES[state]["availability_webhook"] is not None
    if hook:
        assert "  api_key: ${ACME_ADOPT_ATP_API_KEY}  # " in dumped
        assert "#   export ACME_ADOPT_ATP_API_KEY=..." in dumped
        assert ("masked" in dumped) is sandbox_config.mask_webhook_api_key
    else:
        assert "\navailability_webhook: absent\n" in dumped
        assert "ATP_API_KEY" not in dumped

    monkeypatch.setenv("ACME_ADOPT_ATP_API_KEY", LIVE_KEY)
    order = STATES[state] is not None and STATES[state]["external_order_webhook"] is not None
    if order:
        assert "  api_key: ${ACME_ADOPT_EXTERNAL_ORDER_WEBHOOK_API_KEY}  # " in dumped
        # The key NewStore holds: a masked read still shows its last characters, which a
        # different key could not match (issue 12's masked-key comparison).
        monkeypatch.setenv("ACME_ADOPT_EXTERNAL_ORDER_WEBHOOK_API_KEY", ORDER_KEY)
    else:
        # Never set, and the API has no DELETE: left unmanaged, not `absent`.
        assert "\n# external_order_webhook: not configured in NewStore" in dumped
    plan = run_cli(directory, "plan", "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "acme-adopt: no changes" in plan.stdout
    if hook and sandbox_config.mask_webhook_api_key:
        # Since issue 12 (it was "any key of the right shape plans to zero"): the sandbox's
        # mask shows the key's last four characters, and a key that does not end like them
        # cannot be the one NewStore holds: exporting it plans the rewrite.
        monkeypatch.setenv("ACME_ADOPT_ATP_API_KEY", "some-other-key-of-20-chars")
        plan = run_cli(directory, "plan", "--detailed-exitcode")
        assert plan.exit_code in (2, 3), plan.output
        assert "api_key: (sensitive) → (sensitive, changed)" in plan.stdout


def test_a_file_with_settings_is_refreshed_in_place_and_keeps_managing_just_those(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    sandbox.seed("acme-mid", STATES["mid-way"] or {})
    directory = write_env("unused", "unused", base).parent
    (directory / "_base.yaml").write_text(
        textwrap.dedent(
            """\
            connection:
              client_id: sandbox
              client_secret: ${SANDBOX_CLIENT_SECRET}  # from CI secrets
            gates:
              newstore_stock_confirmed: false
            """
        )
    )
    (directory / "acme-mid.yaml").write_text(
        textwrap.dedent(
            f"""\
            # yaml-language-server: $schema=../../schemas/environment.schema.json
            extends: _base.yaml
            tenant: acme-mid   # staging rehearsal
            connection:
              base_url: {base}/acme-mid
              token_url: {base}/auth/realms/acme-mid/protocol/openid-connect/token

            # the probe used before external ATP goes on
            gates:
              webhook_probe:
                products: ["1000061"]
                fulfillment_locations: ["US01"]
            external_oms:
              enabled: false     # stale: the live state wins
            """
        )
    )

    result = run_cli(directory, "dump", "acme-mid")

    assert result.exit_code == 0, result.output
    text = result.stdout
    # Everything but the stale setting is the file's own text, byte for byte.
    source = (directory / "acme-mid.yaml").read_text()
    assert text == source.replace(
        "external_oms:\n  enabled: false     # stale: the live state wins\n",
        "external_oms:\n  enabled: true\n",
    )
    # The file leaves the other settings unmanaged: they stay so, and the dump says what it
    # left out.
    assert "availability_webhook" not in text
    assert (
        "Note: availability_webhook is configured in NewStore but not managed by "
        f"{directory / 'acme-mid.yaml'}"
    ) in result.stderr

    elsewhere = tmp_path / "adopted" / "acme-mid.yaml"
    elsewhere.parent.mkdir()
    written = run_cli(directory, "dump", "acme-mid", "--out", str(elsewhere))
    assert written.exit_code == 0, written.output
    assert "extends: ../environments/_base.yaml\n" in elsewhere.read_text()
    assert written.stdout == f"Wrote {elsewhere}; set SANDBOX_CLIENT_SECRET before planning it.\n"


def test_out_is_not_overwritten_without_force(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    source = write_env("acme-adopt", "acme-adopt", base)
    before = source.read_text()

    result = run_cli(source.parent, "dump", "acme-adopt", "--out", str(source))

    assert result.exit_code == 1
    assert f"{source} already exists; pass --force to overwrite it." in result.stderr
    assert source.read_text() == before
    assert sandbox.requests("acme-adopt") == [], "refused before reading anything"


def test_a_live_state_that_breaks_a_rule_is_dumped_with_a_warning(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    sandbox.seed("acme-adopt", _state(oms=False, hook=False, atp=True, ui=False))
    source = write_env("acme-adopt", "acme-adopt", base)

    result = run_cli(source.parent, "dump", "acme-adopt")

    assert result.exit_code == 0, result.output
    assert "Warning: the live state of acme-adopt breaks rule 1 (" in result.stderr
    assert "breaks rule 2 (external ATP on ⇒ the external OMS flag is on)" in result.stderr
    assert "external_atp:\n  enabled: true\n" in result.stdout
    assert "availability_webhook: absent\n" in result.stdout
    assert "Warning" not in result.stdout
