"""The schemas that describe settings are generated from the settings' declarations: the
checked-in `schemas/environment.schema.json` and `schemas/drift.schema.json` must be exactly
what `reconciler schema --write` makes of the registered settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from reconciler.cli import cli
from reconciler.config import schema_gen
from reconciler.newstore.settings import REGISTRY

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.mark.parametrize("name", schema_gen.GENERATED)
def test_checked_in_schema_is_the_generated_one(name: str) -> None:
    checked_in = (SCHEMAS / name).read_text(encoding="utf-8")
    assert checked_in == schema_gen.generated(name), (
        f"schemas/{name} differs from what the settings generate: run "
        "`.venv/bin/reconciler schema --write` and commit it"
    )
    Draft202012Validator.check_schema(json.loads(checked_in))


def test_every_setting_is_in_the_generated_schemas() -> None:
    environment = schema_gen.environment_schema()
    drift = schema_gen.drift_schema()
    assert [k for k in environment["properties"] if k in {s.key for s in REGISTRY}] == [
        s.key for s in REGISTRY
    ]
    assert drift["$defs"]["setting"]["properties"]["setting"]["enum"] == [s.key for s in REGISTRY]
    assert schema_gen.SETTINGS_MARK not in json.dumps([environment, drift])


def test_absent_is_accepted_exactly_for_deletable_settings() -> None:
    validator = Draft202012Validator(schema_gen.environment_schema())
    for setting in REGISTRY:
        accepted = not list(validator.iter_errors({setting.key: "absent"}))
        assert accepted is setting.deletable, setting.key


def test_check_fails_on_a_stale_file_and_write_repairs_it(tmp_path: Path) -> None:
    for name in schema_gen.GENERATED:
        shutil.copy(SCHEMAS / name, tmp_path / name)
    runner = CliRunner()
    assert runner.invoke(cli, ["schema", "--check", "--dir", str(tmp_path)]).exit_code == 0
    stale = tmp_path / "drift.schema.json"
    stale.write_text(stale.read_text().replace('"associate_app"', '"associate_ap"'))
    checked = runner.invoke(cli, ["schema", "--check", "--dir", str(tmp_path)])
    assert checked.exit_code == 1
    assert "drift.schema.json" in checked.output
    assert "environment.schema.json" not in checked.output
    assert "Traceback" not in checked.output
    written = runner.invoke(cli, ["schema", "--write", "--dir", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert stale.read_text() == schema_gen.generated("drift.schema.json")
    assert runner.invoke(cli, ["schema", "--check", "--dir", str(tmp_path)]).exit_code == 0
