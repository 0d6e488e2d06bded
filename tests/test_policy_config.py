"""The `policy` section of environment files: every mistake named with its file:line:column and
key path, all of them at once; inherited through `extends` like any mapping; the example
production environment's freeze."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from reconciler.config import load_environments
from reconciler.config.schema import environment_schema
from reconciler.errors import ValidationFailed
from reconciler.policy import ALWAYS, Freeze, Policy, Window

FIXTURES = Path(__file__).parent / "fixtures" / "config"
EXAMPLES = Path(__file__).parent.parent / "environments"
ENV = {"CLIENT_ID": "client-id", "CLIENT_SECRET": "client-secret-value-7f3a"}


@pytest.fixture(autouse=True)
def _in_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)  # relative paths keep `file:line:col` short and exact


def test_every_policy_mistake_is_named_with_its_place() -> None:
    with pytest.raises(ValidationFailed) as info:
        load_environments(Path("policy_errors"), environ=ENV)

    assert [str(p) for p in info.value.problems] == [
        "policy_errors/env.yaml:6:3: policy.timezone: unknown timezone `Europe/Atlantis`: use "
        "an IANA name such as America/New_York, Europe/Berlin or UTC",
        "policy_errors/env.yaml:8:7: policy.apply_windows[0].days: must not list the same "
        "item twice",
        'policy_errors/env.yaml:9:7: policy.apply_windows[0].from: must be a time of day, "HH:MM"'
        ' (24-hour, two-digit hour), in quotes: e.g. "02:00"',
        "policy_errors/env.yaml:13:7: policy.apply_windows[1].to: must differ from `from` (a "
        'whole day is `from: "00:00"`, `to: "24:00"`)',
        # Unquoted, YAML 1.1 reads 24:00 as the number 1440.
        'policy_errors/env.yaml:16:7: policy.apply_windows[2].to: must be a time of day, "HH:MM"'
        ' (24-hour, two-digit hour), in quotes: e.g. "02:00"',
        "policy_errors/env.yaml:18:7: policy.freezes[0].from: is not a date in the calendar",
        "policy_errors/env.yaml:22:7: policy.freezes[1].to: the freeze ends (2026-12-01) before "
        "it starts (2026-12-31)",
        "policy_errors/env.yaml:24:7: policy.freezes[2].reason: `reason` is required here",
    ]


def test_a_policy_is_inherited_through_extends_and_merges_like_any_mapping() -> None:
    envs = {e.name: e for e in load_environments(Path("policy_extends"), environ=ENV)}
    peak = Freeze(date(2026, 11, 20), date(2026, 12, 31), "peak season")

    assert envs["inherits"].policy == Policy(
        "Europe/Berlin", (Window(frozenset({1}), time(22), time(4)),), (peak,)
    )
    # A list replaces the base's list; the other keys still come from the base.
    assert envs["overrides"].policy == Policy(
        "Europe/Berlin", (Window(frozenset(range(7)), time(0), None),), (peak,)
    )
    assert envs["none"].policy == ALWAYS


def test_the_example_production_environment_is_frozen_for_peak_season() -> None:
    environ = {
        "NEWSTORE_CLIENT_ID": "acme-reconciler",
        "NEWSTORE_CLIENT_SECRET": "newstore-client-secret-1",
        "ACME_PRODUCTION_ATP_API_KEY": "production-atp-key-0123456789",
        "ACME_PRODUCTION_ORDER_WEBHOOK_API_KEY": "production-order-key-0123456789",
    }

    (production,) = load_environments(EXAMPLES, ["acme-production"], environ=environ)

    assert production.policy.timezone == "America/New_York"
    assert [f.reason for f in production.policy.freezes] == [
        "peak season (Black Friday to New Year)"
    ]


def test_the_schema_documents_every_policy_key() -> None:
    policy = environment_schema()["properties"]["policy"]
    window = policy["properties"]["apply_windows"]["items"]
    freeze = policy["properties"]["freezes"]["items"]

    assert set(policy["properties"]) == {"timezone", "apply_windows", "freezes"}
    assert window["required"] == ["days", "from", "to"]
    assert freeze["required"] == ["from", "to", "reason"]
    for schema in (policy, *policy["properties"].values(), *window["properties"].values()):
        assert schema.get("description"), schema
