"""An adversarial review of issue 24's HTTP layer (the lean send path, the stack pool, the
shared token-host pool, `when_token` and `read_live`'s start of the other reads): CA isolation
on shared connections, the bearer token's origin, failures over the shared pool, connections
the server closed, descriptors over a run of CA-bundle environments, a client shared by
environments. Written against the change before its fixes (four failed then). Every test
talks real HTTP to the sandbox on 127.0.0.1 (over TLS where TLS is the point); nothing of the
project is mocked."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

import certifi
import httpx
import pytest
from client_helpers import TENANT, closed_port, make_app, make_env, raw_server, read_request
from reliability.servers import Certificate, self_signed

from reconciler.core.plan import Status, plan_environments
from reconciler.errors import NewStoreError
from reconciler.model import Environment
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.http import close_shared
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.settings import BY_KEY, REGISTRY
from reconciler.sandbox.app import SandboxApp
from reconciler.sandbox.server import running

# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True)
def _fresh_shared_pool() -> Iterator[None]:
    close_shared()
    yield
    close_shared()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A second self-signed CA that did NOT sign the server's certificate."""
    return self_signed(tmp_path_factory.mktemp("tls-other"), name="other-ca")


class Recorder:
    """The sandbox, noting each request's path, client port and Authorization header."""

    def __init__(self, app: SandboxApp) -> None:
        self.app = app
        self.seen: list[tuple[str, int, str | None]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            self.seen.append(
                (
                    environ["PATH_INFO"],
                    int(environ["REMOTE_PORT"]),
                    environ.get("HTTP_AUTHORIZATION"),
                )
            )
        return cast(Iterable[bytes], self.app(environ, start_response))

    def token_ports(self) -> set[int]:
        with self._lock:
            return {port for path, port, _ in self.seen if "/token" in path}


def env_on(
    api: str,
    tenant: str = TENANT,
    *,
    token_host: str = "localhost",
    ca_bundle: str | None = None,
    desired: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Environment:
    """`tenant` on the sandbox at `api`, its token endpoint on another host name."""
    env = make_env(api, tenant, **kwargs)
    token_url = env.connection.token_url.replace("127.0.0.1", token_host)
    return dataclasses.replace(
        env,
        name=f"{tenant}-test",
        connection=dataclasses.replace(env.connection, token_url=token_url, ca_bundle=ca_bundle),
        desired=desired if desired is not None else {"external_oms": {"enabled": False}},
    )


def client_sockets_to(port: int) -> int:
    """TCP connections of this machine whose remote port is `port` and that are still open on
    the client side (ESTABLISHED or CLOSE_WAIT): the clients' side of connections to a server
    listening on `port`."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if int(remote.rsplit(":", 1)[1], 16) == port and state in ("01", "08"):
                count += 1
    return count


def port_of(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


def ctx(cert: Certificate) -> ssl.SSLContext:
    return cert.server_context()


# --------------------------------------------------------------------------------------------
# F1: with connection.ca_bundle, every environment gets its own "shared" pool, kept for the run


def test_ca_bundle_environments_do_not_each_keep_a_token_connection_open(
    cert: Certificate,
) -> None:
    """`ssl_context(ca_bundle)` builds a new SSLContext per client, and `shared_transport` keys
    the process-wide pool by the context's identity: each environment with a ca_bundle adds a
    Transport to `_shared` that nobody closes until the next run (or exit), with its idle
    connection to the token host. A run of N such environments holds N sockets open after
    every client is closed (a thousand environments: a thousand descriptors, past the usual
    `ulimit -n` of 1024)."""
    n = 25
    served = Recorder(make_app())
    with running(cast(SandboxApp, served), tls=ctx(cert)) as base:
        envs = [env_on(base, f"t{i:02d}", ca_bundle=str(cert.cert)) for i in range(n)]
        run = plan_environments(envs, parallelism=4)
        assert all(p.status is not Status.ERROR for p in run.environments), [
            p.error for p in run.environments if p.error
        ]
        # Every client is closed now: the run is over.
        still_open = client_sockets_to(port_of(base))
        token_connections = len(served.token_ports())
    assert still_open <= 4, (
        f"{still_open} sockets still open to the server after the run "
        f"({token_connections} token connections for {n} environments)"
    )


def test_without_ca_bundle_the_same_run_keeps_one_token_connection(
    cert: Certificate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The contrast to the test above: the same CA through SSL_CERT_FILE (one cached context)
    shares one pool, as designed."""
    bundle = tmp_path / "ca.pem"
    shutil.copyfile(cert.cert, bundle)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    n = 25
    served = Recorder(make_app())
    with running(cast(SandboxApp, served), tls=ctx(cert)) as base:
        envs = [env_on(base, f"t{i:02d}") for i in range(n)]
        run = plan_environments(envs, parallelism=4)
        assert all(p.status is not Status.ERROR for p in run.environments)
        still_open = client_sockets_to(port_of(base))
    assert len(served.token_ports()) <= 4
    assert still_open <= 4


# --------------------------------------------------------------------------------------------
# CA isolation of the shared pool


def test_a_shared_token_connection_never_carries_an_environment_with_another_ca(
    cert: Certificate, other_cert: Certificate
) -> None:
    """Environment A (ca_bundle trusting the server) leaves a verified idle connection to the
    token host in the shared pool; environment B (a ca_bundle that does not trust the server)
    must not ride on it: its token request fails TLS verification, named."""
    served = Recorder(make_app())
    with running(cast(SandboxApp, served), tls=ctx(cert)) as base:
        a = env_on(base, "acme", ca_bundle=str(cert.cert))
        with NewStoreClient(a, limiter=HostLimiter(), backoff=0.01) as client:
            BY_KEY["external_oms"].read(client)
        b = env_on(base, "bravo", ca_bundle=str(other_cert.cert), retry_attempts=1)
        with (
            NewStoreClient(b, limiter=HostLimiter(), backoff=0.01) as client,
            pytest.raises(NewStoreError) as raised,
        ):
            BY_KEY["external_oms"].read(client)
    text = str(raised.value)
    assert "TLS certificate verification failed" in text
    assert not any("/realms/bravo/" in path for path, _, _ in served.seen)


def test_a_changed_ssl_cert_file_is_not_bypassed_by_a_connection_verified_before(
    cert: Certificate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE trusting the server for one client, then certifi's bundle (which does
    not) for the next in the same process: the second must verify anew and fail, not reuse the
    first one's idle connection to the token host."""
    trusted = tmp_path / "trusted.pem"
    shutil.copyfile(cert.cert, trusted)
    untrusted = tmp_path / "certifi.pem"
    shutil.copyfile(certifi.where(), untrusted)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with running(make_app(), tls=ctx(cert)) as base:
        monkeypatch.setenv("SSL_CERT_FILE", str(trusted))
        with NewStoreClient(env_on(base, "acme"), limiter=HostLimiter()) as client:
            BY_KEY["external_oms"].read(client)
        monkeypatch.setenv("SSL_CERT_FILE", str(untrusted))
        env = env_on(base, "bravo", retry_attempts=1)
        with (
            NewStoreClient(env, limiter=HostLimiter(), backoff=0.01) as client,
            pytest.raises(NewStoreError) as raised,
        ):
            BY_KEY["external_oms"].read(client)
    assert "TLS certificate verification failed" in str(raised.value)
    assert "connection.token_url" in str(raised.value)


# --------------------------------------------------------------------------------------------
# the bearer token's destination


def test_the_bearer_token_never_reaches_a_token_host_on_the_same_host_and_another_port() -> None:
    """Token endpoint on 127.0.0.1 too, another port (routed over the shared pool): it never
    sees an Authorization header, and the API sees nothing but bearers."""
    app = make_app()
    token_side = Recorder(app)
    api_side = Recorder(app)
    with (
        running(cast(SandboxApp, token_side)) as token_base,
        running(cast(SandboxApp, api_side)) as api_base,
    ):
        env = make_env(api_base)
        token_url = env.connection.token_url.replace(api_base, token_base)
        env = dataclasses.replace(
            env, connection=dataclasses.replace(env.connection, token_url=token_url)
        )
        with NewStoreClient(env, limiter=HostLimiter(), backoff=0.01) as client:
            for setting in REGISTRY:
                setting.read(client)
    assert token_side.seen and all(auth is None for _, _, auth in token_side.seen)
    assert api_side.seen and all(
        auth is not None and auth.startswith("Bearer ") for _, _, auth in api_side.seen
    )


# --------------------------------------------------------------------------------------------
# transport failures over the shared pool


def test_a_token_endpoint_on_another_host_that_never_answers_times_out() -> None:
    app = make_app()
    app.set_faults(
        [
            {
                "method": "POST",
                "path": f"/auth/realms/{TENANT}/protocol/openid-connect/token",
                "latency_ms": 3000,
                "times": None,
            }
        ]
    )
    with running(app) as base:
        env = env_on(base, timeout=0.2, retry_attempts=2, retry_max_seconds=5)
        with (
            NewStoreClient(env, limiter=HostLimiter(), backoff=0.01) as client,
            pytest.raises(NewStoreError) as raised,
        ):
            BY_KEY["external_oms"].read(client)
    assert "no answer within the timeout" in str(raised.value)


def test_a_refused_token_host_is_named_with_its_setting() -> None:
    port = closed_port()
    with running(make_app()) as base:
        env = make_env(base)
        token_url = f"http://localhost:{port}/auth/realms/{TENANT}/protocol/openid-connect/token"
        env = dataclasses.replace(
            env, connection=dataclasses.replace(env.connection, token_url=token_url)
        )
        with (
            NewStoreClient(env, limiter=HostLimiter(), backoff=0.01) as client,
            pytest.raises(NewStoreError) as raised,
        ):
            BY_KEY["external_oms"].read(client)
    text = str(raised.value)
    assert f"localhost:{port}" in text
    assert "connection.token_url" in text
    assert "sandbox-secret" not in text


def test_a_dropped_token_connection_is_retried_over_the_shared_pool() -> None:
    app = make_app()
    app.set_faults(
        [
            {
                "method": "POST",
                "path": f"/auth/realms/{TENANT}/protocol/openid-connect/token",
                "status": 503,
                "drop_connection": True,
                "times": 1,
            }
        ]
    )
    with running(app) as base:
        env = env_on(base)
        with NewStoreClient(env, limiter=HostLimiter(), backoff=0.01) as client:
            assert BY_KEY["external_oms"].read(client) == {"enabled": False}


# --------------------------------------------------------------------------------------------
# idle keep-alive connections the server closed


def test_idle_connections_the_server_closed_are_not_reused(
    cert: Certificate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across a server restart on the same port (the stopped server closed every idle
    connection): a client kept open reuses nothing dead in its own pool, and a new client's
    token request reuses nothing dead in the shared pool (one CA context through
    SSL_CERT_FILE); neither needs a retry (retry_attempts=1)."""
    bundle = tmp_path / "ca.pem"
    shutil.copyfile(cert.cert, bundle)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    app = make_app()
    with running(app, tls=ctx(cert)) as first:
        port = port_of(first)
        kept = NewStoreClient(env_on(first, "acme", retry_attempts=1), limiter=HostLimiter())
        BY_KEY["external_oms"].read(kept)
    try:
        with running(app, port=port, tls=ctx(cert)) as again:
            assert again == first
            assert BY_KEY["external_oms"].read(kept) == {"enabled": False}
            env = env_on(again, "bravo", retry_attempts=1)
            with NewStoreClient(env, limiter=HostLimiter()) as fresh:
                assert BY_KEY["external_atp"].read(fresh) == {"enabled": False}
    finally:
        kept.close()


_EXHAUST = r"""
import dataclasses, os, resource, sys
sys.path.insert(0, "tests")
from client_helpers import make_app, make_env
from reliability.servers import self_signed
from reconciler.core.plan import Status, plan_environments
from reconciler.sandbox.server import running
from pathlib import Path

cert = self_signed(Path(sys.argv[1]))
n = int(sys.argv[2])
with running(make_app(), tls=cert.server_context()) as base:
    envs = []
    for i in range(n):
        env = make_env(base, f"t{i:03d}", retry_attempts=1)
        conn = dataclasses.replace(
            env.connection,
            token_url=env.connection.token_url.replace("127.0.0.1", "localhost"),
            ca_bundle=str(cert.cert),
        )
        desired = {"external_oms": {"enabled": False}}
        envs.append(dataclasses.replace(env, connection=conn, desired=desired))
    used = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 120, hard))
    run = plan_environments(envs, parallelism=4)
    errors = [p.error for p in run.environments if p.status is Status.ERROR]
    print(len(errors))
    if errors:
        print(errors[0])
"""


def test_a_run_of_many_ca_bundle_environments_does_not_run_out_of_descriptors(
    tmp_path: Path,
) -> None:
    """The consequence of the pile-up above, in a child process given 120 spare descriptors:
    200 environments with a ca_bundle, 4 at a time, each needing ~2 descriptors for a moment
    (its API connection and the token's), the in-process server another 1 per connection.
    Before the change every connection was closed with its client; now the token connections
    (both ends) stay open for the run, and the run fails part-way with EMFILE."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _EXHAUST, str(tmp_path), "200"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    errors, _, first = result.stdout.partition("\n")
    assert errors.strip() == "0", f"{errors.strip()} environments failed; first: {first[:400]}"


# --------------------------------------------------------------------------------------------
# an interrupt (SIGTERM's `Terminated`, Ctrl-C's KeyboardInterrupt) in the middle of an answer


class _Stop(BaseException):
    """What the CLI's SIGTERM handler raises in the main thread (`interrupt.Terminated`)."""


@contextmanager
def stalls_mid_body() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers every request with its head and the first bytes
    of a 100-byte body, then nothing more until the client goes away."""

    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"enabled": '
        )
        while conn.recv(65536):
            pass

    with raw_server(handler) as (base, _):
        yield base


def test_an_interrupt_in_the_middle_of_an_answer_leaves_no_socket_open() -> None:
    """httpx's client closed the answer on any exception while reading it (`except
    BaseException`); `HTTPClient._send` closes it on `httpx.RequestError` only. Checked: a
    signal's exception raised while the body arrives still closes the socket (httpcore's body
    iterator closes its connection on any BaseException), so nothing is left open. Matters
    since a23a588: `read_live`'s first read runs in the calling thread, the main (signal)
    thread for dump, the apply report and the plan-file check."""
    import gc
    import signal

    app = make_app()

    def interrupt(signum: int, frame: object) -> None:
        raise _Stop

    with running(app) as sandbox, stalls_mid_body() as api:
        env = make_env(api, timeout=5.0, retry_attempts=1)
        token_url = env.connection.token_url.replace(api, sandbox)
        env = dataclasses.replace(
            env, connection=dataclasses.replace(env.connection, token_url=token_url)
        )
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            with NewStoreClient(env, limiter=HostLimiter(), backoff=0.01) as client:
                signal.setitimer(signal.ITIMER_REAL, 0.5)
                with pytest.raises(_Stop):
                    BY_KEY["external_oms"].read(client)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        open_after_close = client_sockets_to(port_of(api))
        del client
        gc.collect()
    assert open_after_close == 0, "the interrupted answer's connection outlived its client"


# --------------------------------------------------------------------------------------------
# reconciler.api's lazy names


def test_the_api_s_lazy_names_are_there() -> None:
    """`apply`, `ApplyResult`, `RunEvent` load on first use: importable, and listed by `dir`.
    (Their annotations are for type checkers: `typing.get_type_hints` on `Reconciler.apply`
    needs `reconciler.api_apply` in its namespace, as `api.drift`'s needed the client's.)"""
    import reconciler.api as api
    from reconciler.api import ApplyResult, RunEvent, apply

    assert {"apply", "ApplyResult", "RunEvent"} <= set(dir(api))
    assert apply.__module__ == ApplyResult.__module__ == "reconciler.api_apply"
    assert RunEvent is not None


# --------------------------------------------------------------------------------------------
# many environments at once over the shared pool


def test_many_environments_at_once_share_the_token_pool_safely(
    cert: Certificate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 environments, 16 at a time, every setting, over TLS with one CA context (the shared
    pool's case), some token connections dropped: every plan reads, the drops are retried, and
    what stays open after the run is what the shared pool may keep (MAX_IDLE)."""
    from reconciler.newstore.pool import MAX_IDLE

    bundle = tmp_path / "ca.pem"
    shutil.copyfile(cert.cert, bundle)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    app = make_app()
    app.set_faults(
        [
            {
                "method": "POST",
                "path": "/auth/realms/*/protocol/openid-connect/token",
                "status": 503,
                "drop_connection": True,
                "times": 6,
            }
        ]
    )
    served = Recorder(app)
    desired = {s.key: s.default for s in REGISTRY}
    with running(cast(SandboxApp, served), tls=ctx(cert)) as base:
        envs = [env_on(base, f"t{i:02d}", desired=desired) for i in range(40)]
        run = plan_environments(envs, parallelism=16)
        errors = [p.error for p in run.environments if p.status is Status.ERROR]
        still_open = client_sockets_to(port_of(base))
    assert errors == []
    assert still_open <= MAX_IDLE
    assert len(served.token_ports()) <= 16 + 6


def test_one_client_shared_by_environments_of_a_tenant_reads_each_once() -> None:
    """A `client_factory` may hand several environments one client (the Python API documents
    the factory, not that a client must be per environment). Every environment's reads then
    hang on one `when_token` list: the first fetch runs every waiting environment's
    `start_the_rest` in the fetching thread; an environment whose own first read returned
    before that callback ran sees no futures and starts its other reads itself, and then the
    callback adds them again (`zip(..., strict=True)` raises ValueError, not a
    ReconcilerError). Repeated to give the race a chance."""
    app = make_app()
    desired = {s.key: s.default for s in REGISTRY}
    failures: list[str] = []
    with running(app) as base:
        for _ in range(30):
            shared = NewStoreClient(make_env(base), limiter=HostLimiter(), backoff=0.01)
            envs = [
                dataclasses.replace(make_env(base), name=f"view-{i}", desired=desired)
                for i in range(8)
            ]
            try:
                run = plan_environments(
                    envs, parallelism=8, client_factory=lambda env, c=shared: nullcontext(c)
                )
                failures += [p.error for p in run.environments if p.status is Status.ERROR]
            except ValueError as exc:
                failures.append(f"ValueError: {exc}")
            finally:
                shared.close()
    assert failures == []
