"""`reconciler vars` (issue 23.1): the `${NAME}` variables the resolved files use, where each is
written, whether it is set now; never a value. The GitHub Action exports exactly these."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner, Result
from jsonschema import Draft202012Validator

from reconciler.cli import cli
from reconciler.resources import schema_path

ROOT = Path(__file__).resolve().parent.parent
VALUE = "a-value-that-must-never-be-printed-0001"

BASE = """\
connection:
  client_id: ${ACME_CLIENT_ID}
  client_secret: ${ACME_CLIENT_SECRET}
availability_webhook:
  url: https://atp.acme.example/availabilities
  api_key: ${BASE_ATP_KEY_NOBODY_USES}
  timeout: 15
"""
STAGING = """\
extends: _base.yaml
tenant: acme-staging
external_oms:
  enabled: true
availability_webhook:
  api_key: ${ACME_STAGING_ATP_API_KEY}
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
gates:
  webhook_probe:
    products: ["$${not-a-reference}"]
    fulfillment_locations: ["US01"]
"""
DEFAULTS = """\
tenant: acme-eu
external_oms:
  enabled: false
"""


def _vars(directory: Path, *args: str, env: dict[str, str | None] | None = None) -> Result:
    clean: dict[str, str | None] = {
        name: None
        for name in (
            "ACME_CLIENT_ID",
            "ACME_CLIENT_SECRET",
            "ACME_STAGING_ATP_API_KEY",
            "BASE_ATP_KEY_NOBODY_USES",
            "NEWSTORE_CLIENT_ID",
            "NEWSTORE_CLIENT_SECRET",
        )
    }
    return CliRunner().invoke(
        cli, ["--environments-dir", str(directory), "vars", *args], env=clean | (env or {})
    )


def _repo(tmp_path: Path) -> Path:
    directory = tmp_path / "environments"
    directory.mkdir()
    (directory / "_base.yaml").write_text(BASE)
    (directory / "staging.yaml").write_text(STAGING)
    (directory / "eu.yaml").write_text(DEFAULTS)
    return directory


def test_vars_lists_names_places_and_whether_set_never_a_value(tmp_path: Path) -> None:
    directory = _repo(tmp_path)
    result = _vars(directory, env={"ACME_CLIENT_SECRET": VALUE, "NEWSTORE_CLIENT_ID": VALUE})
    assert result.exit_code == 0, result.output
    out = result.output
    assert VALUE not in out
    lines = out.splitlines()
    base, staging = directory / "_base.yaml", directory / "staging.yaml"
    assert lines[:5] == [
        f"ACME_CLIENT_ID            not set  {base}:2  connection.client_id  (staging)",
        f"ACME_CLIENT_SECRET        set      {base}:3  connection.client_secret  (staging)",
        f"ACME_STAGING_ATP_API_KEY  not set  {staging}:6  availability_webhook.api_key  (staging)",
        f"NEWSTORE_CLIENT_ID        set      {directory / 'eu.yaml'} (default of "
        "connection.client_id)  (eu)",
        f"NEWSTORE_CLIENT_SECRET    not set  {directory / 'eu.yaml'} (default of "
        "connection.client_secret)  (eu)",
    ]
    # The base's api_key is overridden by staging: not needed. `$${` is no reference.
    assert "BASE_ATP_KEY_NOBODY_USES" not in out
    assert "not-a-reference" not in out
    assert lines[-1] == (
        "5 variables for 2 environments; 3 not set: ACME_CLIENT_ID, ACME_STAGING_ATP_API_KEY, "
        "NEWSTORE_CLIENT_SECRET."
    )


def test_vars_json_follows_its_schema(tmp_path: Path) -> None:
    directory = _repo(tmp_path)
    result = _vars(directory, "staging", "--format", "json", env={"ACME_CLIENT_SECRET": VALUE})
    assert result.exit_code == 0
    out = result.output
    assert VALUE not in out
    document = json.loads(out)
    schema = json.loads(schema_path("vars.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(document)
    assert document["environments"] == ["staging"]
    assert [v["name"] for v in document["variables"]] == [
        "ACME_CLIENT_ID",
        "ACME_CLIENT_SECRET",
        "ACME_STAGING_ATP_API_KEY",
    ]
    assert document["missing"] == ["ACME_CLIENT_ID", "ACME_STAGING_ATP_API_KEY"]
    key = document["variables"][2]
    assert key["secret"] is True and key["set"] is False
    assert key["uses"] == [
        {
            "environment": "staging",
            "file": str(directory / "staging.yaml"),
            "line": 6,
            "column": 3,
            "path": "availability_webhook.api_key",
            "secret": True,
            "default": False,
        }
    ]
    assert document["variables"][0]["secret"] is False  # a client id is no secret


def test_vars_of_an_unreadable_chain_is_an_error_the_others_still_listed(tmp_path: Path) -> None:
    directory = _repo(tmp_path)
    (directory / "broken.yaml").write_text("extends: _missing.yaml\ntenant: x\n")
    result = _vars(directory, "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["environments"] == ["eu", "staging"]
    assert document["errors"][0]["environment"] == "broken"
    assert "_missing.yaml does not exist" in document["errors"][0]["problems"][0]
    assert "broken.yaml cannot be resolved" in result.stderr


def test_vars_of_the_shipped_examples(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--environments-dir", str(ROOT / "environments"), "vars", "--format", "json"]
    )
    assert result.exit_code == 0
    names = {v["name"] for v in json.loads(result.output)["variables"]}
    assert {
        "NEWSTORE_CLIENT_ID",
        "NEWSTORE_CLIENT_SECRET",
        "ACME_STAGING_ATP_API_KEY",
        "ACME_PRODUCTION_ATP_API_KEY",
        "ACME_PRODUCTION_ORDER_WEBHOOK_API_KEY",
    } <= names


def test_the_environments_dir_can_come_from_the_environment(tmp_path: Path) -> None:
    """`export RECONCILER_ENVIRONMENTS_DIR=rehearsal` once, and every command rehearses; the
    flag still wins."""
    directory = _repo(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "solo.yaml").write_text(DEFAULTS.replace("acme-eu", "acme-solo"))
    runner = CliRunner()
    env = {"RECONCILER_ENVIRONMENTS_DIR": str(directory)}
    listed = runner.invoke(cli, ["vars", "--format", "json"], env=env)
    assert json.loads(listed.output)["environments"] == ["eu", "staging"]
    flag = runner.invoke(
        cli, ["--environments-dir", str(other), "vars", "--format", "json"], env=env
    )
    assert json.loads(flag.output)["environments"] == ["solo"]


def test_a_new_repository_names_its_variables_in_the_environment_files_only(
    tmp_path: Path,
) -> None:
    """`init --ci github`: the names live in environments/ (which `vars` reads) and in no
    workflow, so a new environment's secrets mean no workflow edit (issue 23.1)."""
    repo = tmp_path / "config"
    made = CliRunner().invoke(cli, ["init", str(repo), "--ci", "github"])
    assert made.exit_code == 0, made.output
    listed = _vars(repo / "environments", "--format", "json")
    assert listed.exit_code == 0, listed.output
    names = {v["name"] for v in json.loads(listed.stdout)["variables"]}
    assert names == {"NEWSTORE_CLIENT_ID", "NEWSTORE_CLIENT_SECRET"}
    workflows = sorted((repo / ".github" / "workflows").glob("*.yml"))
    assert [p.name for p in workflows] == ["apply.yml", "drift.yml", "plan.yml"]
    for path in [*workflows, repo / ".pre-commit-config.yaml"]:
        text = path.read_text()
        assert not re.findall(r"secrets\.\w", text), path.name
        assert not [name for name in names if name in text], path.name
        if "uses: OWNER/newstore-reconciler" in text:
            assert text.count("secrets: ${{ toJSON(secrets) }}") >= 1, path.name


def test_a_rehearsal_needs_none_of_the_variables_its_secrets_came_from(tmp_path: Path) -> None:
    """`rehearsal: true` (issue 25) sends the sandbox's demo credentials and keys and never
    reads the variables the extended files name for them: `vars` must not ask for those (in
    init's repository, `RECONCILER_ENVIRONMENTS_DIR=rehearsal reconciler vars` listed the real
    client's NEWSTORE_CLIENT_ID/SECRET), while a non-secret reference is still needed."""
    repo = tmp_path / "config"
    assert CliRunner().invoke(cli, ["init", str(repo), "--ci", "none"]).exit_code == 0
    staging = repo / "environments" / "staging.yaml"
    staging.write_text(
        staging.read_text()
        + "external_order_webhook:\n  url: https://oms.${ACME_OMS_HOST}/newstore\n"
        + "  api_key: ${ACME_STAGING_ORDER_KEY}\n  timeout: 15\n"
    )
    real = _vars(repo / "environments", "--format", "json")
    assert {v["name"] for v in json.loads(real.stdout)["variables"]} == {
        "ACME_OMS_HOST",
        "ACME_STAGING_ORDER_KEY",
        "NEWSTORE_CLIENT_ID",
        "NEWSTORE_CLIENT_SECRET",
    }
    rehearsal = _vars(repo / "rehearsal", "--format", "json")
    assert rehearsal.exit_code == 0, rehearsal.output
    document = json.loads(rehearsal.stdout)
    Draft202012Validator(json.loads(schema_path("vars.schema.json").read_text())).validate(document)
    assert [v["name"] for v in document["variables"]] == ["ACME_OMS_HOST"]
    assert document["rehearsals"] == ["staging"]
    text = _vars(repo / "rehearsal")
    assert text.exit_code == 0, text.output
    assert "NEWSTORE_CLIENT" not in text.stdout and "RECONCILER_REHEARSAL" not in text.stdout
    assert "staging is a rehearsal: the sandbox's demo credentials and keys" in text.stdout
