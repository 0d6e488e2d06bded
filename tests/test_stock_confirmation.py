"""The stock confirmation (issue 12): a date, valid `gates.stock_confirmation_valid_days` days
(default 7, UTC), written in the environment's own file. `today` is injected throughout."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from env_helpers import OFF_YAML, WriteEnv, run_cli
from plan_helpers import ALL_OFF, ALL_ON

from reconciler.clock import today_utc
from reconciler.config import load_environments
from reconciler.core.plan import STOCK_CONFIRMED, Status, build_plan
from reconciler.errors import ValidationFailed
from reconciler.model import Environment
from reconciler.sandbox import SandboxApp

TODAY = date(2026, 11, 29)
ENVIRON = {"CLIENT_SECRET": "a-client-secret-for-these-tests"}
BASE = """\
connection:
  client_id: sandbox
  client_secret: ${CLIENT_SECRET}
gates:
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
"""
OFF = """\
external_oms:
  enabled: false
availability_webhook: absent
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
"""


def _load(tmp_path: Path, leaf: str, today: date = TODAY) -> Environment:
    directory = tmp_path / "environments"
    directory.mkdir(exist_ok=True)
    (directory / "_base.yaml").write_text(BASE)
    (directory / "acme-eu.yaml").write_text("extends: _base.yaml\ntenant: acme-eu\n" + leaf)
    (env,) = load_environments(directory, environ=ENVIRON, today=today)
    return env


def _problems(tmp_path: Path, leaf: str) -> str:
    with pytest.raises(ValidationFailed) as caught:
        _load(tmp_path, leaf)
    return str(caught.value)


def _back(env: Environment, today: date = TODAY) -> tuple[Status, list[str]]:
    plan = build_plan(env, ALL_ON, today=today)
    return plan.status, plan.blocked_by


def test_a_date_confirms_stock_for_seven_days(tmp_path: Path) -> None:
    env = _load(tmp_path, OFF + "gates:\n  newstore_stock_confirmed: 2026-11-23\n")
    assert env.gates.newstore_stock_confirmed == date(2026, 11, 23)
    assert env.gates.stock_confirmation_valid_days == 7
    # Day 6 counts; day 7 does not (valid for 7 days: the 23rd to the 29th exclusive).
    assert _back(env, date(2026, 11, 29)) == (Status.CHANGES, [])
    status, (reason,) = _back(env, date(2026, 11, 30))
    assert status is Status.BLOCKED
    assert "the stock confirmation of 2026-11-23 (" in reason
    assert "expired on 2026-11-30 (it counts for 7 days, UTC)" in reason
    assert "`newstore_stock_confirmed: 2026-11-30`" in reason


def test_a_quoted_date_works_and_valid_days_can_change(tmp_path: Path) -> None:
    leaf = (
        OFF
        + 'gates:\n  newstore_stock_confirmed: "2026-11-01"\n  stock_confirmation_valid_days: 30\n'
    )
    env = _load(tmp_path, leaf)
    assert env.gates.stock_confirmation_valid_days == 30
    assert _back(env) == (Status.CHANGES, [])
    _, (reason,) = _back(env, date(2026, 12, 1))
    assert "expired on 2026-12-01 (it counts for 30 days, UTC)" in reason


def test_true_is_an_error_that_asks_for_the_date(tmp_path: Path) -> None:
    message = _problems(tmp_path, OFF + "gates:\n  newstore_stock_confirmed: true\n")
    assert (
        "acme-eu.yaml:11:3: gates.newstore_stock_confirmed: `true` is no longer accepted" in message
    )
    assert "e.g. `newstore_stock_confirmed: 2026-11-29`" in message


def test_a_future_date_is_an_error(tmp_path: Path) -> None:
    message = _problems(tmp_path, OFF + "gates:\n  newstore_stock_confirmed: 2026-11-30\n")
    assert "2026-11-30 is in the future (today is 2026-11-29 UTC)" in message


@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "29.11.2026", "1"])
def test_anything_else_asks_for_a_date(tmp_path: Path, value: str) -> None:
    message = _problems(tmp_path, OFF + f"gates:\n  newstore_stock_confirmed: {value}\n")
    assert "must be the date (YYYY-MM-DD) NewStore's stock was checked, or false" in message


@pytest.mark.parametrize("leaf", [OFF, OFF + "gates:\n  newstore_stock_confirmed: false\n"])
def test_missing_or_false_blocks_naming_the_leaf_file_and_the_line(
    tmp_path: Path, leaf: str
) -> None:
    env = _load(tmp_path, leaf)
    assert env.gates.newstore_stock_confirmed is None
    status, (reason,) = _back(env)
    assert status is Status.BLOCKED
    assert "_base.yaml" not in reason, "never the base: it would confirm every environment"
    if "gates:" in leaf:
        assert "change line 11 of " in reason and "acme-eu.yaml to " in reason
    else:
        assert "add `gates:` with the line `  newstore_stock_confirmed: 2026-11-29`" in reason
        assert reason.endswith("acme-eu.yaml")


def test_a_confirmation_in_a_base_is_never_the_place_to_add_one(tmp_path: Path) -> None:
    directory = tmp_path / "environments"
    directory.mkdir()
    (directory / "_base.yaml").write_text(BASE + "  newstore_stock_confirmed: false\n")
    (directory / "acme-eu.yaml").write_text(
        "extends: _base.yaml\ntenant: acme-eu\n"
        + OFF
        + "gates:\n  stock_confirmation_valid_days: 3\n"
    )
    (env,) = load_environments(directory, environ=ENVIRON, today=TODAY)
    (reason,) = build_plan(env, ALL_ON, today=TODAY).blocked_by
    assert "add the line `  newstore_stock_confirmed: 2026-11-29` under `gates:`" in reason
    assert "acme-eu.yaml:10" in reason and "_base.yaml" not in reason


def test_once_atp_is_off_the_confirmation_can_be_removed(tmp_path: Path) -> None:
    env = _load(tmp_path, OFF + "gates:\n  newstore_stock_confirmed: 2026-11-28\n")
    converged = build_plan(env, ALL_OFF, today=TODAY)
    assert converged.status is Status.CONVERGED
    (note,) = converged.notes
    assert note.startswith("gates.newstore_stock_confirmed (") and "can be removed" in note
    # Not while external ATP is still on live: the confirmation is about to be used.
    assert not any("can be removed" in n for n in build_plan(env, ALL_ON, today=TODAY).notes)


def test_the_gate_is_listed_satisfied_on_the_step_that_turns_atp_off(tmp_path: Path) -> None:
    env = _load(tmp_path, OFF + "gates:\n  newstore_stock_confirmed: 2026-11-29\n")
    plan = build_plan(env, ALL_ON, today=TODAY + timedelta(days=1))
    (gate,) = plan.steps[0].gates
    assert (gate.name, gate.satisfied) == (STOCK_CONFIRMED, True)


def test_an_expired_confirmation_blocks_plan_and_apply_with_exit_3(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    sandbox.seed("acme-eu", {"external_oms": {"enabled": True}, "uses_external_atp": True})
    stale = today_utc() - timedelta(days=8)
    body = OFF_YAML + f"gates:\n  newstore_stock_confirmed: {stale.isoformat()}\n"
    directory = write_env("acme-eu", "acme-eu", base, body).parent

    planned = run_cli(directory, "plan")
    assert planned.exit_code == 3, planned.output
    expired = (stale + timedelta(days=7)).isoformat()
    assert f"the stock confirmation of {stale.isoformat()}" in planned.stdout
    assert f"expired on {expired}" in planned.stdout
    journal = str(tmp_path / "j.jsonl")
    applied = run_cli(directory, "apply", "--auto-approve", "--journal", journal)
    assert applied.exit_code == 3, applied.output
    assert sandbox.history("acme-eu") == []
