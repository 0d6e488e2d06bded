"""Issue 25.8: the sandbox is a safe place to rehearse.

A web page the user visits must not reach it (DNS rebinding: a `Host` the sandbox does not
serve; a cross-site `text/plain` POST), its admin endpoints show no webhook key unless it was
started to, its state file is private and whole, and `init`'s rehearsal sends the sandbox's
own demo keys, never the real ones. Against the sandbox on 127.0.0.1 and through the real CLI.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from apply_helpers import ON, ORDER_WEBHOOK_API_KEY, seed

from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY

TENANT = "acme-staging"
STATE = f"/_sandbox/tenants/{TENANT}/state"
TOKEN = f"/auth/realms/{TENANT}/protocol/openid-connect/token"
CREDENTIALS = {"grant_type": "client_credentials", "client_id": "sandbox"} | {
    "client_secret": "sandbox-secret"
}
REAL_ATP_KEY = "real-staging-atp-key-never-leaves-0001"
REAL_ORDER_KEY = "real-staging-order-key-never-leaves-01"
REAL_CLIENT_SECRET = "real-staging-client-secret-0123456789"


# -- Host allow-list --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["attacker.example", "attacker.example:8765", "127.0.0.1.nip.io", "localhost.attacker.example"],
)
def test_a_host_the_sandbox_does_not_serve_is_refused(
    live_sandbox: tuple[SandboxApp, str], host: str
) -> None:
    sandbox, base = live_sandbox
    seed(sandbox, TENANT, ON)
    with httpx.Client(base_url=base, timeout=10) as client:
        for method, path, kwargs in (
            ("GET", STATE, {}),
            ("POST", TOKEN, {"data": CREDENTIALS}),
            ("POST", "/_sandbox/faults", {"json": {"rules": []}}),
        ):
            response = client.request(method, path, headers={"Host": host}, **kwargs)
            assert response.status_code == 421, (method, path, response.text)
            assert DEFAULT_WEBHOOK_API_KEY not in response.text
            assert "access_token" not in response.text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST.", "127.0.0.2"])
def test_loopback_names_are_served(live_sandbox: tuple[SandboxApp, str], host: str) -> None:
    _, base = live_sandbox
    port = base.rsplit(":", 1)[1]
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get(STATE, headers={"Host": f"{host}:{port}"}).status_code == 200


def test_the_configured_host_is_served(sandbox: SandboxApp) -> None:
    with (
        running(sandbox, allowed_hosts=("sandbox.internal",)) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        assert client.get(STATE, headers={"Host": "sandbox.internal:1234"}).status_code == 200
        assert client.get(STATE, headers={"Host": "other.internal"}).status_code == 421


# -- admin writes need JSON -------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/_sandbox/faults"), ("PUT", STATE)])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_admin_writes_need_a_json_content_type(
    live_sandbox: tuple[SandboxApp, str], method: str, path: str, content_type: str | None
) -> None:
    """A page on any site may POST text/plain to 127.0.0.1 without asking (no CORS
    preflight); only JSON, which needs one, may change the sandbox."""
    sandbox, base = live_sandbox
    body = json.dumps({"rules": [{"path": "/*", "status": 503, "times": None}]})
    if method == "PUT":
        body = json.dumps({"uses_external_atp": True})
    headers = {"Content-Type": content_type} if content_type else {}
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert sandbox.faults() == []
    assert sandbox.state(TENANT)["uses_external_atp"] is None


# -- admin reads mask keys ----------------------------------------------------------------------


def test_admin_reads_mask_the_keys(live_sandbox: tuple[SandboxApp, str]) -> None:
    sandbox, base = live_sandbox
    seed(sandbox, TENANT, ON)
    with httpx.Client(base_url=base, timeout=10) as client:
        token = client.post(TOKEN, data=CREDENTIALS).json()["access_token"]
        written = client.post(  # a write, so that the history has a state in it
            f"/{TENANT}/v0/config/sales_order/external_oms",
            json={"value": {"enabled": False}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert written.status_code == 200, written.text
        state = client.get(STATE).text
        history = client.get(f"/_sandbox/tenants/{TENANT}/history").text
    for text in (state, history):
        assert DEFAULT_WEBHOOK_API_KEY not in text and ORDER_WEBHOOK_API_KEY not in text
        assert text.count('"api_key": "(masked)"') == 2, text
    # The Python face, which only a test in this process has, is not masked.
    assert sandbox.state(TENANT)["external_order_webhook"]["api_key"] == ORDER_WEBHOOK_API_KEY


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(admin_shows_keys=True)], indirect=True)
def test_admin_reads_show_keys_when_started_to(live_sandbox: tuple[SandboxApp, str]) -> None:
    sandbox, base = live_sandbox
    seed(sandbox, TENANT, ON)
    with httpx.Client(base_url=base, timeout=10) as client:
        state = client.get(STATE).json()
    assert state["availability_webhook"]["api_key"] == DEFAULT_WEBHOOK_API_KEY


# -- the state file ----------------------------------------------------------------------------


def test_the_state_file_is_private_and_whole(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text('{"format": 1, "tenants": {}}\n')
    state_file.chmod(0o644)  # as an older sandbox left it
    old_umask = os.umask(0o022)
    try:
        app = SandboxApp(SandboxConfig(state_file=state_file))
        seed(app, TENANT, ON)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert json.loads(state_file.read_text())["tenants"][TENANT]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"], "no temporary left"

    fresh = tmp_path / "new-state.json"
    seed(SandboxApp(SandboxConfig(state_file=fresh)), TENANT, ON)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


# -- init's rehearsal --------------------------------------------------------------------------

FORWARD_STAGING = """\
extends: _base.yaml
tenant: acme-staging
external_oms:
  enabled: true
availability_webhook:
  url: https://atp.acme.example/availabilities
  api_key: ${ACME_STAGING_ATP_API_KEY}
  external_identifier: product_id
  timeout: 15
external_atp:
  enabled: true
external_order_webhook:
  url: https://oms.acme.example/newstore
  api_key: ${ACME_STAGING_ORDER_WEBHOOK_API_KEY}
  timeout: 15
associate_app:
  use_new_om_ui: true
"""


@pytest.mark.e2e
def test_rehearsal_sends_the_sandboxs_demo_keys_never_the_real_ones(
    tmp_path: Path, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, base = live_sandbox
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSTORE_", "SANDBOX_"))}
    made = subprocess.run(
        [sys.executable, "-m", "reconciler", "init", "config", "--ci", "none"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    repo = tmp_path / "config"
    (repo / "environments/staging.yaml").write_text(FORWARD_STAGING)
    rehearsal = repo / "rehearsal/staging.yaml"
    rehearsal.write_text(rehearsal.read_text().replace("http://127.0.0.1:8765", base))
    # The real secrets are in the shell, as on the machine of someone who also applies.
    real = env | {
        "NEWSTORE_CLIENT_ID": "real-client",
        "NEWSTORE_CLIENT_SECRET": REAL_CLIENT_SECRET,
        "ACME_STAGING_ATP_API_KEY": REAL_ATP_KEY,
        "ACME_STAGING_ORDER_WEBHOOK_API_KEY": REAL_ORDER_KEY,
    }

    command = [sys.executable, "-m", "reconciler", "--environments-dir", "rehearsal"]
    result = subprocess.run(
        [*command, "apply", "--auto-approve", "--journal", str(tmp_path / "j.jsonl")],
        cwd=repo,
        env=real,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    state = sandbox.state(TENANT)
    assert state["uses_external_atp"] is True
    assert state["availability_webhook"]["api_key"] == DEFAULT_WEBHOOK_API_KEY
    assert state["availability_webhook"]["url"] == f"{base}/_sandbox/webhook/availabilities"
    assert state["external_order_webhook"]["api_key"] != REAL_ORDER_KEY
    everything = json.dumps([state, sandbox.history(TENANT)])
    for secret in (REAL_ATP_KEY, REAL_ORDER_KEY, REAL_CLIENT_SECRET):
        assert secret not in everything
    # The same rehearsal without any real secret in the shell: nothing of them is read.
    sandbox.seed(TENANT, {})
    again = subprocess.run(
        [sys.executable, "-m", "reconciler", "--environments-dir", "rehearsal", "plan"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_rehearsal_refuses_a_host_other_than_this_machine(tmp_path: Path) -> None:
    directory = tmp_path / "rehearsal"
    directory.mkdir()
    (directory / "staging.yaml").write_text(
        "rehearsal: true\ntenant: acme-staging\nconnection:\n"
        "  base_url: https://acme-staging.p.newstore.net\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "--environments-dir", str(directory), "validate"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("NEWSTORE_")},
    )
    assert result.returncode == 1
    assert "staging.yaml:1:1: rehearsal: a rehearsal talks to the local sandbox only" in (
        result.stderr
    ), result.stderr
