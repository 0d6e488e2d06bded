"""Shared fixtures. Each section belongs to the issue that added it; add yours in a new section.

Sandbox fixtures (issue 3), for tests that talk HTTP to a real NewStore stand-in:

    sandbox_config   the SandboxConfig for this test; override this fixture (or parametrize it
                     indirectly) to get a sandbox with latency, masking, faults, a state file...
    sandbox          a fresh SandboxApp built from sandbox_config: seed it, read its history
    client_transport sandbox.transport(): plug into any httpx.Client for in-process HTTP
    sandbox_http     an httpx.Client on that transport, base_url INPROCESS_URL
    sandbox_auth     sandbox_auth(client, tenant) -> {"Authorization": "Bearer ..."}
    live_sandbox     (sandbox, base_url): the same app served on 127.0.0.1, a free port
    write_env        write_env(name, tenant, base_url, body="") -> Path of an environment file
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from apply_helpers import ORDER_WEBHOOK_API_KEY

from reconciler.sandbox import SandboxApp, SandboxConfig, running

# -- sandbox (issue 3) ---------------------------------------------------------------------------

INPROCESS_URL = "http://sandbox.local"
"""Base URL for in-process clients: any host works, the transport never resolves it."""

CLIENT_SECRET_VAR = "SANDBOX_CLIENT_SECRET"
WEBHOOK_API_KEY_VAR = "SANDBOX_WEBHOOK_API_KEY"
ORDER_WEBHOOK_API_KEY_VAR = "SANDBOX_ORDER_WEBHOOK_API_KEY"


@pytest.fixture
def sandbox_config(request: pytest.FixtureRequest) -> SandboxConfig:
    """`@pytest.mark.parametrize("sandbox_config", [SandboxConfig(...)], indirect=True)`
    configures the sandbox for one test."""
    config: SandboxConfig = getattr(request, "param", None) or SandboxConfig()
    return config


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig) -> SandboxApp:
    return SandboxApp(sandbox_config)


@pytest.fixture
def client_transport(sandbox: SandboxApp) -> httpx.BaseTransport:
    return sandbox.transport()


@pytest.fixture
def sandbox_http(client_transport: httpx.BaseTransport) -> Iterator[httpx.Client]:
    with httpx.Client(transport=client_transport, base_url=INPROCESS_URL) as client:
        yield client


@pytest.fixture
def sandbox_auth(sandbox_config: SandboxConfig) -> Callable[[httpx.Client, str], dict[str, str]]:
    """Fetch a token the way a NewStore client does; returns the Authorization header."""

    def auth(client: httpx.Client, tenant: str) -> dict[str, str]:
        response = client.post(
            f"/auth/realms/{tenant}/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sandbox_config.client_id,
                "client_secret": sandbox_config.client_secret,
            },
        )
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return auth


@pytest.fixture
def live_sandbox(sandbox: SandboxApp) -> Iterator[tuple[SandboxApp, str]]:
    with running(sandbox) as base_url:
        yield sandbox, base_url


@pytest.fixture
def write_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox_config: SandboxConfig
) -> Callable[..., Path]:
    """Write `tmp_path/environments/<name>.yaml` pointing at a sandbox tenant.

    The connection block is filled in; `body` (dedented YAML) is appended, with every
    `{sandbox}` replaced by base_url, e.g. `url: {sandbox}/_sandbox/webhook/availabilities`.
    Secrets come from ${SANDBOX_CLIENT_SECRET}, ${SANDBOX_WEBHOOK_API_KEY} and
    ${SANDBOX_ORDER_WEBHOOK_API_KEY}, which this fixture sets to the sandbox's values. The
    environments dir is the returned path's parent.
    """
    monkeypatch.setenv(CLIENT_SECRET_VAR, sandbox_config.client_secret)
    monkeypatch.setenv(WEBHOOK_API_KEY_VAR, sandbox_config.webhook_api_key)
    monkeypatch.setenv(ORDER_WEBHOOK_API_KEY_VAR, ORDER_WEBHOOK_API_KEY)
    directory = tmp_path / "environments"
    directory.mkdir(exist_ok=True)

    def write(name: str, tenant: str, base_url: str, body: str = "") -> Path:
        base_url = base_url.rstrip("/")
        head = textwrap.dedent(
            f"""\
            tenant: {tenant}
            connection:
              base_url: {base_url}/{tenant}
              token_url: {base_url}/auth/realms/{tenant}/protocol/openid-connect/token
              client_id: {sandbox_config.client_id}
              client_secret: ${{{CLIENT_SECRET_VAR}}}
              timeout: 5
            """
        )
        path = directory / f"{name}.yaml"
        path.write_text(head + textwrap.dedent(body).replace("{sandbox}", base_url))
        return path

    return write


# -- apply lock --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _private_lock_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's applies (in-process and subprocesses) lock in a directory of their own, so
    tests never wait on each other or on a real apply on the same machine. Outside tmp_path:
    some tests check that nothing else appears there."""
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


# -- nothing written outside the tests' temporary directories (issue 15) -----------------------


def _reconciler_files(root: Path) -> set[Path]:
    local = root / ".reconciler"
    return {p for p in local.rglob("*") if p.is_file()} if local.is_dir() else set()


@pytest.fixture(scope="session", autouse=True)
def _no_journal_in_the_checkout(request: pytest.FixtureRequest) -> Iterator[None]:
    """An apply without `--journal` writes `.reconciler/journal/` under the current directory:
    in a test, that is the checkout. Fail the session if any test left a file there (a
    `make reliability` summary, written on request, is the one file allowed)."""
    root = request.config.rootpath
    before = _reconciler_files(root)
    yield
    left = sorted(
        str(p.relative_to(root))
        for p in _reconciler_files(root) - before
        if p.parent.name != "reliability"
    )
    assert not left, f"tests wrote into the checkout (pass --journal under tmp_path): {left}"
