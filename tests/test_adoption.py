"""`reconciler init`, `reconciler schema` and the credential defaults: a new configuration
repository validates without secrets, rehearses a plan on the sandbox, and `dump` writes an
editor link that resolves in it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from env_helpers import OFF_YAML, ON_YAML

from reconciler.cli import cli
from reconciler.resources import ci_example_path, schema_path
from reconciler.sandbox import SandboxApp, SandboxConfig

SANDBOX_PORT_URL = "http://127.0.0.1:8765"


def _reconciler(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEWSTORE_")}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.e2e
def test_init_validate_and_rehearse_on_the_sandbox(
    tmp_path: Path, live_sandbox: tuple[SandboxApp, str], sandbox_config: SandboxConfig
) -> None:
    sandbox, base = live_sandbox
    made = _reconciler(tmp_path, "init", "config", "--ci", "github")
    assert made.returncode == 0, made.stderr
    repo = tmp_path / "config"
    expected = {
        "environments/_base.yaml",
        "environments/staging.yaml",
        "rehearsal/staging.yaml",
        "schemas/environment.schema.json",
        ".gitignore",
        ".pre-commit-config.yaml",
        ".github/workflows/plan.yml",
        ".github/workflows/apply.yml",
        ".github/workflows/drift.yml",
    }
    assert {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()} == expected
    assert "replace OWNER" in made.stdout
    assert (repo / "schemas/environment.schema.json").read_text() == (
        schema_path("environment.schema.json").read_text()
    )
    ignored = (repo / ".gitignore").read_text().splitlines()
    assert {".reconciler/", "plan.json"} <= set(ignored)
    base_file = yaml.safe_load((repo / "environments/_base.yaml").read_text())
    assert base_file["connection"]["client_id"] == "${NEWSTORE_CLIENT_ID}"
    assert base_file["connection"]["client_secret"] == "${NEWSTORE_CLIENT_SECRET}"
    # With CI, a laptop's apply shares CI's lock; the rehearsal, on this machine, does not.
    assert base_file["apply_lock"] == "git"
    assert yaml.safe_load((repo / "rehearsal/staging.yaml").read_text())["apply_lock"] == "local"
    hook = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text())["repos"][0]
    assert hook["hooks"] == [{"id": "reconciler-validate"}]
    # Every editor link in the files resolves inside the new repository.
    for env_file in [*repo.glob("environments/*.yaml"), *repo.glob("rehearsal/*.yaml")]:
        first = env_file.read_text().splitlines()[0]
        link = first.removeprefix("# yaml-language-server: $schema=")
        assert (env_file.parent / link).resolve() == repo / "schemas/environment.schema.json"

    # Offline, without any secret.
    result = _reconciler(repo, "validate", "--allow-missing-secrets")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 environment valid: staging\n"
    result = _reconciler(repo, "validate")
    assert result.returncode == 1
    assert "NEWSTORE_CLIENT_ID is not set" in result.stderr

    # The rehearsal: the same environment on a sandbox (here on a free port, not 8765).
    rehearsal = repo / "rehearsal/staging.yaml"
    assert SANDBOX_PORT_URL in rehearsal.read_text()
    rehearsal.write_text(rehearsal.read_text().replace(SANDBOX_PORT_URL, base))
    sandbox.seed("acme-staging", {"external_oms": {"enabled": True}})
    creds = {
        "NEWSTORE_CLIENT_ID": sandbox_config.client_id,
        "NEWSTORE_CLIENT_SECRET": sandbox_config.client_secret,
    }
    result = _reconciler(
        repo, "--environments-dir", "rehearsal", "plan", "--detailed-exitcode", env=creds
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "external_oms: update" in result.stdout
    assert "enabled: true → false" in result.stdout

    # dump into the new repository writes a link that resolves there too.
    out = repo / "environments" / "adopted.yaml"
    result = _reconciler(
        repo, "--environments-dir", "rehearsal", "dump", "staging", "--out", str(out), env=creds
    )
    assert result.returncode == 0, result.stderr
    first = out.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/environment.schema.json"

    # Never overwrites, and writes nothing when it refuses.
    (repo / "environments/staging.yaml").write_text("tenant: mine\n")
    again = _reconciler(tmp_path, "init", "config", "--ci", "gitlab")
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr and "staging.yaml" in again.stderr
    assert not (repo / ".gitlab-ci.yml").exists()
    assert (repo / "environments/staging.yaml").read_text() == "tenant: mine\n"


def test_init_ci_choices(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["init", str(tmp_path / "gl"), "--ci", "gitlab"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gl/.gitlab-ci.yml").read_text() == ci_example_path(
        "gitlab-ci.yml"
    ).read_text()
    assert not (tmp_path / "gl/.github").exists()
    result = runner.invoke(
        cli,
        [
            "init",
            str(tmp_path / "none"),
            "--ci",
            "none",
            "--source",
            "https://github.com/acme/newstore-reconciler@v9.9.9",
        ],
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "none/requirements.txt").exists()
    assert "rev: v9.9.9" in (tmp_path / "none/.pre-commit-config.yaml").read_text()
    # Without CI, no remote is assumed: the file lock of this machine, as before.
    assert "apply_lock" not in (tmp_path / "none/environments/_base.yaml").read_text()
    assert "OWNER" not in result.output
    result = runner.invoke(
        cli,
        [
            "init",
            str(tmp_path / "gh"),
            "--source",
            "https://github.com/acme/newstore-reconciler@v9.9.9",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = (tmp_path / "gh/.github/workflows/plan.yml").read_text()
    assert "uses: acme/newstore-reconciler@v9.9.9" in plan
    assert "OWNER" not in plan
    result = runner.invoke(cli, ["init", str(tmp_path / "bad"), "--source", "newstore"])
    assert result.exit_code == 1
    assert "--source 'newstore'" in result.output
    assert not (tmp_path / "bad").exists()


def test_schema_command(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(cli, ["schema"])
    assert printed.exit_code == 0
    assert json.loads(printed.output)["$schema"].startswith("https://json-schema.org/")
    out = tmp_path / "schemas" / "environment.schema.json"
    written = runner.invoke(cli, ["schema", "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text() == printed.output


def test_credentials_default_to_the_usual_variables(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("tenant: acme\n" + OFF_YAML)
    runner = CliRunner()
    args = ["--environments-dir", str(tmp_path), "validate"]
    ok = runner.invoke(cli, args, env={"NEWSTORE_CLIENT_ID": "id", "NEWSTORE_CLIENT_SECRET": "s"})
    assert ok.exit_code == 0, ok.output
    missing = runner.invoke(
        cli, args, env={"NEWSTORE_CLIENT_ID": "id", "NEWSTORE_CLIENT_SECRET": None}
    )
    assert missing.exit_code == 1
    assert "connection.client_secret: environment variable NEWSTORE_CLIENT_SECRET is not set" in (
        missing.output
    )
    assert "NEWSTORE_CLIENT_ID" not in missing.output


def test_a_tab_in_yaml_says_indent_with_spaces(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("tenant: acme\nexternal_oms:\n\tenabled: true\n")
    result = CliRunner().invoke(cli, ["--environments-dir", str(tmp_path), "validate"])
    assert result.exit_code == 1
    assert f"{tmp_path / 'a.yaml'}:3:1: YAML syntax error" in result.output
    assert "indent with spaces" in result.output


@pytest.mark.e2e
def test_global_options_after_the_command_and_the_next_command_after_plan_out(
    tmp_path: Path, live_sandbox: tuple[SandboxApp, str], write_env: Any
) -> None:
    _, base = live_sandbox
    directory = write_env("staging", "acme-staging", base, ON_YAML).parent
    plan_file = tmp_path / "reviewed plan.json"
    # `-v` and `--environments-dir` after the command, as before it.
    result = CliRunner().invoke(
        cli, ["plan", "--out", str(plan_file), "-v", "--environments-dir", str(directory)]
    )
    assert result.exit_code == 0, result.output
    assert "INFO reconciler" in result.stderr  # -v logged the HTTP calls
    assert result.stdout.endswith(
        f"Saved the plan to {plan_file}. To apply exactly this plan once reviewed:\n"
        f"  reconciler --environments-dir {directory} apply --plan '{plan_file}'\n"
    )
    applied = CliRunner().invoke(
        cli,
        [
            "--environments-dir",
            str(directory),
            "apply",
            "--plan",
            str(plan_file),
            "--auto-approve",
            "--journal",
            str(tmp_path / "j.jsonl"),
        ],
    )
    assert applied.exit_code == 0, applied.output
    # JSON on stdout stays the plan file alone.
    again = CliRunner().invoke(
        cli,
        ["plan", "--format", "json", "--out", str(plan_file), "--environments-dir", str(directory)],
    )
    assert again.exit_code == 0
    assert json.loads(again.stdout)["format_version"] == 1
    # `--` ends the options: what follows is an environment name, not -v.
    ended = CliRunner().invoke(cli, ["--environments-dir", str(directory), "validate", "--", "-v"])
    assert ended.exit_code == 1
    assert "unknown environment `-v`" in ended.output


def test_completion_offers_environment_names(tmp_path: Path) -> None:
    (tmp_path / "environments").mkdir()
    for name in ("_base", "staging", "production", "prod-eu"):
        (tmp_path / "environments" / f"{name}.yaml").write_text("tenant: x\n")

    def complete(words: str) -> list[str]:
        env = os.environ | {
            "_RECONCILER_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        }
        result = subprocess.run(
            [sys.executable, "-c", "from reconciler.cli import main; main()"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return sorted(line.split(",", 1)[1] for line in result.stdout.splitlines() if line)

    assert complete("reconciler plan pro") == ["prod-eu", "production"]
    assert complete("reconciler drift ") == ["prod-eu", "production", "staging"]
    assert complete("reconciler dump st") == ["staging"]
    assert complete("reconciler --environments-dir nowhere plan ") == []


def test_init_workflows_name_no_secret(tmp_path: Path) -> None:
    """The names live in the environment files only: the workflows pass every secret as one
    JSON input, and `reconciler vars` says which to add."""
    runner = CliRunner()
    repo = tmp_path / "config"
    assert runner.invoke(cli, ["init", str(repo), "--ci", "github"]).exit_code == 0
    listed = runner.invoke(
        cli, ["--environments-dir", str(repo / "environments"), "vars", "--format", "json"]
    )
    assert listed.exit_code == 0, listed.output
    names = [v["name"] for v in json.loads(listed.output)["variables"]]
    assert names == ["NEWSTORE_CLIENT_ID", "NEWSTORE_CLIENT_SECRET"]
    for workflow in (repo / ".github" / "workflows").glob("*.yml"):
        text = workflow.read_text()
        assert not re.findall(r"secrets\.\w", text), workflow.name
        assert not [name for name in names if name in text], workflow.name
        uses = [line for line in text.splitlines() if "uses: OWNER/newstore-reconciler" in line]
        assert text.count("secrets: ${{ toJSON(secrets) }}") == len(uses) - (
            1 if workflow.name == "plan.yml" else 0  # a fork's offline validation gets none
        ), workflow.name
