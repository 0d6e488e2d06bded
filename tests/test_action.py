"""The GitHub Action (action.yml at the repository root): valid metadata, and its own shell
step run verbatim against a sandbox on 127.0.0.1, with its inputs resolved as the Actions
runner resolves `${{ inputs.* }}` (defaults included)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from apply_helpers import ORDER_WEBHOOK_API_KEY
from env_helpers import OFF_YAML, ON_YAML
from test_ci_examples import BIN, _bash, _clean_env

from reconciler.core.planfile import load_plan_file
from reconciler.sandbox import SandboxApp, SandboxConfig

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
MARK = "# tested: tests/test_action.py"


def _action() -> dict[str, Any]:
    doc = yaml.safe_load(ACTION.read_text())
    assert isinstance(doc, dict)
    return doc


def test_action_metadata_matches_the_github_schema() -> None:
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-actions", ACTION],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert {"command", "environments", "format", "args"} <= set(action["inputs"])
    assert {"exitcode", "report", "plan-file"} <= set(action["outputs"])


def test_action_installs_the_way_the_readme_says() -> None:
    """It installs from its own checkout, so the action's ref pins the reconciler's version
    (tests/test_install.py runs the same `pip install <checkout>`)."""
    (install,) = [s for s in _action()["runs"]["steps"] if "pip install" in s.get("run", "")]
    assert '"$GITHUB_ACTION_PATH"' in install["run"]
    assert "python -m pip install" in (ROOT / "docs" / "install.md").read_text()


class Action:
    """Runs the action's tested step like the runner: its `env:` resolved from the inputs
    (`with:` over the defaults), the caller's env (secrets) inherited, outputs read back."""

    def __init__(self, workdir: Path, secrets: dict[str, str]) -> None:
        self.workdir, self.secrets = workdir, secrets
        # True: the secrets go in as `secrets: ${{ toJSON(secrets) }}` (as the recipes pass
        # them), not through the step's env.
        self.as_json = False
        self.path_prefix = ""

    def run(self, **given: str) -> tuple[int, dict[str, str], str]:
        action = _action()
        inputs = {k: str(v.get("default", "")) for k, v in action["inputs"].items()}
        inputs |= {k.replace("_", "-"): v for k, v in given.items()}
        (step,) = [s for s in action["runs"]["steps"] if s.get("run", "").startswith(MARK)]
        assert step["shell"] == "bash"

        def resolve(value: str) -> str:
            match = re.fullmatch(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", value)
            assert match, f"the tested step's env may only use inputs: {value}"
            return inputs[match[1]]

        output = self.workdir.parent / "output.txt"
        output.write_text("")
        env = _clean_env() | {"GITHUB_OUTPUT": str(output)}
        if self.as_json:
            # What the runner hands over for toJSON(secrets): every secret, and its own token.
            inputs["secrets"] = json.dumps(self.secrets | {"github_token": "ghs_not-a-nsr-secret"})
        else:
            env |= self.secrets
        if self.path_prefix:
            env["PATH"] = f"{self.path_prefix}{os.pathsep}{env['PATH']}"
        env |= {k: resolve(str(v)) for k, v in step["env"].items()}
        result = _bash(step["run"], self.workdir, env)
        outputs = dict(line.partition("=")[::2] for line in output.read_text().splitlines())
        return result.returncode, outputs, result.stdout + result.stderr


@pytest.fixture
def action(
    live_sandbox: tuple[SandboxApp, str], tmp_path: Path, sandbox_config: SandboxConfig
) -> Action:
    _, base = live_sandbox
    workdir = tmp_path / "checkout"
    (workdir / "environments").mkdir(parents=True)
    for name, body in (("staging", ON_YAML), ("eu", OFF_YAML)):
        head = (
            f"tenant: acme-{name}\nconnection:\n  base_url: {base}/acme-{name}\n"
            f"  token_url: {base}/auth/realms/acme-{name}/protocol/openid-connect/token\n"
        )
        text = head + body.replace("{sandbox}", base)
        (workdir / "environments" / f"{name}.yaml").write_text(text)
    return Action(
        workdir,
        {
            "NEWSTORE_CLIENT_ID": sandbox_config.client_id,
            "NEWSTORE_CLIENT_SECRET": sandbox_config.client_secret,
            "SANDBOX_WEBHOOK_API_KEY": sandbox_config.webhook_api_key,
            # ON_YAML configures the external order webhook (rule 4) with this key.
            "SANDBOX_ORDER_WEBHOOK_API_KEY": ORDER_WEBHOOK_API_KEY,
        },
    )


@pytest.mark.e2e
def test_plan_apply_drift_through_the_action(
    action: Action, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, _ = live_sandbox
    work = action.workdir

    code, out, log = action.run(command="validate")
    assert code == 0, log
    assert out["exitcode"] == "0"
    assert (work / out["report"]).read_text() == "2 environments valid: eu, staging\n"

    # Changes pending: exit 2 is allowed by default, the plan file and the Markdown are there.
    code, out, log = action.run(command="plan")
    assert code == 0, log
    assert out == {
        "exitcode": "2",
        "report": "reconciler-plan.md",
        "errors": "reconciler-plan.err",
        "plan-file": "plan.json",
    }
    assert (work / "reconciler-plan.md").read_text().startswith("## NewStore reconciler plan")
    plan = load_plan_file(work / "plan.json")
    assert {e["name"]: e["status"] for e in plan["environments"]} == {
        "eu": "converged",
        "staging": "changes",
    }
    assert action.secrets["NEWSTORE_CLIENT_SECRET"] not in log

    # Only the environments asked for, in JSON.
    code, out, log = action.run(command="plan", environments="eu", format="json")
    assert code == 0 and out["exitcode"] == "0", log
    assert [e["name"] for e in load_plan_file(work / "plan.json")["environments"]] == ["eu"]

    code, out, log = action.run(command="plan", environments="staging")  # plan.json: staging
    assert out["exitcode"] == "2", log
    code, out, log = action.run(
        command="apply", args="--plan plan.json --auto-approve --journal apply-journal.jsonl"
    )
    assert code == 0, log
    assert out["exitcode"] == "0" and out["plan-file"] == ""
    assert sandbox.state("acme-staging")["uses_external_atp"] is True
    assert (work / "apply-journal.jsonl").stat().st_size > 0
    assert "converged" in (work / out["report"]).read_text()

    code, out, log = action.run(command="drift", format="text")
    assert code == 0 and out["exitcode"] == "0", log
    assert out["report"] == "reconciler-drift.txt"

    # Drift exits 2: allowed by default; not allowed when the caller says so, and the step
    # then fails with that code after writing its outputs.
    sandbox.seed("acme-eu", sandbox.state("acme-eu") | {"external_oms": {"enabled": True}})
    code, out, log = action.run(command="drift", allowed_exit_codes="0")
    assert code == 2 and out["exitcode"] == "2", log
    assert "exited 2 (allowed: 0)" in log
    assert "acme-eu" in (work / "reconciler-drift.md").read_text()


@pytest.mark.e2e
def test_errors_fail_the_step_with_the_message(action: Action) -> None:
    action.secrets["NEWSTORE_CLIENT_SECRET"] = "not-the-sandbox-secret-0123"
    code, out, log = action.run(command="plan")
    assert code == 1 and out["exitcode"] == "1"
    assert "Error:" in (action.workdir / out["errors"]).read_text()
    assert "not-the-sandbox-secret-0123" not in log

    code, out, log = action.run(command="destroy")
    assert code == 1
    assert "command must be validate, plan, apply or drift" in log


def test_the_tested_script_holds_no_expression() -> None:
    """GitHub substitutes `${{ }}` into a run script's text before running it: a secret there
    would be written into the script. Everything comes in through env."""
    for step in _action()["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step.get("name")
    assert _action()["inputs"]["secrets"]["default"] == ""


def _masked(log: str) -> tuple[list[str], str]:
    """The values the log registered for masking, and the log without those commands (the
    runner consumes them; what is left is what a reader sees)."""
    masks = re.findall(r"^::add-mask::(.*)$", log, re.M)
    return masks, re.sub(r"^::add-mask::.*\n", "", log, flags=re.M)


@pytest.mark.e2e
def test_secrets_as_json_export_exactly_the_needed_variables_masked(
    action: Action, live_sandbox: tuple[SandboxApp, str], tmp_path: Path
) -> None:
    sandbox, _ = live_sandbox
    unrelated = "an-unrelated-secret-of-another-repo-01"
    action.secrets["SOME_OTHER_SECRET"] = unrelated
    # The reconciler's own settings come along (no environment file names them).
    action.secrets["RECONCILER_SOME_KEY"] = "a-reconciler-setting-of-32-chars-0001"
    action.as_json = True
    # A `reconciler` on PATH before the real one records which variables its process got
    # (names only), then runs the real one.
    seen = tmp_path / "seen.txt"
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "reconciler").write_text(
        f'#!/bin/sh\necho "$* :: $(env | grep -v "^INPUT_SECRETS=$" | cut -d= -f1 | '
        f'tr "\\n" " ")" >> "{seen}"\nexec "{BIN / "reconciler"}" "$@"\n'
    )
    (shim / "reconciler").chmod(0o755)
    action.path_prefix = str(shim)

    code, out, log = action.run(command="plan", environments="staging")
    assert code == 0 and out["exitcode"] == "2", log
    masks, shown = _masked(log)
    needed = ("NEWSTORE_CLIENT_SECRET", "SANDBOX_WEBHOOK_API_KEY", "SANDBOX_ORDER_WEBHOOK_API_KEY")
    for name in needed:
        assert action.secrets[name] in masks, name
        assert action.secrets[name] not in shown, name
    assert unrelated not in log and "ghs_not-a-nsr-secret" not in log
    calls = dict(line.split(" :: ") for line in seen.read_text().splitlines())
    assert [args.split()[2] for args in calls] == ["vars", "plan"]
    for args, names in calls.items():
        got = set(names.split())
        # The secrets' JSON reaches no reconciler process; only the needed variables do.
        assert "INPUT_SECRETS" not in got and "SOME_OTHER_SECRET" not in got, args
        assert not {"github_token", "GITHUB_TOKEN"} & got
    (plan_call,) = [names for args, names in calls.items() if " plan " in args]
    assert set(needed) | {"NEWSTORE_CLIENT_ID", "RECONCILER_SOME_KEY"} <= set(plan_call.split())
    assert "a-reconciler-setting-of-32-chars-0001" in masks
    assert sandbox.requests("acme-staging")


@pytest.mark.e2e
def test_a_missing_secret_fails_the_step_naming_it_before_anything_runs(
    action: Action, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, _ = live_sandbox
    del action.secrets["SANDBOX_WEBHOOK_API_KEY"]
    action.as_json = True
    code, out, log = action.run(command="plan")
    assert code == 1 and out["exitcode"] == "1", log
    errors = (action.workdir / out["errors"]).read_text()
    assert "SANDBOX_WEBHOOK_API_KEY (environments/staging.yaml:" in errors
    assert "nothing was run" in errors
    assert "Traceback" not in log
    assert sandbox.requests("acme-staging") == [] and sandbox.requests("acme-eu") == []
    # Offline validation of a fork's files needs none of them.
    code, out, log = action.run(command="validate", args="--allow-missing-secrets")
    assert code == 0, log
