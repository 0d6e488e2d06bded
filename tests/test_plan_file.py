"""The plan file: round trip, refusal of edited/truncated/foreign files, schema, no secrets."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from plan_helpers import (
    ALL_OFF,
    ALL_ON,
    API_KEY_A,
    API_KEY_B,
    CLIENT_SECRET,
    WEBHOOK_A_MASKED,
    WEBHOOK_B,
    make_env,
)

from reconciler.core.plan import EnvPlan, RunPlan, Status, build_plan
from reconciler.core.planfile import (
    checksum,
    env_plan_to_dict,
    load_plan_file,
    plan_to_dict,
    plan_to_json,
    read_plan_file,
    write_plan_file,
)
from reconciler.errors import PlanFileError

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "plan.schema.json").read_text())
WHEN = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _run() -> RunPlan:
    return RunPlan(
        [
            build_plan(make_env(ALL_ON), ALL_OFF),
            build_plan(
                make_env({**ALL_ON, "availability_webhook": WEBHOOK_B}, name="acme-prod"),
                {**ALL_ON, "availability_webhook": WEBHOOK_A_MASKED},
            ),
            build_plan(make_env(ALL_OFF, name="acme-dev"), ALL_ON),
            EnvPlan("acme-eu", "acme-eu", Status.ERROR, error="[acme-eu] token refused"),
        ]
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_plan_file(_run(), path, generated_at=WHEN)
    doc = load_plan_file(path)

    assert doc == plan_to_dict(_run(), generated_at=WHEN)
    assert doc["format_version"] == 1
    assert doc["generated_at"] == "2025-06-01T12:00:00+00:00"
    assert [e["status"] for e in doc["environments"]] == ["changes", "changes", "blocked", "error"]
    first = doc["environments"][0]
    assert [s["setting"] for s in first["steps"]] == [
        "external_oms",
        "availability_webhook",
        "external_atp",
        "associate_app",
    ]
    assert first["steps"][0]["changes"] == [
        {"path": "external_oms.enabled", "from": False, "to": True}
    ]
    assert list(tmp_path.iterdir()) == [path], "the atomic write leaves no temporary file"


def test_a_plan_file_reads_back_as_the_same_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    run = _run()
    write_plan_file(run, path, generated_at=WHEN)

    again = read_plan_file(path)

    assert [env_plan_to_dict(p) for p in again.environments] == [
        env_plan_to_dict(p) for p in run.environments
    ]
    assert [p.status for p in again.environments] == [
        Status.CHANGES,
        Status.CHANGES,
        Status.BLOCKED,
        Status.ERROR,
    ]
    assert again.environments[1].steps[0].changes == run.environments[1].steps[0].changes


def test_a_plan_is_frozen_and_a_later_check_makes_a_new_one() -> None:
    plan = _run().environments[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.status = Status.BLOCKED  # type: ignore[misc]
    blocked = dataclasses.replace(plan, blocked_by=["a probe failed"], status=Status.BLOCKED)
    assert plan.blocked_by == [] and plan.status is Status.CHANGES
    assert blocked.blocked_by == ["a probe failed"]


def test_json_output_matches_the_schema() -> None:
    doc = plan_to_dict(_run())
    errors = list(Draft202012Validator(SCHEMA).iter_errors(doc))
    assert errors == []
    assert json.loads(plan_to_json(_run(), generated_at=WHEN)) == plan_to_dict(
        _run(), generated_at=WHEN
    )


def test_the_file_never_holds_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_plan_file(_run(), path)
    text = path.read_text()
    for secret in (API_KEY_A, API_KEY_B, CLIENT_SECRET):
        assert secret not in text
    changes = _run().environments[1].steps[0].changes
    assert {c.path: c.after for c in changes}["availability_webhook.api_key"] == "(sensitive)"
    assert '"(sensitive, changed)"' not in text  # the masked live key cannot be compared
    assert '"to": "(sensitive)"' in text


def test_an_edited_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_plan_file(_run(), path)
    doc = json.loads(path.read_text())
    doc["environments"][2]["status"] = "changes"
    doc["environments"][2]["blocked_by"] = []
    path.write_text(json.dumps(doc))

    with pytest.raises(PlanFileError, match="the plan file was edited after it was written"):
        load_plan_file(path)


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_plan_file(_run(), path)
    path.write_text(path.read_text()[:200])

    with pytest.raises(PlanFileError, match=r"is not valid JSON .*line \d+.*truncated") as info:
        load_plan_file(path)
    assert str(path) in str(info.value)


def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    doc = plan_to_dict(_run())
    doc["format_version"] = 2
    doc["checksum"] = checksum(doc)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))

    with pytest.raises(PlanFileError, match="format_version 2, newer than"):
        load_plan_file(path)


def test_a_schema_invalid_file_is_refused_listing_each_problem(tmp_path: Path) -> None:
    doc = plan_to_dict(_run())
    doc["environments"][0]["steps"][0]["action"] = "replace"
    del doc["environments"][1]["tenant"]
    doc["checksum"] = checksum(doc)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))

    with pytest.raises(PlanFileError) as info:
        load_plan_file(path)
    message = str(info.value)
    assert "$.environments[0].steps[0].action: 'replace' is not one of" in message
    assert "$.environments[1]: 'tenant' is a required property" in message


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("[1, 2]", "its JSON is not an object"),
        ('{"format_version": 1}', "has no checksum"),
    ],
)
def test_foreign_json_is_refused(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(PlanFileError, match=match):
        load_plan_file(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match=r"cannot read plan file .*nope\.json"):
        load_plan_file(tmp_path / "nope.json")


def test_an_unwritable_target_is_a_plan_file_error(tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match="cannot write plan file"):
        write_plan_file(_run(), tmp_path / "missing-dir" / "plan.json")


def test_live_values_are_recorded_masked() -> None:
    doc = plan_to_dict(_run())
    forward, prod = doc["environments"][0], doc["environments"][1]
    assert forward["live"]["availability_webhook"] is None  # absent
    assert forward["live"]["external_oms"] == {"enabled": False}
    assert prod["live"]["availability_webhook"]["api_key"] == "(sensitive)"
    assert prod["live"]["availability_webhook"]["url"] == WEBHOOK_B["url"].rstrip("/")
    assert doc["environments"][3]["live"] == {}  # errored: nothing was read
