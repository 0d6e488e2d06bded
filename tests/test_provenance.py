"""Provenance read from a real git repository and the CI's variables."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from env_helpers import ON_YAML, WriteEnv, run_cli
from git_helpers import needs_git

from reconciler.provenance import actor, config_commit, run_url
from reconciler.sandbox import SandboxApp


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@needs_git
def test_config_commit_of_a_repository_and_its_dirty_flag(tmp_path: Path) -> None:
    repo = tmp_path / "config"
    envs = repo / "environments"
    envs.mkdir(parents=True)
    (envs / "staging.yaml").write_text("tenant: acme-staging\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.test", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-qm", "one")
    head = _git(repo, "rev-parse", "HEAD")

    commit = config_commit(envs)
    assert commit is not None
    assert (commit.sha, commit.dirty) == (head, False)

    (envs / "staging.yaml").write_text("tenant: acme-other\n")
    dirty = config_commit(envs)
    assert dirty is not None
    assert (dirty.sha, dirty.dirty) == (head, True)
    assert str(dirty).endswith("(dirty)")


def test_no_repository_means_no_commit(tmp_path: Path) -> None:
    assert config_commit(tmp_path) is None


def test_actor_and_run_url_from_the_ci_variables() -> None:
    github = {
        "GITHUB_ACTOR": "octocat",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/config",
        "GITHUB_RUN_ID": "42",
    }
    assert actor(github) == "octocat (github)"
    assert run_url(github) == "https://github.com/acme/config/actions/runs/42"
    gitlab = {"GITLAB_USER_LOGIN": "ana", "CI_JOB_URL": "https://gitlab.example/j/7"}
    assert actor(gitlab) == "ana (gitlab)"
    assert run_url(gitlab) == "https://gitlab.example/j/7"
    assert "@" in actor({})
    assert run_url({}) is None


@needs_git
def test_the_markdown_plan_ends_with_its_commit_and_checksum(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv, tmp_path: Path
) -> None:
    _, base = live_sandbox
    directory = write_env("acme", "acme", base, ON_YAML).parent
    repo = directory.parent
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.test", "add", "environments")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-qm", "one")
    head = _git(repo, "rev-parse", "HEAD")
    plan_file = tmp_path / "plan.json"

    shown = run_cli(directory, "plan", "--format", "markdown", "--out", str(plan_file))

    assert shown.exit_code == 0, shown.output
    checksum = json.loads(plan_file.read_text())["checksum"]
    assert shown.stdout.endswith(
        f"---\n\n<sub>Planned from config commit `{head[:12]}`; plan checksum `{checksum}`.</sub>\n"
    )

    (directory / "acme.yaml").write_text((directory / "acme.yaml").read_text() + "\n")
    dirty = run_cli(directory, "plan", "--format", "markdown")
    assert f"`{head[:12]}` with uncommitted changes; plan checksum `sha256:" in dirty.stdout
