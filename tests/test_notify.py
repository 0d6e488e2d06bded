"""Drift notifications (issue 22): `drift --notify URL --state FILE`, change-only, against a real
HTTP receiver on 127.0.0.1 that checks the signature. The real CLI, the sandbox on 127.0.0.1,
the fleet of tests/drift_helpers.py. Retries wait on an injected sleep (no test waits)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from drift_helpers import SECRETS, STATUSES, fleet, in_sync_again
from env_helpers import WriteEnv
from jsonschema import Draft202012Validator
from receiver_helpers import Receiver, receiver
from test_drift import seed

from reconciler.cli import Injected, cli
from reconciler.resources import schema_path
from reconciler.sandbox import SandboxApp

Sandbox = tuple[SandboxApp, str]
SECRET = "a-shared-signing-secret-0042"
HOOK_PATH = "/services/T000/B000/the-secret-part-of-the-url"


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with receiver(HOOK_PATH) as rec:
        monkeypatch.setenv("RECONCILER_TEST_HOOK", rec.url + HOOK_PATH)
        monkeypatch.setenv("RECONCILER_NOTIFY_SECRET", SECRET)
        yield rec


@pytest.fixture
def envs(live_sandbox: Sandbox, write_env: WriteEnv) -> Path:
    sandbox, base = live_sandbox
    return fleet(sandbox, base, write_env, gone=False)


def run(directory: Path, *args: str, sleeps: list[float] | None = None) -> Result:
    waits = sleeps if sleeps is not None else []
    return CliRunner().invoke(
        cli,
        ["--environments-dir", str(directory), "drift", *args],
        obj=Injected(sleep=waits.append),
    )


def assert_quiet_about_secrets(result: Result) -> None:
    for secret in (*SECRETS, SECRET, HOOK_PATH, "the-secret-part"):
        assert secret not in result.output


def changes(request: Any) -> list[tuple[str, str, str | None]]:
    return [(c["name"], c["status"], c["previous_status"]) for c in request.json()["changes"]]


def test_a_change_notifies_once_the_repeat_is_quiet_and_the_recovery_notifies(
    envs: Path, hook: Receiver, live_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    state = tmp_path / "cache" / "drift-state.json"
    args = ("--probe", "--state", str(state), "--notify", "${RECONCILER_TEST_HOOK}")

    first = run(envs, *args)
    assert first.exit_code == 2, first.output
    (request,) = hook.requests
    assert request.method == "POST" and request.path == HOOK_PATH
    assert request.headers["content-type"] == "application/json"
    assert request.signed_by(SECRET), "X-Reconciler-Signature: sha256=HMAC of the body"
    assert not request.signed_by("another secret")
    body = request.json()
    schema = json.loads(schema_path("notification.schema.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(body)] == []
    assert body["format_version"] == 1 and body["event"] == "drift.changed"
    assert changes(request) == [
        ("acme-prod", "unhealthy", None),  # worst first
        ("acme-back", "blocked", None),
        ("acme-ui", "drift", None),
    ], "every environment not in sync is news on the first run; acme-eu is not"
    prod = body["changes"][0]["environment"]
    assert prod["unhealthy"] and prod["broken_rules"][0]["harm"] == "misroutes"
    assert state.is_file()
    assert_quiet_about_secrets(first)

    again = run(envs, *args)
    assert again.exit_code == 2, again.output
    assert len(hook.requests) == 1, "an unchanged repeat sends nothing"

    in_sync_again(sandbox, base, "acme-ui")
    recovered = run(envs, *args)
    assert recovered.exit_code == 2
    assert changes(hook.requests[1]) == [("acme-ui", "in_sync", "drift")], "the recovery"

    # acme-prod drifts differently now (another timeout): news, though still unhealthy.
    seed(
        sandbox,
        base,
        "acme-prod",
        oms=False,
        atp=True,
        ui=True,
        webhook={"timeout": 45, "api_key": "key-someone-pasted-by-hand-0042"},
    )
    differently = run(envs, *args)
    assert changes(hook.requests[2]) == [("acme-prod", "unhealthy", "unhealthy")]
    assert "45" in json.dumps(hook.requests[2].json()["changes"][0]["environment"]["settings"])
    assert len(hook.requests) == 3
    assert_quiet_about_secrets(differently)


def test_without_a_state_every_run_with_drift_notifies(envs: Path, hook: Receiver) -> None:
    for _ in range(2):
        result = run(envs, "--notify", "${RECONCILER_TEST_HOOK}")
        assert result.exit_code == 2, result.output
    assert len(hook.requests) == 2
    assert [c[0] for c in changes(hook.requests[1])] == ["acme-back", "acme-prod", "acme-ui"]
    in_sync = run(envs, "--notify", "${RECONCILER_TEST_HOOK}", "acme-eu")
    assert in_sync.exit_code == 0 and len(hook.requests) == 2, "all in sync: nothing to tell"


def test_notify_every_run_sends_every_environment_each_time(
    envs: Path, hook: Receiver, tmp_path: Path
) -> None:
    args = ("--state", str(tmp_path / "s.json"), "--notify", "${RECONCILER_TEST_HOOK}")
    run(envs, *args, "--notify-every-run")
    run(envs, *args, "--notify-every-run")
    assert len(hook.requests) == 2
    second = hook.requests[1].json()
    assert second["event"] == "drift.every_run"
    assert {c["name"]: c["changed"] for c in second["changes"]} == {
        "acme-back": False,
        "acme-ui": False,
        "acme-prod": False,
        "acme-eu": False,
    }


def test_429_and_5xx_are_retried_with_backoff_on_the_injected_sleep(
    envs: Path, hook: Receiver
) -> None:
    hook.script = [503, 429, 502]
    hook.headers = {"Retry-After": "7"}
    sleeps: list[float] = []
    result = run(envs, "--notify", "${RECONCILER_TEST_HOOK}", sleeps=sleeps)

    assert result.exit_code == 2, result.output
    assert len(hook.requests) == 4
    assert sleeps == [7.0, 7.0, 7.0], "Retry-After honoured, bounded"
    ids = {r.headers["x-reconciler-delivery"] for r in hook.requests}
    assert len(ids) == 1, "one delivery id across the retries: the receiver can deduplicate"
    assert all(r.signed_by(SECRET) for r in hook.requests)


def test_an_undeliverable_notification_exits_1_after_every_other_output_is_written(
    envs: Path, hook: Receiver, tmp_path: Path
) -> None:
    hook.then = 500
    state = tmp_path / "state.json"
    page, report = tmp_path / "drift.html", tmp_path / "drift.json"
    sleeps: list[float] = []
    args = (
        "--state",
        str(state),
        "--notify",
        "${RECONCILER_TEST_HOOK}",
        "--output",
        f"html={page}",
        "--output",
        f"json={report}",
    )
    failed = run(envs, *args, sleeps=sleeps)

    assert failed.exit_code == 1, failed.output
    assert len(hook.requests) == 4 and sleeps == [1.0, 2.0, 4.0], "bounded, doubling"
    assert (
        f"Error: could not notify the webhook webhook at 127.0.0.1:{hook.url.rsplit(':', 1)[1]} "
        "(${RECONCILER_TEST_HOOK}): answered 500 after 4 attempts." in failed.stderr
    )
    assert page.is_file() and json.loads(report.read_text())["status"] == "drift"
    assert "acme-prod" in failed.stdout, "the report itself is still on stdout"
    assert_quiet_about_secrets(failed)

    # The receiver is back: the undelivered changes are told now, not lost.
    hook.then = 200
    retried = run(envs, *args)
    assert retried.exit_code == 2, retried.output
    assert [c[0] for c in changes(hook.requests[-1])] == ["acme-back", "acme-prod", "acme-ui"]
    quiet = run(envs, *args)
    assert quiet.exit_code == 2 and len(hook.requests) == 5


def test_a_refusal_is_not_retried_and_other_targets_still_get_theirs(
    envs: Path, hook: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiver("/gone") as gone:
        gone.then = 404
        monkeypatch.setenv("GONE_HOOK", gone.url + "/gone")
        result = run(envs, "--notify", "${GONE_HOOK}", "--notify", "${RECONCILER_TEST_HOOK}")
        assert result.exit_code == 1
        assert len(gone.requests) == 1, "404: the webhook is gone, retrying cannot help"
        assert "answered 404." in result.stderr
        assert len(hook.requests) == 1, "one failing target does not stop the others"


def test_slack_gets_block_kit_worst_first_with_markup_escaped(
    live_sandbox: Sandbox, write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, base = live_sandbox
    envs = fleet(sandbox, base, write_env)
    (envs / "<!channel> & <mailto:x@evil.example|click>.yaml").write_text("tenant: acme-x\n")
    with receiver("/services/T/B/X") as slack:
        monkeypatch.setenv("SLACK_URL", f"slack:{slack.url}/services/T/B/X")
        result = run(envs, "--probe", "--notify", "${SLACK_URL}")
        assert result.exit_code == 1, result.output  # acme-gone and the broken file: errors
        (request,) = slack.requests
    assert "x-reconciler-signature" not in request.headers, "Slack checks no signature"
    message = request.json()
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == "NewStore drift: 5 environments changed"
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"][1:]
    firsts = [s.split("*", 2)[1] for s in sections]
    assert firsts[0] == "acme-prod", "worst first: unhealthy"
    assert sorted(firsts[1:3]) == [
        "&lt;!channel&gt; &amp; &lt;mailto:x@evil.example|click&gt;",
        "acme-gone",
    ], "then the errors, escaped"
    assert firsts[3:] == ["acme-back", "acme-ui"]
    assert ":rotating_light:" in sections[0] and "*unhealthy* (new)" in sections[0]
    assert "misroutes orders or availability" in sections[0], "the harm of a broken rule"
    raw = json.dumps(message)
    assert "<!channel>" not in raw and "<mailto:" not in raw
    assert blocks[-1]["type"] == "context" and "Checked " in blocks[-1]["elements"][0]["text"]
    assert len(blocks) <= 50 and all(len(s) <= 3000 for s in sections)
    for secret in SECRETS:
        assert secret not in raw


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://hooks.example.com/x/SECRETPATH", "refusing plain http to hooks.example.com"),
        ("ftp://hooks.example.com/SECRETPATH", "expected an https:// URL"),
        ("${NOT_SET_ANYWHERE}", "--notify ${NOT_SET_ANYWHERE}: the variable NOT_SET_ANYWHERE"),
        ("https://user:SECRETPATH@hooks.example.com/", "a URL with a user or password"),
    ],
)
def test_a_bad_notify_url_is_refused_before_any_tenant_is_read_and_never_shown(
    envs: Path, live_sandbox: Sandbox, value: str, message: str
) -> None:
    sandbox, _ = live_sandbox
    result = run(envs, "--notify", value)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "SECRETPATH" not in result.output
    assert all(sandbox.requests(t) == [] for t in STATUSES)


def test_the_url_can_come_from_reconciler_notify(
    envs: Path, hook: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_NOTIFY", hook.url + HOOK_PATH)
    result = run(envs)
    assert result.exit_code == 2, result.output
    assert len(hook.requests) == 1
    monkeypatch.setenv("RECONCILER_NOTIFY", "")
    assert run(envs).exit_code == 2 and len(hook.requests) == 1, "empty: no notification"


def test_a_corrupt_state_file_is_refused_before_any_read(
    envs: Path, live_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox, _ = live_sandbox
    state = tmp_path / "state.json"
    state.write_text('{"format_version": 1, "environments": {"acme-eu": {"status": "calm"')
    result = run(envs, "--state", str(state))
    assert result.exit_code == 1
    assert f"the drift state file {state} is not usable" in result.stderr
    assert "delete it to start afresh" in result.stderr
    assert "Traceback" not in result.output
    assert all(sandbox.requests(t) == [] for t in STATUSES)


def test_pushgateway_gets_the_metrics_and_a_failed_push_exits_1(envs: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with receiver() as gateway:
        result = run(envs, "--pushgateway", gateway.url)
        assert result.exit_code == 2, result.output
        (request,) = gateway.requests
        assert (request.method, request.path) == ("PUT", "/metrics/job/newstore_reconciler")
        families = {f.name: f for f in text_string_to_metric_families(request.body.decode("utf-8"))}
        statuses = {
            s.labels["environment"]: s.labels["status"]
            for s in families["newstore_reconciler_environment_status"].samples
            if s.value == 1
        }
        assert statuses == {
            "acme-eu": "in_sync",
            "acme-ui": "drift",
            "acme-back": "blocked",
            "acme-prod": "drift",
        }
        assert "newstore_reconciler_last_success_timestamp_seconds" in families

        gateway.then = 503
        failed = run(envs, "--pushgateway", gateway.url + "/with/SECRETPATH")
        assert failed.exit_code == 1
        assert "could not push the metrics to the Pushgateway at 127.0.0.1:" in failed.stderr
        assert "answered 503" in failed.stderr and "SECRETPATH" not in failed.output
