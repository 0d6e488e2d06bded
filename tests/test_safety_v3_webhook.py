"""Safety v3 (issue 20, items 1-4; issue 25, item 5) end to end: the real CLI against the
sandbox on 127.0.0.1, which plays the lying webhook, the masked read and the key rotated while
the probe runs.

1. A file that manages a setting of a rule has the rule's other settings read (never written):
   a webhook rewrite under live external ATP is probed, and `drift --probe` probes whenever live
   external ATP is on.
2. A probe passes only on an answer that proves something: every requested product at a
   requested location, with the identifiers asked for, and an integer atp >= 0.
3. Right before a write rule 1 depends on, NewStore must hold the config that was probed.
4. A key NewStore answers masked is re-asserted (a probed write) before external ATP goes on;
   the order webhook's key likewise before `use_new_om_ui` goes on.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import ORDER_WEBHOOK, ORDER_WEBHOOK_API_KEY
from click.testing import Result
from env_helpers import ON_YAML, WriteEnv, run_cli
from werkzeug.wrappers import Request

from reconciler.resources import schema_path
from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH

Sandbox = tuple[SandboxApp, str]
TENANT = "acme-v3"
ROTATED = "a-rotated-webhook-api-key-0001"  # shares the last four characters of the file's key
assert ROTATED[-4:] == DEFAULT_WEBHOOK_API_KEY[-4:] and ROTATED != DEFAULT_WEBHOOK_API_KEY
OTHER = "another-webhook-api-key-9zq7"  # shares nothing the mask shows


def _hook(base: str, key: str = DEFAULT_WEBHOOK_API_KEY, url: str | None = None) -> dict[str, Any]:
    return {
        "url": url or f"{base}{WEBHOOK_PATH}",
        "api_key": key,
        "external_identifier": "product_id",
        "timeout": 5,
    }


def _seed(
    sandbox: SandboxApp,
    hook: dict[str, Any] | None,
    *,
    atp: bool,
    mask: bool | str = False,
    order: dict[str, Any] | None = None,
    ui: bool = False,
) -> None:
    state: dict[str, Any] = {
        "external_oms": {"enabled": True},
        "availability_webhook": hook,
        "uses_external_atp": atp,
        "external_order_webhook": dict(order or ORDER_WEBHOOK),
        "options": {"mask_webhook_api_key": mask},
    }
    sandbox.seed(TENANT, state)
    if ui:
        document = sandbox.state(TENANT)["associate_app_config"]
        document["ui_configurations"]["use_new_om_ui"] = True
        sandbox.seed(TENANT, {**state, "associate_app_config": document})


def _writes(sandbox: SandboxApp) -> list[tuple[str, str]]:
    return [
        (h["method"], h["path"].removeprefix(f"/{TENANT}").removeprefix("/v0/config/"))
        for h in sandbox.history(TENANT)
        if h["status"] < 300
    ]


def _apply(directory: Path, *args: str) -> Result:
    journal = directory.parent / f"journal-{len(list(directory.parent.glob('journal-*')))}.jsonl"
    return run_cli(directory, "apply", "--auto-approve", "--journal", str(journal), *args)


def _valid(document: Any, schema: str) -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator(json.loads(schema_path(schema).read_text())).validate(document)


def _no_secret(*results: Result) -> None:
    for result in results:
        for secret in (DEFAULT_WEBHOOK_API_KEY, ROTATED, OTHER, "sandbox-secret"):
            assert secret not in result.output


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback url nothing answers on: a bound, never listening socket refuses it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/availabilities"


PROBE_YAML = """\
gates:
  webhook_probe:
    products: ["1000061", "1000062"]
    fulfillment_locations: ["US01"]
"""


def _webhook_only(url: str, timeout: int = 5) -> str:
    return (
        "availability_webhook:\n"
        f"  url: {url}\n"
        "  api_key: ${SANDBOX_WEBHOOK_API_KEY}\n"
        "  external_identifier: product_id\n"
        f"  timeout: {timeout}\n" + PROBE_YAML
    )


# -- 1. the rule's other settings are read -------------------------------------------------------


def test_a_webhook_rewrite_under_live_atp_is_probed_though_the_file_does_not_manage_atp(
    live_sandbox: Sandbox, write_env: WriteEnv, dead_url: str
) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base), atp=True)
    directory = write_env(TENANT, TENANT, base, _webhook_only(dead_url)).parent

    planned = run_cli(directory, "plan", "--format", "json")
    assert planned.exit_code == 0, planned.output
    _valid(json.loads(planned.stdout), "plan.schema.json")
    (env,) = json.loads(planned.stdout)["environments"]
    (step,) = env["steps"]
    assert step["setting"] == "availability_webhook"
    assert [g["name"] for g in step["gates"]] == ["webhook_probe"]
    assert "no rule constrains this step" not in step["why"]
    assert env["read_for_rules"] == {"external_atp": [1]}
    assert env["live"]["external_atp"] == {"enabled": True}
    text = run_cli(directory, "plan")
    assert "read for rule 1 (not managed here, never written): external_atp" in text.stdout

    applied = _apply(directory)
    assert applied.exit_code == 1, applied.output
    assert "refused to write a webhook config that failed the probe" in applied.stderr
    assert sandbox.state(TENANT)["availability_webhook"]["url"] == f"{base}{WEBHOOK_PATH}"
    assert _writes(sandbox) == []
    _no_secret(planned, text, applied)


def test_drift_probe_probes_the_live_webhook_whenever_live_atp_is_on(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base), atp=True)
    sandbox.set_webhook_behaviour(answer="empty")
    body = "external_oms:\n  enabled: true\nassociate_app:\n  use_new_om_ui: false\n" + PROBE_YAML
    directory = write_env(TENANT, TENANT, base, body).parent

    drift = run_cli(directory, "drift", "--probe", "--format", "json")
    assert drift.exit_code == 2, drift.output
    _valid(json.loads(drift.stdout), "drift.schema.json")
    (env,) = json.loads(drift.stdout)["environments"]
    assert env["status"] == "unhealthy", env
    assert "1000061" in " ".join(env["unhealthy"])
    _no_secret(drift)


def test_a_file_that_turns_the_external_oms_off_alone_is_refused(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """What the issue calls `external_oms: {enabled: false}` alone: refused offline (the rules
    cannot be checked without external_atp and associate_app), and, should an Environment be
    built without the loader (the Python API), blocked by the plan on the live partners."""
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base), atp=True)
    directory = write_env(TENANT, TENANT, base, "external_oms:\n  enabled: false\n").parent
    refused = run_cli(directory, "validate")
    assert refused.exit_code == 1
    assert "rule 2 (external ATP on ⇒ the external OMS flag is on) cannot be checked" in (
        refused.stderr
    )


# -- 2. a probe that proves nothing fails ----------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("empty", "1000061 got no entry at US01"),
        ("foreign", "entry 0 names product other-1000061, which was not asked about"),
        ("negative_atp", "availabilities[0].atp must be an integer >= 0, got -3"),
        ("fractional_atp", "availabilities[0].atp must be an integer >= 0, got 2.5"),
        ("wrong_identifier", "external_identifier sku-nobody-asked-for"),
    ],
)
def test_a_probe_answer_that_proves_nothing_blocks_external_atp(
    live_sandbox: Sandbox, write_env: WriteEnv, answer: str, words: str
) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base), atp=False)
    sandbox.set_webhook_behaviour(answer=answer)
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    applied = _apply(directory)
    assert applied.exit_code == 3, applied.output
    assert "gate webhook_probe failed" in applied.stderr, applied.stderr
    assert words in applied.stderr, applied.stderr
    assert ("POST", "routing/uses_external_atp") not in _writes(sandbox)
    assert sandbox.state(TENANT)["uses_external_atp"] is False
    _no_secret(applied)


def test_a_pair_left_out_passes_and_is_listed(live_sandbox: Sandbox, write_env: WriteEnv) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base), atp=False)
    sandbox.set_webhook_behaviour(answer="omit_first")
    body = ON_YAML.replace('fulfillment_locations: ["US01"]', "fulfillment_locations: [US01, US02]")
    directory = write_env(TENANT, TENANT, base, body).parent

    applied = _apply(directory)
    assert applied.exit_code == 0, applied.output
    assert "gate webhook_probe passed" in applied.stdout
    assert "left out (NewStore reads them as unavailable): 1000061@US01" in applied.stdout


def test_min_available_needs_that_many_pairs_in_stock(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base), atp=False)
    sandbox.set_webhook_behaviour(answer="sold_out")
    body = ON_YAML.replace(
        'fulfillment_locations: ["US01"]', 'fulfillment_locations: ["US01"]\n    min_available: 1'
    )
    directory = write_env(TENANT, TENANT, base, body).parent

    applied = _apply(directory)
    assert applied.exit_code == 3, applied.output
    assert "0 of 1 requested pairs have atp > 0; gates.webhook_probe.min_available is 1" in (
        applied.stderr
    )
    sandbox.set_webhook_behaviour()
    assert _apply(directory).exit_code == 0


# -- 3. the probed config is the one NewStore holds -----------------------------------------------


@pytest.mark.parametrize("mask", [False, True], ids=["clear", "masked"])
def test_a_key_rotated_while_the_probe_runs_stops_before_atp_goes_on(
    live_sandbox: Sandbox, write_env: WriteEnv, mask: bool
) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base), atp=False, mask=mask)
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent
    rotated = OTHER  # its last four characters differ: a masked read shows that much

    def rotate(request: Request) -> None:
        if request.path == WEBHOOK_PATH and sandbox.before_request is not None:
            sandbox.before_request = None  # once
            state = sandbox.state(TENANT)
            state["availability_webhook"]["api_key"] = rotated
            sandbox.seed(TENANT, state)

    sandbox.before_request = rotate
    applied = _apply(directory)
    assert applied.exit_code == 1, applied.output
    assert "external_atp: gate webhook_probe passed" in applied.stdout
    err = applied.stderr
    assert "is not the one the probe tested: its api_key changed" in err, err
    assert "stopped before writing external_atp" in err
    assert "The live state, re-read just now, satisfies every safety rule." in err
    assert sandbox.state(TENANT)["uses_external_atp"] is False
    assert sandbox.state(TENANT)["availability_webhook"]["api_key"] == rotated
    _no_secret(applied)


# -- 4. masked keys are re-asserted before external ATP or the new order UI goes on -------------


@pytest.mark.parametrize("mask", [True, "edges"], ids=["suffix", "edges"])
def test_a_partly_masked_key_that_could_be_the_files_is_reasserted_before_atp_goes_on(
    live_sandbox: Sandbox, write_env: WriteEnv, mask: bool | str
) -> None:
    sandbox, base = live_sandbox
    held = ROTATED if mask is True else DEFAULT_WEBHOOK_API_KEY[:4] + "x" * 10 + "0001"
    _seed(sandbox, _hook(base, held), atp=False, mask=mask)
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    planned = run_cli(directory, "plan")
    assert planned.exit_code == 0, planned.output
    assert "1. availability_webhook: update" in planned.stdout, planned.stdout
    assert "cannot be read back and compared" in planned.stdout

    applied = _apply(directory)
    assert applied.exit_code == 0, applied.output
    assert _writes(sandbox)[:2] == [
        ("PUT", "availability/webhook"),
        ("POST", "routing/uses_external_atp"),
    ]
    assert sandbox.state(TENANT)["availability_webhook"]["api_key"] == DEFAULT_WEBHOOK_API_KEY

    drift = run_cli(directory, "drift", "--probe")
    assert drift.exit_code == 0, drift.output
    assert (
        "availability_webhook.api_key: NewStore answers it masked: the key it holds could not "
        "be compared with the file's" in drift.stdout
    ), drift.stdout
    _no_secret(planned, applied, drift)


def test_a_masked_order_webhook_key_is_reasserted_before_the_new_order_ui_goes_on(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    revoked = {**ORDER_WEBHOOK, "api_key": "a-revoked-order-webhook-key-77"}
    _seed(sandbox, _hook(base), atp=True, mask="full", order=revoked)
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    planned = run_cli(directory, "plan", "--format", "json")
    assert planned.exit_code == 0, planned.output
    (env,) = json.loads(planned.stdout)["environments"]
    assert [s["setting"] for s in env["steps"]] == ["external_order_webhook", "associate_app"]
    assert "re-asserts the external_order_webhook config" in env["steps"][0]["why"]

    applied = _apply(directory)
    assert applied.exit_code == 0, applied.output
    assert sandbox.state(TENANT)["external_order_webhook"]["api_key"] == ORDER_WEBHOOK_API_KEY
    assert _writes(sandbox) == [
        ("POST", "sales_order/external_order_webhook"),
        ("PUT", "/api/v1/associate-app/config"),
    ]

    drift = run_cli(directory, "drift", "--format", "json")
    assert drift.exit_code == 0, drift.output
    _valid(json.loads(drift.stdout), "drift.schema.json")
    (env,) = json.loads(drift.stdout)["environments"]
    assert env["status"] == "in_sync"
    assert set(env["uncompared_secrets"]) == {
        "availability_webhook.api_key",
        "external_order_webhook.api_key",
    }
    text = run_cli(directory, "drift")
    assert "external_order_webhook.api_key: NewStore answers it masked" in text.stdout
    _no_secret(planned, applied, drift, text)


def test_a_masked_key_with_atp_already_on_is_not_rewritten_every_run(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base), atp=True, mask="full")
    document = sandbox.state(TENANT)
    document["associate_app_config"]["ui_configurations"]["use_new_om_ui"] = True
    sandbox.seed(TENANT, document)
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent
    planned = run_cli(directory, "plan", "--detailed-exitcode")
    assert planned.exit_code == 0, planned.output


# -- 1 and 6 together: external ATP switched on by someone else around a webhook write ------------

ATP_PATH = f"/{TENANT}/v0/config/routing/uses_external_atp"
HOOK_PATH = f"/{TENANT}/v0/config/availability/webhook"


def _turn_atp_on_at(sandbox: SandboxApp, method: str, path: str, nth: int) -> list[str]:
    """Before the `nth` request `method path` is handled, external ATP goes on by hand."""
    seen: list[str] = []

    def hand_edit(request: Request) -> None:
        if request.method == method and request.path == path:
            seen.append(request.path)
            if len(seen) == nth:
                state = sandbox.state(TENANT)
                sandbox.seed(TENANT, {**state, "uses_external_atp": True})

    sandbox.before_request = hand_edit
    return seen


def test_atp_switched_on_before_an_unprobed_webhook_write_stops_it(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base, url="https://old-atp.example/availabilities"), atp=False)
    directory = write_env(TENANT, TENANT, base, _webhook_only(f"{base}{WEBHOOK_PATH}")).parent
    # The plan's read of external ATP, then apply's re-read right before the webhook write.
    _turn_atp_on_at(sandbox, "GET", ATP_PATH, 2)

    applied = _apply(directory)
    assert applied.exit_code == 1, applied.output
    assert "external_atp went on since the plan" in applied.stderr, applied.stderr
    assert "would now need the webhook probe" in applied.stderr
    assert _writes(sandbox) == []


@pytest.mark.parametrize("answer", ["healthy", "empty"])
def test_atp_switched_on_during_a_webhook_write_is_probed_after_it(
    live_sandbox: Sandbox, write_env: WriteEnv, answer: str
) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base, url="https://old-atp.example/availabilities"), atp=False)
    sandbox.set_webhook_behaviour(answer=answer)
    directory = write_env(TENANT, TENANT, base, _webhook_only(f"{base}{WEBHOOK_PATH}")).parent
    _turn_atp_on_at(sandbox, "PUT", HOOK_PATH, 1)

    applied = _apply(directory)
    assert "gate webhook_probe" in applied.stdout and "after the write" in applied.stdout
    if answer == "healthy":
        assert applied.exit_code == 0, applied.output
        assert sandbox.state(TENANT)["uses_external_atp"] is True
    else:
        assert applied.exit_code == 1, applied.output
        assert "turned external_atp off (the safe side) (request id" in applied.stderr
        assert _writes(sandbox) == [
            ("PUT", "availability/webhook"),
            ("POST", "routing/uses_external_atp"),
        ]
        assert sandbox.state(TENANT)["uses_external_atp"] is False


def test_a_reviewed_plan_is_stale_when_a_setting_read_for_a_rule_moved(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base, url="https://old-atp.example/availabilities"), atp=False)
    directory = write_env(TENANT, TENANT, base, _webhook_only(f"{base}{WEBHOOK_PATH}")).parent
    plan_file = tmp_path / "reviewed.json"
    planned = run_cli(directory, "plan", "--out", str(plan_file))
    assert planned.exit_code == 0, planned.output
    (env,) = json.loads(plan_file.read_text())["environments"]
    assert env["read_for_rules"] == {"external_atp": [1]}
    sandbox.seed(TENANT, {**sandbox.state(TENANT), "uses_external_atp": True})

    applied = _apply(directory, "--plan", str(plan_file))
    assert applied.exit_code == 1, applied.output
    assert "is stale: the live state changed since the plan" in applied.stderr
    assert f"{TENANT} external_atp.enabled: planned from false, now true" in applied.stderr
    assert _writes(sandbox) == []


def test_a_write_that_failed_after_it_landed_is_judged_and_undone(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    """The Associate App write reads its document back inside the write; someone else changes
    the document in between (the write fails as changed by someone else) after turning the
    external OMS off: NewStore holds use_new_om_ui on with the OMS off, and the apply undoes its
    write before it stops."""
    sandbox, base = live_sandbox
    _seed(sandbox, _hook(base), atp=True)
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent
    app_path = f"/{TENANT}/api/v1/associate-app/config"
    seen: list[str] = []

    def other_writer(request: Request) -> None:
        if request.path != app_path:
            return
        seen.append(request.method)
        state = sandbox.state(TENANT)
        if seen[-1] == "PUT" and seen.count("PUT") == 1:
            sandbox.seed(TENANT, {**state, "external_oms": {"enabled": False}})
        elif seen[-2:] == ["PUT", "GET"] and seen.count("PUT") == 1:
            state["associate_app_config"]["ui_configurations"]["show_preorders_filter"] = True
            sandbox.seed(TENANT, state)

    sandbox.before_request = other_writer
    applied = _apply(directory)
    sandbox.before_request = None
    assert applied.exit_code == 1, applied.output
    err = applied.stderr
    assert "someone else turned external_oms off" in err, err
    assert "set associate_app back off (request id" in err
    ui = sandbox.state(TENANT)["associate_app_config"]["ui_configurations"]
    assert ui["use_new_om_ui"] is False and ui["show_preorders_filter"] is True
