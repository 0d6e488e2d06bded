"""Golden renderings of representative plans. Regenerate with UPDATE_GOLDEN=1 and review the
diff like code: these files are what users and PR reviewers read."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from plan_helpers import (
    ALL_OFF,
    ALL_ON,
    API_KEY_A,
    CLIENT_SECRET,
    WEBHOOK_A_MASKED,
    make_env,
)

from reconciler.core.plan import EnvPlan, RunPlan, Status, build_plan
from reconciler.core.planfile import plan_to_json
from reconciler.errors import AuthError
from reconciler.model import ABSENT
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text

GOLDEN = Path(__file__).parent / "golden"
WHEN = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TODAY = WHEN.date()  # the stock confirmation's calendar: its message names a date


def _run() -> RunPlan:
    forward = build_plan(make_env(ALL_ON, name="acme-staging"), ALL_OFF, today=TODAY)
    back_blocked = build_plan(make_env(ALL_OFF, name="acme-prod"), ALL_ON, today=TODAY)
    converged = build_plan(
        make_env(ALL_ON, name="acme-sandbox"),
        {**ALL_ON, "availability_webhook": WEBHOOK_A_MASKED},
        today=TODAY,
    )
    # Someone turned external ATP on by hand without the webhook: the plan repairs it first.
    hand_edited = build_plan(
        make_env(ALL_ON, name="acme-eu"), {**ALL_ON, "availability_webhook": ABSENT}, today=TODAY
    )
    error = AuthError(
        "the token endpoint refused the client credentials",
        method="POST",
        path="/auth/realms/acme-us/protocol/openid-connect/token",
        status=401,
        request_id="req-7f3a",
        environment="acme-us",
        hint="Check connection.client_id and the NEWSTORE_CLIENT_SECRET it reads.",
    )
    failed = EnvPlan("acme-us", "acme-us", Status.ERROR, error=str(error))
    return RunPlan([forward, back_blocked, converged, hand_edited, failed])


def _check(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(encoding="utf-8")
    for secret in (API_KEY_A, CLIENT_SECRET):
        assert secret not in actual


@pytest.mark.parametrize(
    ("name", "render"),
    [
        ("representative.txt", lambda run: render_text(run, color=False)),
        ("representative.md", render_markdown),
        ("representative.json", lambda run: plan_to_json(run, generated_at=WHEN)),
    ],
)
def test_golden(name: str, render: object) -> None:
    assert callable(render)
    _check(name, render(_run()))


def test_text_puts_violations_and_blocks_before_steps() -> None:
    text = render_text(_run(), color=False)
    eu = text[text.index("acme-eu (tenant") :]
    assert eu.index("Live state already breaks") < eu.index("1. availability_webhook: create")
    prod = text[text.index("acme-prod (tenant") :]
    assert prod.index("⛔") < prod.index("1. external_atp: update")
    assert text.rstrip().endswith("Plan: 5 environments, 9 changes, 1 blocked, 1 error")


def test_markdown_lists_blocked_and_errors_before_the_sections() -> None:
    md = render_markdown(_run())
    first_section = md.index("### acme-staging")
    assert md.index("### ⛔ Blocked") < first_section
    assert md.index("### ❌ Errors") < first_section
    assert "| acme-prod | ⛔ blocked | 4 |" in md


def test_colour_only_when_asked() -> None:
    assert "\x1b[" not in render_text(_run(), color=False)
    coloured = render_text(_run(), color=True)
    assert "\x1b[31m" in coloured  # blocked and errors in red
    assert "\x1b[32mcreate" in coloured
