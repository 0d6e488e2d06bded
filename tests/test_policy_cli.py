"""Change windows and freezes through the real CLI against the sandbox on 127.0.0.1: apply
blocked (exit 3, nothing written), `--break-glass`, a run crossing a window's end, plan in
every format, drift never blocked. "Now" comes from a clock handed to the CLI in-process as
click's `obj` (`Injected`): no flag or environment variable can move it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apply_helpers import FORWARD, ON, seed, writes
from click.testing import CliRunner, Result
from env_helpers import OFF_YAML, ON_YAML, WriteEnv

from reconciler.cli import Injected, cli
from reconciler.core.journal import read_journal
from reconciler.core.planfile import load_plan_file
from reconciler.sandbox import SandboxApp

Sandbox = tuple[SandboxApp, str]
NY = ZoneInfo("America/New_York")

POLICY_YAML = """\
policy:
  timezone: America/New_York
  apply_windows:
    - days: [mon, tue, wed, thu]
      from: "02:00"
      to: "06:00"
  freezes:
    - from: 2026-11-20
      to: 2026-12-31
      reason: peak season
"""
BLACK_FRIDAY = datetime(2026, 11, 27, 11, 0, tzinfo=NY)
QUIET_MONDAY = datetime(2027, 1, 4, 3, 0, tzinfo=NY)  # inside the window, after the freeze
FIRST_WINDOW_AFTER = "next allowed 2027-01-04 02:00 EST (2027-01-04 07:00 UTC)"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default journal goes under ./.reconciler


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def advancing(start: datetime, step: timedelta) -> Callable[[], datetime]:
    """A clock that moves `step` on at every reading: a long run, compressed."""
    readings: list[datetime] = []

    def now() -> datetime:
        readings.append(start + step * len(readings))
        return readings[-1]

    return now


def run_at(clock: Callable[[], datetime], directory: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--environments-dir", str(directory), *args], obj=Injected(clock=clock)
    )


def test_apply_inside_a_freeze_writes_nothing_and_exits_3(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML).parent

    result = run_at(fixed(BLACK_FRIDAY), directory, "apply", "--auto-approve", "--journal", "j")

    assert result.exit_code == 3, result.output
    assert writes(sandbox, "acme-prod") == []
    error = result.stderr
    assert "nothing applied: acme-prod is blocked by its change policy:" in error
    assert "blocked by policy rule freeze" in error
    assert "change freeze 2026-11-20 to 2026-12-31 (America/New_York): peak season" in error
    assert FIRST_WINDOW_AFTER in error
    assert "--break-glass" in error
    # The plan printed first says so too; refused before any confirmation, so no journal.
    assert "apply now: BLOCKED by policy rule freeze" in result.stdout
    assert not (tmp_path / "j").exists()


def test_a_window_closing_between_the_plan_and_the_first_write_stops_the_run_whole(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML)
    directory = write_env("acme-staging", "acme-staging", base, ON_YAML).parent
    # Planned at 05:30, inside the window; the run's first write would come at 06:00, after it.
    clock = advancing(datetime(2027, 1, 4, 5, 30, tzinfo=NY), timedelta(minutes=30))

    result = run_at(clock, directory, "apply", "--auto-approve", "--journal", "j")

    assert result.exit_code == 3, result.output
    assert "apply now: allowed by the policy until 2027-01-04 06:00 EST" in result.stdout
    assert "nothing applied: acme-prod is blocked by its change policy" in result.stderr
    assert "next allowed 2027-01-05 02:00 EST" in result.stderr
    assert writes(sandbox, "acme-prod") == writes(sandbox, "acme-staging") == []
    journal = read_journal(tmp_path / "j")
    (blocked,) = [e for e in journal if e["phase"] == "policy"]
    assert blocked["environment"] == "acme-prod"
    assert blocked["result"] == "blocked" and blocked["rule"] == "apply_windows"
    assert blocked["checked_at"] == "2027-01-04T06:00:00-05:00"
    assert blocked["next_allowed"] == "2027-01-05T02:00:00-05:00"
    assert journal[-1]["phase"] == "end" and journal[-1]["result"] == "blocked"


def test_the_same_apply_with_break_glass_converges_and_records_the_reason(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML).parent
    reason = "external OMS down, INC-4711: back to NewStore ATP"

    result = run_at(
        fixed(BLACK_FRIDAY),
        directory,
        "apply",
        "--auto-approve",
        "--journal",
        "j",
        "--break-glass",
        reason,
    )

    assert result.exit_code == 0, result.output
    assert writes(sandbox, "acme-prod") == FORWARD
    out = result.stdout
    assert f"Break glass: {reason}" in out
    assert "[acme-prod] 1/5 external_oms: gate policy overridden: blocked by policy rule" in out
    assert f"--break-glass: {reason}" in out
    assert "[acme-prod] converged" in out
    journal = read_journal(tmp_path / "j")
    assert journal[0]["phase"] == "start" and journal[0]["break_glass"] == reason
    overridden = [e for e in journal if e["phase"] == "policy"]
    assert len(overridden) == 1 + len(FORWARD), "the run's check and each step's"
    assert all(e["result"] == "overridden" and e["break_glass"] == reason for e in overridden)
    assert all(e["rule"] == "freeze" for e in overridden)
    assert journal[-1]["result"] == "ok"


def test_apply_inside_a_window_after_the_freeze_needs_no_glass(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML).parent

    result = run_at(fixed(QUIET_MONDAY), directory, "apply", "--auto-approve")

    assert result.exit_code == 0, result.output
    assert "apply now: allowed by the policy until 2027-01-04 06:00 EST" in result.stdout
    assert writes(sandbox, "acme-prod") == FORWARD


def test_a_run_that_crosses_the_windows_end_stops_before_the_next_write(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML).parent
    # Read at planning (03:00), before the run's first write (04:00), before step 1 (05:00),
    # before step 2 (06:00: the window has closed).
    clock = advancing(datetime(2027, 1, 4, 3, 0, tzinfo=NY), timedelta(hours=1))

    result = run_at(clock, directory, "apply", "--auto-approve")

    assert result.exit_code == 3, result.output
    assert writes(sandbox, "acme-prod") == FORWARD[:1]
    assert "[acme-prod] 1/5 external_oms: update … applied" in result.stdout
    error = result.stderr
    assert "step 2/5 availability_webhook: gate policy failed: blocked by policy rule " in error
    assert "outside the apply windows (mon,tue,wed,thu 02:00-06:00, America/New_York)" in error
    assert "next allowed 2027-01-05 02:00 EST" in error
    assert "stopped at step 2 of 5" in error
    assert "BLOCKED       2/5 availability_webhook" in error
    assert "The live state, re-read just now, satisfies every safety rule." in error

    # The next window: the same apply continues from the live state.
    resumed = run_at(
        fixed(datetime(2027, 1, 5, 2, 0, tzinfo=NY)), directory, "apply", "--auto-approve"
    )
    assert resumed.exit_code == 0, resumed.output
    assert writes(sandbox, "acme-prod") == FORWARD


def test_a_converged_environment_is_never_blocked(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    _, base = live_sandbox
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML).parent
    assert run_at(fixed(QUIET_MONDAY), directory, "apply", "--auto-approve").exit_code == 0

    result = run_at(fixed(BLACK_FRIDAY), directory, "apply", "--auto-approve")

    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.stdout
    assert "apply now" not in result.stdout


def test_break_glass_never_overrides_a_gate(live_sandbox: Sandbox, write_env: WriteEnv) -> None:
    sandbox, base = live_sandbox
    seed(sandbox, "acme-prod", ON)
    # Back to NewStore ATP without gates.newstore_stock_confirmed: the gate blocks it.
    directory = write_env("acme-prod", "acme-prod", base, OFF_YAML + POLICY_YAML).parent

    result = run_at(
        fixed(BLACK_FRIDAY), directory, "apply", "--auto-approve", "--break-glass", "outage"
    )

    assert result.exit_code == 3, result.output
    assert "nothing applied: acme-prod is blocked" in result.stderr
    assert writes(sandbox, "acme-prod") == []


def test_break_glass_needs_a_reason(live_sandbox: Sandbox, write_env: WriteEnv) -> None:
    _, base = live_sandbox
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML).parent

    result = run_at(fixed(BLACK_FRIDAY), directory, "apply", "--auto-approve", "--break-glass", " ")

    assert result.exit_code == 1
    assert "--break-glass needs a reason" in result.stderr


def test_keep_going_applies_the_environments_the_policy_allows(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML)
    directory = write_env("acme-staging", "acme-staging", base, ON_YAML).parent

    refused = run_at(fixed(BLACK_FRIDAY), directory, "apply", "--auto-approve")
    assert refused.exit_code == 3, refused.output
    assert writes(sandbox, "acme-staging") == [], "nothing writes while any env is held"

    going = run_at(fixed(BLACK_FRIDAY), directory, "apply", "--auto-approve", "--keep-going")

    assert going.exit_code == 3, going.output
    assert writes(sandbox, "acme-staging") == FORWARD
    assert writes(sandbox, "acme-prod") == []
    assert "not applied: acme-prod is blocked by its change policy" in going.stderr


def test_plan_shows_whether_an_apply_now_is_allowed_in_every_format(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-done", "acme-done", base, ON_YAML + POLICY_YAML).parent
    assert run_at(fixed(QUIET_MONDAY), directory, "apply", "--auto-approve").exit_code == 0
    write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML)
    now = fixed(BLACK_FRIDAY)

    text = run_at(now, directory, "plan", "--detailed-exitcode", "--out", "plan.json")
    markdown = run_at(now, directory, "plan", "--format", "markdown")
    as_json = run_at(now, directory, "plan", "--format", "json")

    # Plans are never blocked by the calendar: changes pending, exit 2 (0 without the flag).
    assert text.exit_code == 2, text.output
    assert markdown.exit_code == 0 and as_json.exit_code == 0
    assert "apply now: BLOCKED by policy rule freeze" in text.stdout
    assert "acme-prod: 5 to change, apply held by its change policy now" in text.stdout
    assert FIRST_WINDOW_AFTER in text.stdout
    assert text.stdout.count("apply now") == 1, "a converged environment has nothing to say"
    assert "### ⏸️ Outside the change policy: an apply right now would be refused" in markdown.stdout
    assert "**acme-prod**: apply now: BLOCKED by policy rule freeze" in markdown.stdout
    by_name = {env["name"]: env for env in json.loads(as_json.stdout)["environments"]}
    assert "policy" not in by_name["acme-done"]
    assert by_name["acme-prod"]["status"] == "changes"
    assert by_name["acme-prod"]["policy"] == {
        "apply_allowed": False,
        "checked_at": "2026-11-27T11:00:00-05:00",
        "timezone": "America/New_York",
        "rule": "freeze",
        "reason": "change freeze 2026-11-20 to 2026-12-31 (America/New_York): peak season",
        "next_allowed": "2027-01-04T02:00:00-05:00",
        "allowed_until": None,
    }
    # The plan file passes its schema; by the next window (38 days on) it has expired (issue
    # 25: plan_valid_hours, 24 by default), so the change is planned again and applied then.
    load_plan_file(tmp_path / "plan.json")
    later = run_at(fixed(QUIET_MONDAY), directory, "apply", "--plan", "plan.json", "--auto-approve")
    assert later.exit_code == 1, later.output
    assert "acme-prod: the plan expired at 2026-11-28T16:00:00+00:00" in later.stderr
    assert writes(sandbox, "acme-prod") == []
    assert run_at(fixed(QUIET_MONDAY), directory, "plan", "--out", "plan.json").exit_code == 0
    again = run_at(fixed(QUIET_MONDAY), directory, "apply", "--plan", "plan.json", "--auto-approve")
    assert again.exit_code == 0, again.output
    assert writes(sandbox, "acme-prod") == FORWARD


def test_apply_of_a_reviewed_plan_file_is_checked_against_the_policy_at_apply_time(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML).parent
    planned = run_at(fixed(QUIET_MONDAY), directory, "plan", "--out", "plan.json")
    assert planned.exit_code == 0, planned.output

    result = run_at(
        fixed(datetime(2027, 1, 4, 7, 0, tzinfo=NY)),  # that Monday, after its window
        directory,
        "apply",
        "--plan",
        "plan.json",
        "--auto-approve",
    )

    assert result.exit_code == 3, result.output
    assert "apply now: BLOCKED by policy rule apply_windows" in result.stdout
    assert "blocked by policy rule apply_windows" in result.stderr
    assert writes(sandbox, "acme-prod") == []


def test_drift_is_never_blocked(live_sandbox: Sandbox, write_env: WriteEnv) -> None:
    _, base = live_sandbox
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML + POLICY_YAML).parent

    result = run_at(fixed(BLACK_FRIDAY), directory, "drift")

    assert result.exit_code == 2, result.output  # drift, not blocked
    assert "1 drifted, 0 blocked" in result.stdout
    assert "policy" not in result.stdout


def test_the_real_clock_is_used_without_an_injected_one(
    live_sandbox: Sandbox, write_env: WriteEnv
) -> None:
    _, base = live_sandbox
    # A freeze around every date this test can run on, and one that ended long ago.
    body = POLICY_YAML.replace("2026-11-20", "2000-01-01").replace("2026-12-31", "2999-12-31")
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML + body).parent

    result = CliRunner().invoke(cli, ["--environments-dir", str(directory), "plan"])

    assert result.exit_code == 0, result.output
    assert "apply now: BLOCKED by policy rule freeze" in result.stdout
    assert "change freeze 2000-01-01 to 2999-12-31" in result.stdout
