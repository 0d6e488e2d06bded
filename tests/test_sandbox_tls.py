"""The sandbox over HTTPS (`reconciler sandbox --tls-cert --tls-key`), as NewStore's hosts are:
the real CLI plans against it when it trusts the throwaway certificate, refuses in one
paragraph when it does not, and a client that fails its handshake does not stop the server."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from env_helpers import run_cli

from reconciler.sandbox import SandboxApp
from reconciler.sandbox.certs import throwaway_certificate
from reconciler.sandbox.server import running, tls_context

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs `openssl` to make a throwaway certificate"
)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    directory = tmp_path / "tls"
    directory.mkdir()
    return throwaway_certificate(directory)


@pytest.fixture
def https_sandbox(sandbox: SandboxApp, certificate: tuple[Path, Path]) -> Iterator[str]:
    cert, key = certificate
    with running(sandbox, tls=tls_context(str(cert), str(key))) as url:
        yield url


def _https_env(write_env: Callable[..., Path], url: str, body: str = "") -> Path:
    # The token on another host name than the API, as NewStore's are: two handshakes.
    path = write_env("shop", "shop", url, body)
    text = path.read_text().replace(
        "token_url: https://127.0.0.1:", "token_url: https://localhost:"
    )
    path.write_text(text)
    return path


def test_plan_over_https_trusting_the_certificate(
    https_sandbox: str,
    write_env: Callable[..., Path],
    certificate: tuple[Path, Path],
    sandbox: SandboxApp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert https_sandbox.startswith("https://127.0.0.1:")
    path = _https_env(write_env, https_sandbox, "external_oms:\n  enabled: true\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    result = run_cli(path.parent, "plan", "--format", "json")
    assert result.exit_code == 0, result.output
    assert '"external_oms"' in result.output
    # Both the token (on localhost) and the read (on 127.0.0.1) reached the sandbox.
    requests = [(r["method"], r["path"]) for r in sandbox.requests("shop")]
    assert ("GET", "/shop/v0/config/sales_order/external_oms") in requests
    assert any(method == "POST" and "/token" in p for method, p in requests)


def test_an_untrusted_certificate_is_one_paragraph_and_the_server_lives_on(
    https_sandbox: str,
    write_env: Callable[..., Path],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _https_env(write_env, https_sandbox, "external_oms:\n  enabled: true\n")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    refused = run_cli(path.parent, "plan")
    assert refused.exit_code == 1, refused.output
    assert "Traceback" not in refused.output
    assert "certificate" in refused.output.lower()
    # The failed handshake ended that connection only: a client that trusts it is served.
    with httpx.Client(verify=ssl.create_default_context(cafile=certificate[0])) as client:
        assert client.get(f"{https_sandbox}/_sandbox/faults").status_code == 200


def test_the_sandbox_command_serves_https(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    command = [sys.executable, "-m", "reconciler", "sandbox", "--port", "0"]
    command += ["--tls-cert", str(cert), "--tls-key", str(key)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on https://127.0.0.1:" in first, first
        url = first.split("listening on", 1)[1].strip()
        with httpx.Client(verify=ssl.create_default_context(cafile=cert)) as client:
            answer = client.post(
                f"{url}/auth/realms/shop/protocol/openid-connect/token",
                data={"grant_type": "client_credentials"},
            )
        assert answer.status_code in (400, 401), answer.text  # TLS worked; no credentials sent
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()


def test_a_certificate_without_its_key_is_a_usage_error(certificate: tuple[Path, Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "sandbox", "--tls-cert", str(certificate[0])],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
    )
    assert result.returncode == 1  # a user error, as every bad flag
    assert "--tls-cert and --tls-key go together" in result.stderr
    assert "Traceback" not in result.stderr
