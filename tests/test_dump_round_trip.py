"""`dump` over an existing file (issue 23.2): it keeps `extends`, the variable names and the
listed stores, writes only what the base does not already say, prints a diff; over each
shipped example whose tenant matches it, it is a zero-diff round trip."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from env_helpers import run_cli
from example_helpers import EXAMPLE_KEYS, EXAMPLES, examples_on, seed_as_written

from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.app import WEBHOOK_PATH
from reconciler.sandbox.state import default_associate_app_config


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize(
    "sandbox_config",
    [SandboxConfig(), SandboxConfig(mask_webhook_api_key=True)],
    ids=["clear", "masked"],
    indirect=True,
)
def test_dump_force_over_each_shipped_example_is_a_zero_diff_round_trip(
    name: str,
    sandbox_config: SandboxConfig,
    live_sandbox: tuple[SandboxApp, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox, base = live_sandbox
    for variable, value in EXAMPLE_KEYS.items():
        monkeypatch.setenv(variable, value)
    directory = examples_on(base, tmp_path / "environments")
    path = directory / f"{name}.yaml"
    seed_as_written(sandbox, path, EXAMPLE_KEYS)
    before = path.read_bytes()

    result = run_cli(directory, "dump", name, "--out", str(path), "--force")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path} already says what NewStore holds: nothing to change.\n"
    assert path.read_bytes() == before
    assert "Warning" not in result.stderr
    if "stores:" in before.decode():
        assert "were read (STORE-PILOT, STORE-OLD)" in result.stderr
    for value in EXAMPLE_KEYS.values():
        assert value == "sandbox" or value not in result.output


BASE = """\
connection:
  client_id: sandbox
  client_secret: ${SANDBOX_CLIENT_SECRET}
external_oms:
  enabled: true   # every acme tenant routes orders to the OMS
gates:
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
"""
STAGING = """\
# yaml-language-server: $schema=../schemas/environment.schema.json
#
# Staging: our rehearsal tenant.
extends: _base.yaml
tenant: acme-staging
connection:
  base_url: {base}/acme-staging
  token_url: {base}/auth/realms/acme-staging/protocol/openid-connect/token

availability_webhook:
  url: https://atp-staging.acme.example/availabilities   # the old ATP host
  api_key: ${{ACME_STAGING_ATP_API_KEY}}
  timeout: 15
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
  stores:
    US01:
      use_new_om_ui: false
    US02: absent

policy:
  timezone: Europe/Berlin
"""


def _live(*, oms: bool, url: str) -> dict[str, object]:
    """US01 has no document of its own (the file says it has one); US02 has (the file says
    `absent`)."""
    return {
        "external_oms": {"enabled": oms},
        "availability_webhook": {
            "url": url,
            "api_key": "staging-atp-key-newstore-holds-01",
            "external_identifier": "product_id",
            "timeout": 15,
        },
        "uses_external_atp": False,
        "associate_app_config": default_associate_app_config(),
        "associate_app_store_configs": {"US02": default_associate_app_config()},
    }


@pytest.mark.e2e
def test_dump_over_a_file_keeps_extends_names_and_stores_and_shows_the_diff(
    live_sandbox: tuple[SandboxApp, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, base = live_sandbox
    monkeypatch.setenv("SANDBOX_CLIENT_SECRET", "sandbox-secret")
    monkeypatch.setenv("ACME_STAGING_ATP_API_KEY", "staging-atp-key-newstore-holds-01")
    directory = tmp_path / "environments"
    directory.mkdir()
    (directory / "_base.yaml").write_text(BASE)
    path = directory / "acme-staging.yaml"
    path.write_text(STAGING.format(base=base))
    new_url = f"https://atp.acme.example{WEBHOOK_PATH}"
    sandbox.seed("acme-staging", _live(oms=True, url=new_url))

    result = run_cli(directory, "dump", "acme-staging", "--out", str(path), "--force")

    assert result.exit_code == 0, result.output
    text = path.read_text()
    expected = (
        STAGING.format(base=base)
        .replace(
            "  url: https://atp-staging.acme.example/availabilities   # the old ATP host\n"
            "  api_key: ${ACME_STAGING_ATP_API_KEY}\n"
            "  timeout: 15\n",
            f"  url: {new_url}\n  api_key: ${{ACME_STAGING_ATP_API_KEY}}\n  timeout: 15\n",
        )
        .replace(
            "    US01:\n      use_new_om_ui: false\n    US02: absent\n",
            "    US01: absent\n    US02:\n      use_new_om_ui: false\n",
        )
    )
    assert text == expected  # extends, comments, policy, the variable and US02 kept
    assert "external_oms" not in text, "the base already says it"
    out = result.stdout
    assert out.startswith(f"--- {path} (before)\n+++ {path} (NewStore now)\n")
    assert "-  url: https://atp-staging.acme.example/availabilities   # the old ATP host\n" in out
    assert f"+  url: {new_url}\n" in out
    assert "+    US01: absent\n+    US02:\n" in out and "-    US02: absent\n" in out
    assert out.endswith(f"Wrote {path} (availability_webhook, associate_app changed).\n")
    assert "were read (US01, US02)" in result.stderr
    assert "staging-atp-key-newstore-holds-01" not in result.output + text

    planned = run_cli(directory, "plan", "--detailed-exitcode")
    assert planned.exit_code == 0, planned.output

    # The base says the external OMS is on; this tenant turned it off: only the file overrides.
    sandbox.seed("acme-staging", _live(oms=False, url=new_url))
    again = run_cli(directory, "dump", "acme-staging", "--out", str(path), "--force")
    assert again.exit_code == 0, again.output
    assert "+external_oms:\n+  enabled: false\n" in again.stdout
    assert path.read_text() == text.replace(
        "\navailability_webhook:", "\nexternal_oms:\n  enabled: false\navailability_webhook:"
    )
    assert (directory / "_base.yaml").read_text() == BASE
    assert run_cli(directory, "plan", "--detailed-exitcode").exit_code == 0


def test_a_stub_dumped_to_a_new_file_says_which_variables_to_set(
    live_sandbox: tuple[SandboxApp, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, base = live_sandbox
    monkeypatch.setenv("SANDBOX_CLIENT_SECRET", "sandbox-secret")
    sandbox.seed("acme-new", _live(oms=True, url=f"https://atp.acme.example{WEBHOOK_PATH}"))
    directory = tmp_path / "environments"
    directory.mkdir()
    (directory / "acme-new.yaml").write_text(
        textwrap.dedent(
            f"""\
            tenant: acme-new
            connection:
              base_url: {base}/acme-new
              token_url: {base}/auth/realms/acme-new/protocol/openid-connect/token
              client_id: sandbox
              client_secret: ${{SANDBOX_CLIENT_SECRET}}
            """
        )
    )
    out = directory / "adopted.yaml"
    result = run_cli(directory, "dump", "acme-new", "--out", str(out), "--store", "US02")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Wrote {out}; set SANDBOX_CLIENT_SECRET, ACME_NEW_ATP_API_KEY before planning it.\n"
    )
    text = out.read_text()
    assert "#   export ACME_NEW_ATP_API_KEY=...\n" in text
    assert "  stores:\n    US02:\n      use_new_om_ui: false\n" in text
    assert "only the store documents the file lists or --store names were read (US02)" in (
        result.stderr
    )


def test_a_rehearsal_dumped_into_the_real_file_keeps_the_real_files_connection(
    live_sandbox: tuple[SandboxApp, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENV's file (rehearsal/) says where to read; the file edited (--out, the real one) keeps
    its own extends and connection: `extends: ../environments/staging.yaml` never lands in the
    file it points at."""
    sandbox, base = live_sandbox
    monkeypatch.setenv("SANDBOX_CLIENT_SECRET", "sandbox-secret")
    real = tmp_path / "environments"
    real.mkdir()
    (real / "_base.yaml").write_text("connection:\n  timeout: 10\n")
    staging = real / "staging.yaml"
    before = (
        "extends: _base.yaml\ntenant: acme-staging\n\n"
        "external_oms:\n  enabled: false\nexternal_atp:\n  enabled: false\n"
        "associate_app:\n  use_new_om_ui: false\n"
    )
    staging.write_text(before)
    rehearsal = tmp_path / "rehearsal"
    rehearsal.mkdir()
    (rehearsal / "staging.yaml").write_text(
        "extends: ../environments/staging.yaml\nconnection:\n"
        f"  base_url: {base}/acme-staging\n"
        f"  token_url: {base}/auth/realms/acme-staging/protocol/openid-connect/token\n"
        "  client_id: sandbox\n  client_secret: ${SANDBOX_CLIENT_SECRET}\n"
    )
    sandbox.seed("acme-staging", {"external_oms": {"enabled": True}})

    result = run_cli(rehearsal, "dump", "staging", "--out", str(staging), "--force")

    assert result.exit_code == 0, result.output
    assert staging.read_text() == before.replace(
        "external_oms:\n  enabled: false", "external_oms:\n  enabled: true"
    )
    assert "-  enabled: false\n+  enabled: true\n" in result.stdout


def test_a_rehearsal_true_dumped_into_the_real_file_never_writes_the_sandbox_webhook(
    live_sandbox: tuple[SandboxApp, str], tmp_path: Path
) -> None:
    """`rehearsal: true` (issue 25) points the availability webhook at the sandbox's sample
    one and sends demo keys: a rehearsed tenant holds those. Dumped back into the real file,
    the real webhook url and variable stay; the real file must never learn the sandbox's."""
    sandbox, base = live_sandbox
    real = tmp_path / "environments"
    real.mkdir()
    staging = real / "staging.yaml"
    before = (
        "tenant: acme-staging\n"
        "external_oms:\n  enabled: true\n"
        "availability_webhook:\n  url: https://atp.acme.example/availabilities\n"
        "  api_key: ${ACME_STAGING_ATP_API_KEY}\n  external_identifier: product_id\n"
        "  timeout: 15\n"
        "external_atp:\n  enabled: true\n"
        'gates:\n  webhook_probe:\n    products: ["1000061"]\n'
        '    fulfillment_locations: ["US01"]\n'
    )
    staging.write_text(before)
    rehearsal = tmp_path / "rehearsal"
    rehearsal.mkdir()
    (rehearsal / "staging.yaml").write_text(
        "extends: ../environments/staging.yaml\nrehearsal: true\nconnection:\n"
        f"  base_url: {base}/acme-staging\n"
        f"  token_url: {base}/auth/realms/acme-staging/protocol/openid-connect/token\n"
    )
    applied = run_cli(
        rehearsal, "apply", "--auto-approve", "--journal", str(tmp_path / "journal.jsonl")
    )
    assert applied.exit_code == 0, applied.output
    assert run_cli(rehearsal, "plan", "--detailed-exitcode").exit_code == 0
    held = sandbox.state("acme-staging")["availability_webhook"]
    assert held["url"] == f"{base}{WEBHOOK_PATH}", "what a rehearsal sends"

    result = run_cli(rehearsal, "dump", "staging", "--out", str(staging), "--force")

    assert result.exit_code == 0, result.output
    assert staging.read_text() == before
    assert WEBHOOK_PATH not in result.output
