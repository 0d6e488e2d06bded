"""Review of safety v3 (issue 20; issue 25 item 5), played as an adversary: each test here
is a way through the promise (or a claim of docs/safety.md) that a change made with the tool
cannot take the retailer off sale. They failed on the main they were written against,
as strict xfails; every finding has since been fixed (branch review-20) and each test is a
plain one, which fails again if its fix is reverted.

Everything goes through the real CLI against the sandbox on 127.0.0.1; the concurrent writer
acts through the sandbox's `before_request` hook with its own token (its writes are in the
sandbox's history and known by their request ids), faults through the sandbox's fault rules.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apply_helpers import ORDER_WEBHOOK
from click.testing import CliRunner, Result
from env_helpers import WriteEnv, run_cli
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from reconciler.cli import cli
from reconciler.core.journal import read_journal
from reconciler.rules import violations
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.values import state_to_values

Sandbox = tuple[SandboxApp, str]
TENANT = "acme-review"
ATP_PATH = f"/{TENANT}/v0/config/routing/uses_external_atp"
HOOK_PATH = f"/{TENANT}/v0/config/availability/webhook"
MARK = "X-Other-Writer"

PROBE_YAML = """\
gates:
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
"""
# The forward migration of external ATP alone (the external OMS already on, the webhook
# config already the file's): one write, external ATP on, probed right before it.
ATP_ON_YAML = (
    """\
external_oms:
  enabled: true
availability_webhook:
  url: {sandbox}/_sandbox/webhook/availabilities
  api_key: ${SANDBOX_WEBHOOK_API_KEY}
  external_identifier: product_id
  timeout: 5
external_atp:
  enabled: true
"""
    + PROBE_YAML
)


def _hook(url: str, key: str = DEFAULT_WEBHOOK_API_KEY) -> dict[str, Any]:
    return {"url": url, "api_key": key, "external_identifier": "product_id", "timeout": 5}


def _seed(sandbox: SandboxApp, base: str, *, atp: bool, hook: dict[str, Any] | None = None) -> None:
    sandbox.seed(
        TENANT,
        {
            "external_oms": {"enabled": True},
            "availability_webhook": hook or _hook(f"{base}{WEBHOOK_PATH}"),
            "uses_external_atp": atp,
            "external_order_webhook": dict(ORDER_WEBHOOK),
        },
    )


class OtherWriter:
    """Someone else writing to the tenant through NewStore's API (the sandbox in-process),
    with a token of its own; every request id it caused is in `ids`."""

    def __init__(self, sandbox: SandboxApp) -> None:
        self.sandbox = sandbox
        self.ids: set[str] = set()

    def send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        with httpx.Client(
            transport=self.sandbox.transport(), base_url="http://sandbox.local", headers={MARK: "1"}
        ) as client:
            token = client.post(
                f"/auth/realms/{TENANT}/protocol/openid-connect/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": "sandbox",
                    "client_secret": "sandbox-secret",
                },
            )
            self.ids.add(token.headers["x-request-id"])
            response = client.request(
                method,
                f"/{TENANT}{path}",
                json=body,
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            )
            self.ids.add(response.headers["x-request-id"])
            return response

    def delete_webhook(self) -> None:
        assert self.send("DELETE", "/v0/config/availability/webhook").status_code == 200


def _on_first(
    sandbox: SandboxApp, method: str, path: str, act: Callable[[Request], None]
) -> list[float]:
    """Run `act` right before the first tool request `method path` is handled (once)."""
    fired: list[float] = []

    def hook(request: Request) -> None:
        if request.headers.get(MARK) or fired:
            return
        if request.method == method and request.path == path:
            fired.append(time.monotonic())
            act(request)

    sandbox.before_request = hook
    return fired


def _apply(directory: Path, *args: str) -> Result:
    journal = directory.parent / "journal.jsonl"
    return run_cli(directory, "apply", "--auto-approve", "--journal", str(journal), *args)


def _tool_writes(sandbox: SandboxApp, other: OtherWriter) -> list[dict[str, Any]]:
    return [
        h for h in sandbox.history(TENANT) if h["status"] < 300 and h["request_id"] not in other.ids
    ]


def _broken(state: dict[str, Any]) -> list[int]:
    return [rule.number for rule in violations(state_to_values(state))]


# -- 1. a re-read that fails right after a write a rule relies on skips the compensation -------


def test_a_failed_reread_after_the_atp_write_leaves_atp_on_without_a_webhook(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """Another machine deletes the webhook config right before this apply's external-ATP write
    lands (the very interleaving of tests/test_safety_v3_concurrent.py), and one of the
    re-reads right after the write answers a single 500. The write is not undone: apply stops
    with external ATP on and no webhook config (the retailer off sale), and the stop report
    lists the ATP write, which landed, as FAILED. Its own fresh read a moment later finds the
    rule broken, and still nothing is written."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=False)
    directory = write_env(TENANT, TENANT, base, ATP_ON_YAML).parent
    other = OtherWriter(sandbox)

    def other_machine(request: Request) -> None:
        other.delete_webhook()
        # One 500 on the next read of the webhook config: the re-read right after the write.
        sandbox.set_faults([{"method": "GET", "path": HOOK_PATH, "status": 500, "times": 1}])

    _on_first(sandbox, "POST", ATP_PATH, other_machine)
    applied = _apply(directory)
    sandbox.before_request = None

    assert applied.exit_code == 1, applied.output
    state = sandbox.state(TENANT)
    # What must hold: the write that turned external ATP on is undone at once.
    assert _broken(state) == [], (state, applied.stderr)
    # And the stop report does not call a write that landed FAILED under another request's id.
    # (The first of the tool's two writes of it: the second is the compensating one.)
    atp_write, undo = [h for h in _tool_writes(sandbox, other) if h["path"] == ATP_PATH]
    assert undo["state_after"]["uses_external_atp"] is False
    assert "FAILED        1/1 external_atp" not in applied.stderr, applied.stderr
    assert atp_write["request_id"] in applied.stderr, applied.stderr


# -- 2. the one-round-trip window is as long as the retries of a write whose answer was lost --


def test_a_lost_answer_to_the_atp_write_keeps_atp_on_without_a_webhook_for_seconds(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """docs/safety.md: "the window in which a concurrent writer can leave a rule broken is one
    round trip ... the tool's next request is the re-read of the rule's other settings". Here
    the external-ATP write lands on a tenant whose webhook config another machine has just
    deleted, and its answer is lost (the connection drops after NewStore committed it; then
    two 503s): the client retries the write with backoff before anything is re-read, so
    external ATP stays on without a webhook for seconds (up to connection.retry.max_seconds,
    60 s by default), with more writes of the tool in between, not one round trip."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=False)
    directory = write_env(TENANT, TENANT, base, ATP_ON_YAML).parent
    other = OtherWriter(sandbox)
    # The answer is lost once. (The review's first version added two 503s after it, which
    # stretched the blind resends to seconds; with the fix they would hit the compensating
    # write instead, which no fix can make land sooner. A resend in between, after its
    # backoff, is what the assertions below catch.)
    sandbox.set_faults([{"method": "POST", "path": ATP_PATH, "drop_connection": True, "times": 1}])
    seen: list[tuple[float, str, str, str]] = []

    def log_and_interfere(request: Request) -> None:
        if request.headers.get(MARK):
            return
        rid = request.environ["sandbox.request_id"]
        seen.append((time.monotonic(), request.method, request.path, rid))
        if (
            request.method == "POST"
            and request.path == ATP_PATH
            and len([s for s in seen if s[1] == "POST" and s[2] == ATP_PATH]) == 1
        ):
            other.delete_webhook()

    sandbox.before_request = log_and_interfere
    applied = _apply(directory)
    sandbox.before_request = None

    assert applied.exit_code == 1, applied.output
    assert _broken(sandbox.state(TENANT)) == [], applied.stderr  # in the end it was undone
    history = sandbox.history(TENANT)
    first_break = next(h for h in history if h["status"] < 300 and _broken(h["state_after"]) == [1])
    fix = next(
        h
        for h in history
        if h["seq"] > first_break["seq"] and h["status"] < 300 and not _broken(h["state_after"])
    )
    at = {rid: (when, method) for when, method, _, rid in seen}
    between = [
        (method, path)
        for when, method, path, rid in seen
        if at[first_break["request_id"]][0] < when < at[fix["request_id"]][0]
    ]
    window = at[fix["request_id"]][0] - at[first_break["request_id"]][0]
    # One round trip of re-reads between the break and the compensating write, nothing else.
    assert all(method == "GET" for method, _ in between), (between, f"{window:.2f} s")
    assert window < 1.0, f"external ATP was on without a webhook for {window:.2f} s"


def test_a_relied_on_write_that_did_not_land_is_read_back_then_resent(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """The other half of the fix above: a write a rule relies on whose connection dropped
    before NewStore committed it is read back (it did not land), the rule's other settings are
    checked again, and only then is it sent again; apply converges."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=False)
    directory = write_env(TENANT, TENANT, base, ATP_ON_YAML).parent
    sandbox.set_faults(
        [
            {
                "method": "POST",
                "path": ATP_PATH,
                "status": 503,
                "drop_connection": True,
                "times": 1,
            }
        ]
    )
    applied = _apply(directory)
    assert applied.exit_code == 0, applied.output
    assert sandbox.state(TENANT)["uses_external_atp"] is True
    tool = [
        (r["method"], r["path"]) for r in sandbox.requests(TENANT) if r["path"].startswith("/acme")
    ]
    first = tool.index(("POST", ATP_PATH))
    # The dropped POST, then its read-back, then the partners again, then the resend.
    assert tool[first + 1] == ("GET", ATP_PATH), tool[first:]
    assert ("GET", HOOK_PATH) in tool[first + 2 : tool.index(("POST", ATP_PATH), first + 1)]


# -- 3. the stop report calls a tenant off sale "safe" ---------------------------------------


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback url nothing answers on: a bound, never listening socket refuses it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/availabilities"


def _webhook_only(url: str) -> str:
    return (
        "availability_webhook:\n"
        f"  url: {url}\n"
        "  api_key: ${SANDBOX_WEBHOOK_API_KEY}\n"
        "  external_identifier: product_id\n"
        "  timeout: 5\n" + PROBE_YAML
    )


def test_the_stop_report_calls_atp_on_with_an_unprobed_dead_webhook_safe(
    live_sandbox: Sandbox, write_env: WriteEnv, dead_url: str
) -> None:
    """External ATP is on; the file rewrites the webhook config (probed, passes). Right after
    the PUT lands, someone else PUTs a config pointing at a dead host. Apply stops ("did not
    settle"), which is right, but its stop report says "The live state, re-read just now,
    satisfies every safety rule" while NewStore sends every availability call to a host
    nothing answers on, and it does not name the concurrent change at all. Rule 1 is "the
    webhook config exists and answered the probe with the values NewStore holds": the fresh
    read only checks that a config exists."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=True, hook=_hook(f"{base}{WEBHOOK_PATH}?old=1"))
    directory = write_env(TENANT, TENANT, base, _webhook_only(f"{base}{WEBHOOK_PATH}")).parent
    other = OtherWriter(sandbox)
    put_seen: list[str] = []

    def replace_right_after_the_put(request: Request) -> None:
        if request.headers.get(MARK) or not request.path.startswith(f"/{TENANT}/"):
            return
        if put_seen == ["PUT"]:
            put_seen.append("replaced")
            other.send("PUT", "/v0/config/availability/webhook", _hook(dead_url))
        elif request.method == "PUT" and request.path == HOOK_PATH and not put_seen:
            put_seen.append("PUT")

    sandbox.before_request = replace_right_after_the_put
    applied = _apply(directory)
    sandbox.before_request = None

    assert put_seen == ["PUT", "replaced"]
    assert applied.exit_code == 1, applied.output
    state = sandbox.state(TENANT)
    err = applied.stderr
    if state["uses_external_atp"] and state["availability_webhook"]["url"] == dead_url:
        # (It is, today: nothing was undone; NewStore calls a host nothing answers on.)
        assert "satisfies every safety rule" not in err, err
    assert "someone else changed availability_webhook" in err, err


def test_the_safe_state_report_of_a_refused_webhook_write_vouches_for_a_dead_webhook(
    live_sandbox: Sandbox, write_env: WriteEnv, dead_url: str
) -> None:
    """No concurrent writer: external ATP is on and NewStore's webhook config points at a
    host nothing answers on (the retailer is off sale already). The file moves the webhook to
    a url whose probe fails; the write is refused (right), and the "safe-state report" says
    "The live state, re-read just now, satisfies every safety rule": nothing in it probed, or
    can vouch for, the config NewStore holds (`drift --probe` of the same state says
    unhealthy)."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=True, hook=_hook(dead_url))
    sandbox.set_webhook_behaviour(answer="empty")
    directory = write_env(TENANT, TENANT, base, _webhook_only(f"{base}{WEBHOOK_PATH}")).parent

    applied = _apply(directory)
    assert applied.exit_code == 1, applied.output
    assert "refused to write a webhook config that failed the probe" in applied.stderr
    assert sandbox.state(TENANT)["availability_webhook"]["url"] == dead_url
    drift = run_cli(directory, "drift", "--probe", "--format", "json")
    (env,) = json.loads(drift.stdout)["environments"]
    assert env["status"] == "unhealthy", env
    assert "satisfies every safety rule" not in applied.stderr, applied.stderr


# -- 4. the probe's own result text leaks a prefix of the webhook key --------------------------

LONG_KEY = "rk-live-5f2c1e9a7b3d4c6e8f0a1b2c3d4e5f60718293a4"  # 46 characters


@pytest.fixture
def echoing_webhook() -> Iterator[str]:
    """A webhook that answers 200 and a schema-valid body, but about a product it names after
    the key it was sent (as a misconfigured or hostile webhook may): "unknown product for the
    credentials <key>"."""

    def app(environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        key = request.headers.get("Authorization", "")
        body = {
            "availabilities": [
                {
                    "product_id": f"no product of this retailer for api key {key}",
                    "external_identifier": "1000061",
                    "fulfillment_location": "US01",
                    "atp": 1,
                }
            ]
        }
        return Response(json.dumps(body), mimetype="application/json")(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/availabilities"
    finally:
        server.shutdown()
        thread.join()


def test_the_probe_cuts_the_webhooks_words_before_scrubbing_the_key(
    live_sandbox: Sandbox,
    write_env: WriteEnv,
    echoing_webhook: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """judge_answer cuts a value the webhook sent to 60 characters (`_shown`) and
    probe_webhook scrubs the key from the message afterwards: a key the cut splits is no
    longer found, and its first characters reach stderr and the journal's gate record (the
    very bug issue 20 item 8(a) fixed for NewStore's error text, back in the probe)."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=False, hook=_hook(echoing_webhook, LONG_KEY))
    directory = write_env(TENANT, TENANT, base, ATP_ON_YAML).parent
    (directory / f"{TENANT}.yaml").write_text(
        (directory / f"{TENANT}.yaml")
        .read_text()
        .replace(f"{base}/_sandbox/webhook/availabilities", echoing_webhook)
    )
    monkeypatch.setenv("SANDBOX_WEBHOOK_API_KEY", LONG_KEY)

    applied = _apply(directory)
    assert applied.exit_code == 3, applied.output
    assert "gate webhook_probe failed" in applied.stderr, applied.stderr
    journal = (directory.parent / "journal.jsonl").read_text()
    drift = run_cli(directory, "drift", "--probe")
    for text in (applied.stdout, applied.stderr, journal, drift.stdout, drift.stderr):
        assert LONG_KEY[:12] not in text, text


# -- 5. tenant identity: dot segments and percent-encoding in the URLs ------------------------


def _connection(tenant: str, base_url: str, token_url: str) -> str:
    return textwrap.dedent(
        f"""\
        tenant: {tenant}
        connection:
          base_url: {base_url}
          token_url: {token_url}
          client_id: sandbox
          client_secret: ${{SANDBOX_CLIENT_SECRET}}
          timeout: 5
        """
    )


OFF_BODY = (
    "external_oms:\n  enabled: false\nexternal_atp:\n  enabled: false\n"
    "associate_app:\n  use_new_om_ui: false\n"
)


def _token_url(base: str, realm: str = TENANT) -> str:
    return f"{base}/auth/realms/{realm}/protocol/openid-connect/token"


@pytest.mark.parametrize("path", [f"/{TENANT}/.", f"/x/../{TENANT}", "/acme%2Dreview"])
def test_two_files_for_one_tenant_pass_validate_when_one_spells_the_path_differently(
    live_sandbox: Sandbox, write_env: WriteEnv, path: str
) -> None:
    """Identity keys on the path as written; httpx removes dot segments and the sandbox (like
    any server) decodes %2D, so both files write the same tenant, yet validate accepts them
    (and the apply lock, keyed by the same identity, does not make them wait for each other)."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=False)
    # Outside the tool: the spelling reaches acme-review, as its own path does.
    token = httpx.post(
        _token_url(base),
        data={"grant_type": "client_credentials", "client_id": "sandbox",
              "client_secret": "sandbox-secret"},
    ).json()["access_token"]  # fmt: skip
    with httpx.Client(base_url=f"{base}{path}") as client:
        seen = client.get(
            "/v0/config/sales_order/external_oms", headers={"Authorization": f"Bearer {token}"}
        )
    assert seen.status_code == 200 and seen.json()["value"] == {"enabled": True}, seen.text

    first = write_env(TENANT, TENANT, base, "external_oms:\n  enabled: true\n")
    (first.parent / "second.yaml").write_text(
        _connection(TENANT, f"{base}{path}", _token_url(base)) + OFF_BODY
    )
    validated = run_cli(first.parent, "validate")
    assert validated.exit_code == 1, validated.output
    assert "second.yaml" in validated.stderr  # e.g. "... both manage tenant acme-review"


def test_a_tenant_label_its_urls_contradict_passes_with_dot_segments(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """Issue 20 item 7 again: `tenant: acme-production` whose URLs, once httpx removed their
    dot segments, name acme-review. validate accepts it; apply writes acme-review and reports
    acme-production."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=False)
    directory = write_env("unused", "unused", base).parent
    (directory / "unused.yaml").unlink()
    (directory / "acme-production.yaml").write_text(
        _connection(
            "acme-production",
            f"{base}/{TENANT}/.",
            f"{base}/auth/realms/x/../{TENANT}/protocol/openid-connect/token",
        )
        + OFF_BODY
    )
    applied = _apply(directory)
    # Today: exit 0, "acme-production (tenant acme-production)" in the output, and the write
    # in acme-review's history. Wanted: refused before anything is written.
    assert sandbox.state(TENANT)["external_oms"] == {"enabled": True}, applied.output
    assert applied.exit_code == 1, applied.output

    validated = run_cli(directory, "validate")
    assert validated.exit_code == 1, validated.output
    assert "connection." in validated.stderr  # e.g. "base_url: names tenant acme-review"


def test_one_machine_two_spellings_of_one_tenant_do_not_share_the_apply_lock(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    """Issue 20 item 6(a) again, with a spelling the identity does not fold: apply A (a
    subprocess) turns external ATP on through `.../acme-review`, and apply B on the same
    machine (same lock directory), through `.../acme-review/.`, runs while A's write is in
    flight and deletes the webhook config. The lock should refuse B; it does not."""
    write_env("unused", "unused", "http://127.0.0.1:1")  # exports the secrets' variables
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=False)
    a_dir, b_dir = tmp_path / "a" / "environments", tmp_path / "b" / "environments"
    a_dir.mkdir(parents=True)
    b_dir.mkdir(parents=True)
    (a_dir / f"{TENANT}.yaml").write_text(
        _connection(TENANT, f"{base}/{TENANT}", _token_url(base))
        + ATP_ON_YAML.replace("{sandbox}", base)
    )
    (b_dir / f"{TENANT}.yaml").write_text(
        _connection(TENANT, f"{base}/{TENANT}/.", _token_url(base))
        + "external_atp:\n  enabled: false\navailability_webhook: absent\n"
    )
    ran: list[Result] = []

    def b_inside_a(request: Request) -> None:
        if request.method == "POST" and request.path == ATP_PATH and not ran:
            ran.append(
                CliRunner().invoke(
                    cli,
                    [
                        "--environments-dir",
                        str(b_dir),
                        "apply",
                        "--auto-approve",
                        "--journal",
                        str(tmp_path / "b.jsonl"),
                    ],
                )
            )

    sandbox.before_request = b_inside_a
    a = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "--environments-dir",
            str(a_dir),
            "apply",
            "--auto-approve",
            "--journal",
            str(tmp_path / "a.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    sandbox.before_request = None

    (b,) = ran
    # B never gets to run beside A: the spelling is refused before anything is locked, read or
    # written (the fix chose refusing dot segments over folding them into the identity).
    assert b.exit_code == 1, b.output
    assert "connection.base_url" in b.stderr and "`.` or `..` path segments" in b.stderr, (
        b.output,
        a.stderr,
    )
    assert a.returncode == 0, a.stderr
    state = sandbox.state(TENANT)
    assert state["uses_external_atp"] is True and state["availability_webhook"], state


# -- 6. a compensating write that landed is reported as failed --------------------------------


def test_a_compensation_that_landed_is_reported_failed_when_its_read_back_fails(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """The two-machines interleaving: the webhook is deleted right before this apply's
    external-ATP write, which is undone at once (right). The read after the compensating
    write answers one 500: `_compensate` treats that as the compensating write failing, and
    the stop report says "the compensating write (set external_atp back off) failed" and
    lists it FAILED, though NewStore holds external ATP off again."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=False)
    directory = write_env(TENANT, TENANT, base, ATP_ON_YAML).parent
    other = OtherWriter(sandbox)
    posts: list[Any] = []

    def hook(request: Request) -> None:
        if request.headers.get(MARK) or request.method != "POST" or request.path != ATP_PATH:
            return
        posts.append(request.get_json(force=True, silent=True, cache=True))
        if len(posts) == 1:
            other.delete_webhook()
        elif posts[-1] == {"value": False}:  # the compensating write: fail the read after it
            sandbox.set_faults([{"method": "GET", "path": ATP_PATH, "status": 500, "times": 1}])

    sandbox.before_request = hook
    applied = _apply(directory)
    sandbox.before_request = None

    assert posts == [{"value": True}, {"value": False}]
    assert sandbox.state(TENANT)["uses_external_atp"] is False
    assert applied.exit_code == 1, applied.output
    assert "the compensating write (set external_atp back off) failed" not in applied.stderr, (
        applied.stderr
    )
    journal = read_journal(directory.parent / "journal.jsonl")
    (compensated,) = [e for e in journal if e.get("compensating")]
    assert compensated["result"] == "applied"


# -- 7. configuration that validate accepts and that can only end off sale or unchecked --------


@pytest.fixture
def environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SANDBOX_CLIENT_SECRET", "sandbox-secret")
    monkeypatch.setenv("NEWSTORE_CLIENT_ID", "sandbox")
    monkeypatch.setenv("NEWSTORE_CLIENT_SECRET", "sandbox-secret")
    monkeypatch.setenv("SANDBOX_WEBHOOK_API_KEY", DEFAULT_WEBHOOK_API_KEY)
    directory = tmp_path / "environments"
    directory.mkdir()
    return directory


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765/_sandbox/webhook/availabilities",  # a rehearsal file's
        "http://localhost:8080/availabilities",
        "https://10.1.2.3/availabilities",
    ],
)
def test_a_production_tenant_may_point_newstore_at_a_webhook_only_this_machine_can_reach(
    environments: Path, url: str
) -> None:
    """`tenant: acme-production` (NewStore's own hosts) with the availability webhook on
    loopback or a private address passes validate, and the probe, which runs on the
    operator's machine, passes wherever something answers there (the sandbox of a rehearsal,
    a port-forward, the VPN): external ATP goes on and NewStore, calling from its own
    network, never reaches the webhook. NewStore can never call such a url."""
    (environments / "acme-production.yaml").write_text(
        "tenant: acme-production\n"
        + ATP_ON_YAML.replace("{sandbox}/_sandbox/webhook/availabilities", url)
    )
    validated = run_cli(environments, "validate")
    assert validated.exit_code == 1, validated.output
    assert "availability_webhook.url" in validated.stderr


def test_allow_shared_tenant_in_a_base_file_silences_the_check_for_every_environment(
    environments: Path,
) -> None:
    """`allow_shared_tenant: true` is meant to be said in each of two files that want two
    views of one tenant (docs/configuration.md: "in each of them"); said once in a base file,
    it lets every environment that extends the base share a tenant with any other, silently,
    as a stock confirmation in a base did before issue 20 item 5."""
    (environments / "_company.yaml").write_text("allow_shared_tenant: true\n")
    for name in ("acme-production", "acme-production-copy"):
        (environments / f"{name}.yaml").write_text(
            "extends: _company.yaml\ntenant: acme-production\n" + OFF_BODY
        )
    validated = run_cli(environments, "validate")
    assert validated.exit_code == 1, validated.output
    assert "both manage tenant" in validated.stderr


def test_a_concurrent_write_right_after_the_compensation_is_called_this_applys_own(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """The two-machines interleaving, and then the other machine turns external ATP on again
    right after the compensating write (before its read-back). `_compensate` records whatever
    it reads back as this apply's own write, unchecked: the stop report says the compensation
    was done ("undone") and that rule 1 "is broken by this apply's write of external_atp",
    though this apply's last write of external_atp was `false` and someone else's was `true`."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=False)
    directory = write_env(TENANT, TENANT, base, ATP_ON_YAML).parent
    other = OtherWriter(sandbox)
    posts: list[Any] = []

    def hook(request: Request) -> None:
        if request.headers.get(MARK) or not request.path.startswith(f"/{TENANT}/"):
            return
        if request.method == "POST" and request.path == ATP_PATH:
            posts.append(request.get_json(force=True, silent=True, cache=True))
            if len(posts) == 1:
                other.delete_webhook()
        elif posts == [{"value": True}, {"value": False}] and request.method == "GET":
            posts.append("on again")
            assert other.send("POST", "/v0/config/routing/uses_external_atp", {"value": True})

    sandbox.before_request = hook
    applied = _apply(directory)
    sandbox.before_request = None

    assert posts[:3] == [{"value": True}, {"value": False}, "on again"]
    err = applied.stderr
    # Today: "WARNING: THE LIVE STATE, RE-READ JUST NOW, BREAKS rule 1 ... rule 1 is broken by
    # this apply's write of external_atp together with someone else's change to
    # availability_webhook", and the compensation listed as done.
    assert "rule 1 is broken by this apply's write of external_atp" not in err, err


def test_a_delete_right_before_the_read_back_is_called_this_applys_write(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """External ATP on; the file rewrites the webhook config (probed, passes, written). Right
    before apply reads its write back, someone else deletes the config. `_step` records the
    value it read back as this apply's own write before checking it (`guard.wrote(settled)`),
    so the stop report says rule 1 "is broken by this apply's write of availability_webhook"
    (the apply wrote a working config; someone else deleted it) and names no concurrent
    change."""
    sandbox, base = live_sandbox
    _seed(sandbox, base, atp=True, hook=_hook(f"{base}{WEBHOOK_PATH}?old=1"))
    directory = write_env(TENANT, TENANT, base, _webhook_only(f"{base}{WEBHOOK_PATH}")).parent
    other = OtherWriter(sandbox)
    seen: list[str] = []

    def delete_before_the_read_back(request: Request) -> None:
        if request.headers.get(MARK) or request.path != HOOK_PATH:
            return
        seen.append(request.method)
        if seen[-2:] == ["PUT", "GET"]:  # the first read after the write: its read-back
            other.delete_webhook()

    sandbox.before_request = delete_before_the_read_back
    applied = _apply(directory)
    sandbox.before_request = None

    assert "PUT" in seen and other.ids, seen
    err = applied.stderr
    # Today: "WARNING: THE LIVE STATE, RE-READ JUST NOW, BREAKS rule 1 ... rule 1 is broken by
    # this apply's write of availability_webhook."
    assert "broken by this apply's write of availability_webhook" not in err, err
    assert "someone else deleted availability_webhook" in err, err


def test_a_stock_confirmation_may_come_from_an_environment_variable(
    environments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stock confirmation is "a dated line a person writes in the environment file" (the
    reviewed YAML, CONTRACT.md). `newstore_stock_confirmed: ${STOCK_OK}` is accepted, so the
    date can come from a CI variable or a shell (`STOCK_OK=$(date -u +%F)`): every migration
    back confirmed by nobody."""
    monkeypatch.setenv("STOCK_OK", time.strftime("%Y-%m-%d", time.gmtime()))
    (environments / "acme-production.yaml").write_text(
        "tenant: acme-production\n" + OFF_BODY + "gates:\n  newstore_stock_confirmed: ${STOCK_OK}\n"
    )
    validated = run_cli(environments, "validate")
    assert validated.exit_code == 1, validated.output
    assert "newstore_stock_confirmed" in validated.stderr
