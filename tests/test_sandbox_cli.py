"""`reconciler sandbox` as users run it, and the sandbox's OAuth behaviour over 127.0.0.1."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY

TENANT = "acme-staging"
OMS = f"/{TENANT}/v0/config/sales_order/external_oms"
HOOK = f"/{TENANT}/v0/config/availability/webhook"
TOKEN = f"/auth/realms/{TENANT}/protocol/openid-connect/token"
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "sandbox",
    "client_secret": "sandbox-secret",
}
READY = "NewStore sandbox listening on "

Auth = Callable[[httpx.Client, str], dict[str, str]]


@dataclass
class Process:
    popen: subprocess.Popen[str]
    url: str
    seconds_to_ready: float
    stdout: list[str] = field(default_factory=list)

    def interrupt(self) -> tuple[int, str]:
        """SIGINT, as Ctrl-C sends; returns (exit code, stderr)."""
        self.popen.send_signal(signal.SIGINT)
        code = self.popen.wait(timeout=10)
        assert self.popen.stderr is not None
        return code, self.popen.stderr.read()


@contextmanager
def sandbox_process(*args: str) -> Iterator[Process]:
    """`reconciler sandbox --port 0 ARGS` in a subprocess, once it has printed its URL."""
    started = time.monotonic()
    popen = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "sandbox", "--port", "0", *args],
        # Without SANDBOX_WEBHOOK_API_KEY, which sets the key: only `args` configure it.
        env={k: v for k, v in os.environ.items() if k != "SANDBOX_WEBHOOK_API_KEY"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen: list[str] = []
        while not (seen and seen[-1].startswith(READY)):
            try:
                seen.append(lines.get(timeout=20))
            except queue.Empty:
                pytest.fail(f"sandbox did not start; stdout so far: {seen}")
        process = Process(popen, seen[-1][len(READY) :], time.monotonic() - started, seen)
        time.sleep(0.3)  # let the rest of the banner arrive
        while not lines.empty():
            process.stdout.append(lines.get())
        yield process
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.wait(timeout=10)
        for stream in (popen.stdout, popen.stderr):
            if stream is not None:
                stream.close()


def _token(client: httpx.Client) -> dict[str, str]:
    response = client.post(TOKEN, data=CREDENTIALS)
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_starts_prints_how_to_connect_answers_and_stops_on_ctrl_c() -> None:
    with sandbox_process() as process:
        assert process.url.startswith("http://127.0.0.1:")
        banner = "\n".join(process.stdout)
        assert "client id:      sandbox" in banner
        assert "sandbox-secret" in banner  # the public demo secret, meant to be shown
        assert f"base_url: {process.url}/acme-staging" in banner
        # The built-in demo key is public, like the secret: shown, since probes need it.
        # (Deliberate change: it used to be hidden, which left users guessing.)
        assert f"webhook key:    {DEFAULT_WEBHOOK_API_KEY}" in banner

        with httpx.Client(base_url=process.url, timeout=10) as client:
            assert client.get(f"/_sandbox/tenants/{TENANT}/state").status_code == 200
            client.headers.update(_token(client))
            assert client.get(OMS).json()["value"] == {"enabled": False}
            # A dropped connection on the real server leaves no traceback behind.
            client.post(
                "/_sandbox/faults", json={"rules": [{"path": OMS, "drop_connection": True}]}
            )
            with pytest.raises(httpx.RemoteProtocolError):
                client.get(OMS)
            assert client.get(OMS).status_code == 200

        code, stderr = process.interrupt()
    assert code == 0
    assert "Traceback" not in stderr
    assert "Error on request" not in stderr


@pytest.mark.parametrize("quiet", [False, True])
def test_each_request_is_logged_unless_quiet(quiet: bool) -> None:
    with sandbox_process(*(["--quiet"] if quiet else [])) as process:
        with httpx.Client(base_url=process.url, timeout=10) as client:
            assert client.get(f"/_sandbox/tenants/{TENANT}/state").status_code == 200
            assert client.get("/no/such/path").status_code == 404
        code, stderr = process.interrupt()
    assert code == 0
    logged = [line for line in stderr.splitlines() if "GET /" in line]
    if quiet:
        assert logged == []
    else:
        assert len(logged) == 2
        assert f'/_sandbox/tenants/{TENANT}/state HTTP/1.1" 200' in logged[0]
        assert "/no/such/path HTTP/1.1" in logged[1]  # (coloured: a 404)
        assert logged[1].endswith(" 404 -")


def test_ctrl_c_stops_with_an_idle_keep_alive_connection_open() -> None:
    with sandbox_process() as process, httpx.Client(base_url=process.url, timeout=10) as client:
        first = client.post(TOKEN, data=CREDENTIALS)
        second = client.get(f"/_sandbox/tenants/{TENANT}/state")
        ports = {
            r.extensions["network_stream"].get_extra_info("client_addr")[1] for r in (first, second)
        }
        assert len(ports) == 1  # one connection, still open and idle in the client's pool
        code, stderr = process.interrupt()  # waits at most 10 s
    assert code == 0
    assert "Traceback" not in stderr


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox-state.json"
    hook = {
        "url": "https://atp.acme.example/availabilities",
        "api_key": "a-webhook-key-of-20-chars",
        "external_identifier": "product_id",
        "timeout": 15,
    }
    with sandbox_process("--state", str(state_file)) as process:
        with httpx.Client(base_url=process.url, timeout=10) as client:
            client.headers.update(_token(client))
            assert client.post(OMS, json={"value": {"enabled": True}}).status_code == 200
            assert client.put(HOOK, json=hook).status_code == 200
        assert process.interrupt()[0] == 0

    assert json.loads(state_file.read_text())["tenants"][TENANT]["state"]["external_oms"] == {
        "enabled": True
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [state_file.name]  # no temp leftovers

    with sandbox_process("--state", str(state_file), "--admin-shows-keys") as process:
        with httpx.Client(base_url=process.url, timeout=10) as client:
            state = client.get(f"/_sandbox/tenants/{TENANT}/state").json()
            assert state["external_oms"] == {"enabled": True}
            assert state["availability_webhook"] == hook
            client.headers.update(_token(client))
            assert client.get(HOOK).json() == hook
        assert process.interrupt()[0] == 0


def test_busy_port_is_a_one_line_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["sandbox", "--port", str(port)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: cannot listen on http://127.0.0.1:{port}:")
    assert "Traceback" not in result.output


def test_short_webhook_api_key_is_refused_without_echoing_it() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "--port", "0", "--webhook-api-key", "tooshort"])
    assert result.exit_code == 1
    assert "at least 20 characters" in result.output
    assert "tooshort" not in result.output


def test_unreadable_state_file_names_the_file(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text("{not json")
    result = CliRunner().invoke(cli, ["sandbox", "--port", "0", "--state", str(state_file)])
    assert result.exit_code == 1
    assert str(state_file) in result.output


# -- OAuth and API auth, over 127.0.0.1 ----------------------------------------------------------


@pytest.fixture
def client(live_sandbox: tuple[SandboxApp, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_sandbox[1], timeout=10) as client:
        yield client


def _assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["X-Request-ID"]


def test_token_response(client: httpx.Client) -> None:
    response = client.post(TOKEN, data=CREDENTIALS)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"] != client.post(TOKEN, data=CREDENTIALS).json()["access_token"]


def test_token_with_http_basic(client: httpx.Client) -> None:
    response = client.post(
        TOKEN, data={"grant_type": "client_credentials"}, auth=("sandbox", "sandbox-secret")
    )
    assert response.status_code == 200
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    assert client.get(OMS).status_code == 200


@pytest.mark.parametrize(
    "form",
    [
        {**CREDENTIALS, "client_secret": "wrong-secret"},
        {**CREDENTIALS, "client_id": "someone"},
        {"grant_type": "client_credentials"},
    ],
)
def test_bad_credentials_are_401_invalid_client(client: httpx.Client, form: dict[str, str]) -> None:
    response = client.post(TOKEN, data=form)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "wrong-secret" not in response.text


def test_wrong_grant_type_is_400(client: httpx.Client) -> None:
    response = client.post(TOKEN, data={**CREDENTIALS, "grant_type": "password"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("path", [OMS, HOOK, f"/{TENANT}/v0/config/routing/uses_external_atp"])
def test_api_without_token_is_401(client: httpx.Client, path: str) -> None:
    _assert_json_error(client.get(path), 401)


def test_garbage_token_is_403_with_json(client: httpx.Client) -> None:
    _assert_json_error(client.get(OMS, headers={"Authorization": "Bearer not-a-token"}), 403)


def test_token_of_another_tenant_is_403(client: httpx.Client) -> None:
    other = client.post("/auth/realms/beta/protocol/openid-connect/token", data=CREDENTIALS)
    headers = {"Authorization": f"Bearer {other.json()['access_token']}"}
    _assert_json_error(client.get(OMS, headers=headers), 403)
    assert (
        client.get("/beta/v0/config/sales_order/external_oms", headers=headers).status_code == 200
    )


def test_a_new_token_drops_the_expired_ones_and_keeps_the_live(
    client: httpx.Client, sandbox: SandboxApp
) -> None:
    headers = [_token(client) for _ in range(4)]
    issued = [h["Authorization"].removeprefix("Bearer ") for h in headers]
    # The first two expired (no clock involved: their expiry moved into the past, in place).
    for token in issued[:2]:
        sandbox._tokens[token] = (sandbox._tokens[token][0], 0.0)
    fifth = _token(client)
    assert list(sandbox._tokens) == [*issued[2:], fifth["Authorization"].removeprefix("Bearer ")]
    assert client.get(OMS, headers=headers[0]).status_code == 403
    assert client.get(OMS, headers=headers[2]).status_code == 200


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(token_ttl=0.2)], indirect=True)
def test_expired_token_is_403(client: httpx.Client, sandbox: SandboxApp) -> None:
    headers = _token(client)
    assert client.get(OMS, headers=headers).status_code == 200
    time.sleep(0.3)
    _assert_json_error(client.get(OMS, headers=headers), 403)
    statuses = [(r["method"], r["status"]) for r in sandbox.requests(TENANT)]
    assert statuses == [("POST", 200), ("GET", 200), ("GET", 403)]


def test_associate_app_read_needs_no_token_per_spec(client: httpx.Client) -> None:
    path = f"/{TENANT}/api/v1/associate-app/config"
    assert client.get(path).status_code == 200
    _assert_json_error(client.put(path, json={}), 401)


def test_a_key_of_your_own_is_not_echoed() -> None:
    key = "my-own-webhook-key-0123456789"
    with sandbox_process("--webhook-api-key", key) as process:
        banner = "\n".join(process.stdout)
        assert "webhook key:    the --webhook-api-key value (not shown)" in banner
        assert key not in banner
        code, _ = process.interrupt()
    assert code == 0
