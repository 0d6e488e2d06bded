"""No secret in any output: every command, debug logging on, and every error path.

Distinctive secrets (the OAuth client secret, a wrong one, the webhook api_key, a rotated one,
a key someone set by hand) and every access token the sandbox issued during the run (read from
its token table: the tokens are random, so only the server knows which ones the CLI got) are
searched for in stdout, stderr (with `-v`/`-vv` HTTP logging), journals, plan files and dumps.
Each command runs as a real subprocess, so logging is configured exactly as for a user. A match
of the whole secret, of its first or last 8 characters, or of its base64 form fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from apply_helpers import OFF, ON, seed

from reconciler.clock import today_utc
from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.app import WEBHOOK_PATH
from reliability.servers import Answer, Seen, json_answer, serve
from reliability.summary import count

pytestmark = pytest.mark.e2e

CLIENT_SECRET = "cs-Rel-" + "7f3a9c0b5d1e2f46"
WRONG_SECRET = "cs-Wrong-" + "55aa01c3d7e9b2f4"
API_KEY = "ak-Rel-" + "0b8e41d2c6f9a735e1"
ROTATED_KEY = "ak-Rotated-" + "9d7c5b3a1e0f2468"
HAND_SET_KEY = "ak-HandSet-" + "4e6a8c0b2d1f3579"
ORDER_KEY = "ok-Rel-" + "3c5e7a9b1d0f2468ac"
STATIC = (CLIENT_SECRET, WRONG_SECRET, API_KEY, ROTATED_KEY, HAND_SET_KEY, ORDER_KEY)

ENV_TEMPLATE = """\
tenant: {tenant}
connection:
  base_url: {base}/{tenant}
  token_url: {base}/auth/realms/{tenant}/protocol/openid-connect/token
  client_id: sandbox
  client_secret: ${{NEWSTORE_CLIENT_SECRET}}
  timeout: 2
  retry:
    attempts: 2
    max_seconds: 3
"""
ON_BODY = """\
external_oms:
  enabled: true
availability_webhook:
  url: {hook}
  api_key: ${{ATP_API_KEY}}
  timeout: 5
external_atp:
  enabled: true
external_order_webhook:
  url: https://oms.acme.example/newstore
  api_key: ${{ORDER_API_KEY}}
associate_app:
  use_new_om_ui: true
gates:
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
"""
OFF_BODY = """\
external_oms:
  enabled: false
availability_webhook: absent
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
gates:
  newstore_stock_confirmed: TODAY
""".replace("TODAY", today_utc().isoformat())


_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")


def _decoded(text: str) -> str:
    """`text` plus whatever its base64-looking runs decode to (Basic auth, a JWT, a token
    endpoint that wraps credentials would carry a secret that way)."""
    parts = [text]
    for match in _BASE64.finditer(text):
        run = match[0].rstrip("=")
        for cut in range(4):  # the run may start mid-group
            chunk = run[cut:] + "=" * (-len(run[cut:]) % 4)
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                with contextlib.suppress(ValueError):
                    parts.append(decode(chunk).decode("utf-8", "replace"))
    return "\n".join(parts)


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str


@dataclass
class World:
    app: SandboxApp
    base: str
    root: Path
    directory: Path
    runs: list[Run] = field(default_factory=list)
    other_tokens: set[str] = field(default_factory=set)  # issued by servers other than `app`
    scanned: set[str] = field(default_factory=set)  # every output and file searched, for counts
    searched: set[str] = field(default_factory=set)  # every secret and token searched for
    commands: int = 0

    def env_file(self, name: str, body: str, *, base: str | None = None) -> None:
        base = base or self.base
        head = ENV_TEMPLATE.format(tenant=name, base=base)
        hook = f"{self.base}{WEBHOOK_PATH}"
        (self.directory / f"{name}.yaml").write_text(head + body.format(hook=hook))

    def run(self, *args: str, code: int, verbose: str = "-vv", **env: str) -> Run:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                verbose,
                "--environments-dir",
                str(self.directory),
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=self.root,
            env={
                **os.environ,
                "NEWSTORE_CLIENT_SECRET": CLIENT_SECRET,
                "ATP_API_KEY": API_KEY,
                "ORDER_API_KEY": ORDER_KEY,
                **env,
            },
            timeout=60,
        )
        run = Run(args, result.returncode, result.stdout, result.stderr)
        self.runs.append(run)
        assert run.code == code, f"{args}: exit {run.code}\n{run.stdout}\n{run.stderr}"
        assert "Traceback" not in run.stderr, run.stderr
        return run

    def secrets(self) -> list[str]:
        with self.app._lock:  # the sandbox's token table: which random tokens it handed out
            issued = set(self.app._tokens)
        return [*STATIC, *issued, *self.other_tokens]

    def files(self) -> dict[str, str]:
        """Every file the runs left: journals, plan files, dumps (environment files too)."""
        return {
            str(path): path.read_text(encoding="utf-8", errors="replace")
            for path in sorted(self.root.rglob("*"))
            if path.is_file() and self.directory not in path.parents  # inputs, not outputs
        }

    def assert_no_secret(self) -> None:
        texts = {
            **{
                f"{' '.join(r.args)} ({stream})": getattr(r, stream)
                for r in self.runs
                for stream in ("stdout", "stderr")
            },
            **self.files(),
        }
        texts = {where: _decoded(text) for where, text in texts.items()}
        found = [
            (where, secret)
            for secret in self.secrets()
            for where, text in texts.items()
            for fragment in {secret, secret[:8], secret[-8:]}
            if fragment in text
        ]
        assert found == [], f"secrets leaked: {found}"
        self.scanned.update(texts)
        self.searched.update(self.secrets())
        self.commands += len(self.runs)
        self.runs.clear()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    app = SandboxApp(
        SandboxConfig(client_secret=CLIENT_SECRET, webhook_api_key=API_KEY, token_ttl=86400)
    )
    root = tmp_path_factory.mktemp("secrets")
    with running(app) as base:
        directory = root / "environments"
        directory.mkdir()
        world = World(app, base, root, directory)
        yield world
    count("secrets", "commands run (-v/-vv), each output scanned", world.commands)
    count("secrets", "distinct outputs and files scanned", len(world.scanned))
    count("secrets", "distinct secrets and access tokens searched for", len(world.searched))


@pytest.fixture
def fresh(world: World) -> Iterator[World]:
    """The world with an empty environments directory and no faults."""
    for path in world.directory.iterdir():
        path.unlink()
    yield world
    world.app.clear_faults()
    world.assert_no_secret()


def test_every_command_with_debug_logging(fresh: World) -> None:
    w = fresh
    w.env_file("sec-fwd", ON_BODY)
    w.env_file("sec-back", OFF_BODY)
    seed(w.app, "sec-fwd", OFF)
    seed(w.app, "sec-back", ON)

    w.run("validate", code=0, verbose="-v")
    w.run("validate", code=0)
    for fmt in ("text", "json", "markdown"):
        w.run("plan", "--format", fmt, "--detailed-exitcode", code=2)
    w.run("plan", "--out", "reviewed.json", "--probe", code=0)
    w.run("apply", "--plan", "reviewed.json", "--auto-approve", "--journal", "j1.jsonl", code=0)
    w.run("apply", "--auto-approve", "--journal", "j2.jsonl", code=0, verbose="-v")

    # Someone sets another key by hand: drift, then a plan and apply that put ours back.
    state = w.app.state("sec-fwd")
    hook = {**state["availability_webhook"], "api_key": HAND_SET_KEY}
    w.app.seed("sec-fwd", {**state, "availability_webhook": hook})
    for fmt in ("text", "json", "markdown"):
        w.run("drift", "--format", fmt, code=2)
    w.run("plan", "--out", "fix.json", code=0)
    w.run("apply", "--plan", "fix.json", "--auto-approve", "--journal", "j3.jsonl", code=0)
    w.run("apply", "--auto-approve", "--skip-probe", "--journal", "j4.jsonl", code=0)
    w.run("drift", code=0)
    w.run("dump", "sec-fwd", code=0)
    w.run("dump", "sec-fwd", "--out", "dumped.yaml", code=0)

    # A rotated key in the CI secret store, then NewStore answering the api_key masked.
    w.run("plan", "--out", "rotate.json", code=0, ATP_API_KEY=ROTATED_KEY)
    # The webhook does not take the rotated key yet: written while external ATP is on, the
    # config is probed first and the write refused (issue 12). Then the OMS side rotates too.
    w.run("apply", "--plan", "rotate.json", "--auto-approve", code=1, ATP_API_KEY=ROTATED_KEY)
    original = w.app.config.webhook_api_key
    w.app.config.webhook_api_key = ROTATED_KEY  # the world is shared: restored below
    try:
        w.run("apply", "--plan", "rotate.json", "--auto-approve", code=0, ATP_API_KEY=ROTATED_KEY)
        assert w.app.state("sec-fwd")["availability_webhook"]["api_key"] == ROTATED_KEY
        state = w.app.state("sec-fwd")
        w.app.seed("sec-fwd", {**state, "options": {"mask_webhook_api_key": True}})
        w.run("plan", "--format", "json", code=0, ATP_API_KEY=ROTATED_KEY)
        w.run("drift", "--format", "markdown", code=0, ATP_API_KEY=ROTATED_KEY)
        w.run("drift", "--probe", "--format", "json", code=0, ATP_API_KEY=ROTATED_KEY)
        w.run("drift", "--probe", code=2, ATP_API_KEY=HAND_SET_KEY)
    finally:
        w.app.config.webhook_api_key = original
    w.run("dump", "sec-fwd", code=0)


def test_every_drift_output_and_notification(fresh: World) -> None:
    """Issue 22: the dashboard, the metrics, the JSON, Markdown and text files, the state file,
    the notifications' bodies (generic and Slack) and the pushed metrics hold no secret, and
    neither the webhook URLs (secrets themselves) nor the signing key appear anywhere."""
    from receiver_helpers import receiver

    w = fresh
    w.env_file("sec-fwd", ON_BODY)
    w.env_file("sec-back", OFF_BODY)
    seed(w.app, "sec-fwd", OFF)
    seed(w.app, "sec-back", ON)
    hook_path, slack_path = "/hooks/" + secrets.token_hex(12), "/services/" + secrets.token_hex(12)
    signing = "sign-" + secrets.token_hex(12)
    w.other_tokens.update({hook_path, slack_path, signing})
    outputs = []
    for fmt, name in (("text", "txt"), ("json", "json"), ("markdown", "md"), ("html", "html")):
        outputs += ["--output", f"{fmt}=out/drift.{name}"]
    outputs += ["--output", "prometheus=out/drift.prom", "--state", "out/state.json"]
    with receiver(hook_path) as hook, receiver(slack_path) as slack, receiver() as gateway:
        env = {
            "HOOK": hook.url + hook_path,
            "SLACK": f"slack:{slack.url}{slack_path}",
            "RECONCILER_NOTIFY_SECRET": signing,
        }
        args = ("drift", "--probe", *outputs, "--notify", "${HOOK}", "--notify", "${SLACK}")
        w.run(*args, "--pushgateway", gateway.url, code=2, **env)
        # Undeliverable (retried, and refused): the errors name no URL either.
        hook.then, slack.then = 503, 404
        seed(w.app, "sec-back", OFF)
        w.run(*args, code=1, **env)
        received = [*hook.requests, *slack.requests, *gateway.requests]
    assert len(received) == 1 + 4 + 1 + 1 + 1
    assert received[0].signed_by(signing)
    # The bodies as files of the run: scanned like every other output.
    for i, request in enumerate(received):
        (w.root / "out" / f"received-{i}.txt").write_bytes(
            request.body + json.dumps(request.headers).encode()
        )


def test_the_sandbox_command(world: World) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "-vv", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SANDBOX_WEBHOOK_API_KEY": API_KEY},
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert lines[0].startswith("NewStore sandbox listening on http://127.0.0.1:"), lines
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    world.runs.append(Run(("sandbox",), 0, "".join(lines) + out, err))
    assert "Sandbox stopped." in out
    world.assert_no_secret()


# --- error paths --------------------------------------------------------------------------------

HOOK_CONFIG = "/v0/config/availability/webhook"


def test_wrong_client_secret(fresh: World) -> None:
    fresh.env_file("sec-auth", ON_BODY)
    run = fresh.run("plan", code=1, NEWSTORE_CLIENT_SECRET=WRONG_SECRET)
    assert "refused client id 'sandbox'" in run.stderr
    fresh.run("drift", code=1, NEWSTORE_CLIENT_SECRET=WRONG_SECRET)
    fresh.run("apply", "--auto-approve", code=1, NEWSTORE_CLIENT_SECRET=WRONG_SECRET)


def test_newstore_echoing_a_secret_in_a_rejection(fresh: World) -> None:
    fresh.env_file("sec-echo", ON_BODY)
    seed(fresh.app, "sec-echo", OFF)
    echo = f"api_key {API_KEY} rejected; client_secret {CLIENT_SECRET} is wrong"
    fresh.app.set_faults(
        [{"method": "PUT", "path": f"/sec-echo{HOOK_CONFIG}", "status": 400, "message": echo}]
    )
    run = fresh.run("apply", "--auto-approve", code=1)
    assert "NewStore said: api_key (sensitive) rejected" in run.stderr


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"status": 500, "times": None}, "NewStore rejected the call"),
        ({"status": 503, "times": None, "retry_after": 0}, "gave up after 2 attempts"),
        ({"status": 409, "times": None}, "another update of this setting"),
        ({"status": 403, "body": "html", "times": None}, "NewStore blocked this IP"),
        # Dropped before NewStore commits it (a status): the read-back shows it did not land.
        ({"drop_connection": True, "status": 503, "times": None}, "the connection dropped"),
        ({"latency_ms": 700, "times": None}, "no answer within the timeout"),
    ],
    ids=["500", "503-exhausted", "409", "403-block", "dropped", "timeout"],
)
def test_failing_writes(fresh: World, fault: dict[str, object], expected: str) -> None:
    fresh.env_file("sec-fail", ON_BODY)
    env_file = fresh.directory / "sec-fail.yaml"
    env_file.write_text(env_file.read_text().replace("  timeout: 2\n", "  timeout: 0.5\n"))
    seed(fresh.app, "sec-fail", OFF)
    fresh.app.set_faults([{"method": "PUT", "path": f"/sec-fail{HOOK_CONFIG}", **fault}])
    run = fresh.run("apply", "--auto-approve", code=1)
    assert expected in run.stderr
    fresh.app.clear_faults()
    fresh.run("apply", "--auto-approve", code=0)


def test_failing_reads(fresh: World) -> None:
    fresh.env_file("sec-read", ON_BODY)
    fresh.app.set_faults(
        [{"method": "GET", "path": "/sec-read/*", "status": 403, "body": "html", "times": None}]
    )
    fresh.run("plan", code=1)
    fresh.app.set_faults([{"path": "/auth/realms/sec-read/*", "status": 503, "times": None}])
    fresh.run("drift", "--format", "json", code=1)
    fresh.run("dump", "sec-read", code=1)


def test_a_failing_probe(fresh: World) -> None:
    fresh.env_file("sec-probe", ON_BODY)
    seed(fresh.app, "sec-probe", OFF)
    echo = f"key {API_KEY} is not ours"
    fresh.app.set_faults([{"path": WEBHOOK_PATH, "status": 401, "message": echo, "times": None}])
    fresh.run("plan", "--probe", code=3)
    run = fresh.run("apply", "--auto-approve", code=3)
    assert "the webhook refused the api_key" in run.stderr


def test_a_probe_to_nowhere(fresh: World) -> None:
    fresh.env_file("sec-nowhere", ON_BODY.replace("{hook}", "http://127.0.0.1:9/availabilities"))
    seed(fresh.app, "sec-nowhere", OFF)
    fresh.run("apply", "--auto-approve", code=3)


def test_a_stale_plan(fresh: World) -> None:
    fresh.env_file("sec-stale", ON_BODY)
    seed(fresh.app, "sec-stale", {**OFF, "availability_webhook": dict(ON["availability_webhook"])})
    fresh.run("plan", "--out", "stale.json", code=0)
    state = fresh.app.state("sec-stale")
    hook = {**state["availability_webhook"], "api_key": HAND_SET_KEY}
    fresh.app.seed("sec-stale", {**state, "availability_webhook": hook})
    run = fresh.run("apply", "--plan", "stale.json", "--auto-approve", code=1)
    assert "planned from (sensitive), now (sensitive, changed)" in run.stderr
    fresh.run("apply", "--plan", "stale.json", "--auto-approve", code=1, ATP_API_KEY=ROTATED_KEY)


def test_secrets_in_the_environment_file(fresh: World) -> None:
    literal = ON_BODY.replace("${{ATP_API_KEY}}", API_KEY)
    fresh.env_file("sec-literal", literal)
    fresh.run("validate", code=1)
    fresh.run("plan", code=1)
    # A key a header cannot carry: refused before anything is sent, without quoting it.
    fresh.env_file("sec-literal", ON_BODY)
    run = fresh.run("validate", code=1, ATP_API_KEY=API_KEY + "é\n")
    assert "ATP_API_KEY" in run.stderr
    fresh.env_file("sec-literal", ON_BODY.replace("{hook}", f"https://u:{API_KEY}@h.example/a"))
    fresh.run("validate", code=1)


# --- a NewStore that misbehaves at the protocol level --------------------------------------------


@dataclass
class Rogue:
    """Issues tokens, then answers API calls with `api`: an echo of the Authorization header
    it received (a NewStore that quotes the token back), or a body no client can decode."""

    api: str
    issued: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, seen: Seen) -> Answer:
        if seen.path.startswith("/auth/"):
            token = secrets.token_urlsafe(24)
            with self.lock:
                self.issued.add(token)
            return json_answer(200, json.dumps({"access_token": token, "expires_in": 3600}))
        if self.api == "echo":
            said = f"header {seen.headers.get('authorization')} and body {seen.body.decode()}"
            return json_answer(400, json.dumps({"message": said, "request_id": "rid-echo"}))
        if self.api == "gzip":
            headers = (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
            return Answer(200, headers, b"this is not gzip")
        return Answer(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 9999\r\n\r\n{")


@pytest.mark.parametrize("api", ["echo", "gzip", "truncated"])
def test_a_misbehaving_newstore(fresh: World, api: str) -> None:
    rogue = Rogue(api)
    with serve(rogue) as server:
        fresh.env_file("rogue", ON_BODY, base=server.url)
        run = fresh.run("plan", code=1)
        fresh.run("apply", "--auto-approve", code=1)
        if api != "truncated":  # the same reads again, each retried after a backoff
            fresh.run("drift", code=1)
            fresh.run("dump", "rogue", code=1)
    fresh.other_tokens |= rogue.issued
    assert rogue.issued, "the CLI did get tokens to leak"
    assert "Error: " in run.stderr


@pytest.mark.parametrize("api", ["echo", "gzip", "truncated"])
def test_a_misbehaving_webhook(fresh: World, api: str) -> None:
    with serve(Rogue(api)) as webhook:
        hook = f"{webhook.url}/availabilities"
        fresh.env_file("sec-rogue-hook", ON_BODY.replace("{hook}", hook))
        seed(fresh.app, "sec-rogue-hook", OFF)
        run = fresh.run("apply", "--auto-approve", code=3)
        assert f"gate webhook_probe failed: webhook probe to {hook}" in run.stderr
        fresh.run("plan", "--probe", code=3)
        (probe,) = {s.headers["authorization"] for s in webhook.seen()}
        assert probe == API_KEY, "the webhook got its key, and no bearer token"


def test_no_secret_in_any_repr(fresh: World) -> None:
    from reconciler.config import load_environments
    from reconciler.core.plan import plan_environments
    from reconciler.newstore.client import NewStoreClient

    fresh.env_file("sec-repr", ON_BODY)
    seed(fresh.app, "sec-repr", OFF)
    environ = {
        "NEWSTORE_CLIENT_SECRET": CLIENT_SECRET,
        "ATP_API_KEY": API_KEY,
        "ORDER_API_KEY": ORDER_KEY,
    }
    (env,) = load_environments(fresh.directory, environ=environ)
    run = plan_environments([env])
    with NewStoreClient(env) as client:
        objects = [env, env.connection, run, *run.environments[0].steps, client]
    texts = [repr(o) for o in objects] + [str(o) for o in objects]
    fresh.runs.append(Run(("repr",), 0, "\n".join(texts), ""))
    assert run.environments[0].steps, "a plan with steps that hold the api_key"
