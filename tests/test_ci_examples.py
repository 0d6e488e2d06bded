"""The CI recipes in examples/ci: valid pipeline files whose own shell really works.

Every script in a pipeline file that starts with `MARK` is run here verbatim (the file's text,
not a copy) by bash the way the CI system runs it, in a checkout-like directory whose
environments/ point at a sandbox on 127.0.0.1, with the secrets handed over exactly as the file
maps them. The scripts that talk to the GitHub or GitLab API cannot run here: their text is
checked instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from env_helpers import OFF_YAML
from git_helpers import GIT
from receiver_helpers import receiver

from reconciler import __version__
from reconciler.core.planfile import load_plan_file
from reconciler.sandbox import SandboxApp, SandboxConfig

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "examples" / "ci"
GITHUB = CI / "github-actions"
GITLAB = CI / "gitlab-ci.yml"
WORKFLOWS = ("plan.yml", "apply.yml", "drift.yml")
MARK = "# tested: tests/test_ci_examples.py"
ACTION_MARK = "# tested: tests/test_action.py"
MARKER = "<!-- newstore-reconciler-plan -->"
DRIFT_ARGS = "--probe --state .reconciler/drift-state.json --output html=drift-dashboard.html"
# The console scripts (`reconciler`, `check-jsonschema`) live beside this interpreter.
BIN = Path(sys.executable).parent

HEAD_SHA = "0123456789abcdef0123456789abcdef01234567"
PRODUCTION_KEY = "production-atp-key-not-used-here"
# Every `${{ ... }}` a tested step's env may use, besides the secrets.
GITHUB_CONTEXT = {
    "github.event.pull_request.head.sha": HEAD_SHA,
    "github.event.pull_request.number": "42",
    "github.event.pull_request.head.repo.full_name": "acme/newstore-config",
    "github.server_url": "https://github.example",
    "github.repository": "acme/newstore-config",
    "github.run_id": "4242",
    "inputs.break_glass": "",  # apply.yml run on push; by hand it holds the reason
}
# Protected CI/CD variables of the GitLab recipe.
PROTECTED = ("NEWSTORE_CLIENT_ID", "NEWSTORE_CLIENT_SECRET")
GITLAB_VARIABLES = {
    "CI_COMMIT_SHA": HEAD_SHA,
    "CI_MERGE_REQUEST_DIFF_BASE_SHA": "HEAD~1",  # the repo fixture's base commit
    "CI_JOB_URL": "https://gitlab.example/acme/newstore-config/-/jobs/4242",
}
# The variables the environment files name (`reconciler vars` lists them), then the
# reconciler's own secret, which no file names: the key of the plan file's fingerprints.
FILE_SECRET_NAMES = (
    "NEWSTORE_CLIENT_ID",
    "NEWSTORE_CLIENT_SECRET",
    "ACME_STAGING_ATP_API_KEY",
    "ACME_PRODUCTION_ATP_API_KEY",
    "ACME_STAGING_ORDER_WEBHOOK_API_KEY",
    "ACME_PRODUCTION_ORDER_WEBHOOK_API_KEY",
)
TOOL_SECRET_NAMES = ("RECONCILER_FINGERPRINT_KEY",)
SECRET_NAMES = FILE_SECRET_NAMES + TOOL_SECRET_NAMES
# Optional (issue 22): where the drift job tells changes. Named where users read what to create
# (the drift workflow's header comment, GitLab's header, the CI README), never wired by name:
# as secrets named RECONCILER_* they reach the step through the same JSON.
NOTIFY_SECRET_NAMES = ("RECONCILER_NOTIFY", "RECONCILER_NOTIFY_SECRET")
# Plan and apply use two different API clients (issue 25.2): GitLab's recipe has a plan client
# for merge-request pipelines; on GitHub the test plays a plan workflow whose secrets name
# another client than apply's (environment-scoped secrets, or a rotation in between).
PLAN_CLIENT_ID = "sandbox-plan"
PLAN_CLIENT_SECRET = "sandbox-plan-client-secret-01"
FINGERPRINT_KEY = "a-fingerprint-key-for-the-ci-recipe-tests-0123456789"

# A config repository like the examples/: a shared base, staging rehearsing the migration to
# the external OMS, and EU converged on NewStore-managed ATP.
BASE = """\
connection:
  client_id: ${NEWSTORE_CLIENT_ID}
  client_secret: ${NEWSTORE_CLIENT_SECRET}
  timeout: 5
gates:
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
  newstore_stock_confirmed: false
"""
STAGING = """\
extends: _base.yaml
tenant: acme-staging
connection:
  base_url: {sandbox}/acme-staging
  token_url: {sandbox}/auth/realms/acme-staging/protocol/openid-connect/token
external_oms:
  enabled: true
availability_webhook:
  url: {sandbox}/_sandbox/webhook/availabilities
  api_key: ${ACME_STAGING_ATP_API_KEY}
  external_identifier: product_id
  timeout: 5
external_atp:
  enabled: true
external_order_webhook:
  url: https://oms.acme.example/newstore
  api_key: ${ACME_STAGING_ORDER_WEBHOOK_API_KEY}
associate_app:
  use_new_om_ui: true
"""
EU = (
    """\
extends: _base.yaml
tenant: acme-eu
connection:
  base_url: {sandbox}/acme-eu
  token_url: {sandbox}/auth/realms/acme-eu/protocol/openid-connect/token
"""
    + OFF_YAML
)


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path}: not a mapping"
    return doc


def _trigger(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean true.
    trigger = workflow.get("on", workflow.get(True))
    assert isinstance(trigger, dict)
    return trigger


def _tested(script: str) -> bool:
    return script.startswith(MARK + "\n")


def _runs_reconciler(script: str) -> bool:
    return any(line.strip().startswith("reconciler ") for line in script.splitlines())


def _github_steps() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name in WORKFLOWS:
        for job_id, job in _load(GITHUB / name)["jobs"].items():
            for step in job["steps"]:
                yield name, job_id, step


def _gitlab_jobs() -> dict[str, dict[str, Any]]:
    doc = _load(GITLAB)
    return {name: job for name, job in doc.items() if isinstance(job, dict) and "script" in job}


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run as both CI systems run bash: GitHub's `shell: bash` is `bash --noprofile --norc -eo
    pipefail {0}`; GitLab's runner starts its bash scripts with `set -eo pipefail`."""
    path = cwd.parent / "step.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _clean_env() -> dict[str, str]:
    """This process's environment without anything a pipeline must provide itself."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRET_NAMES
        and not k.startswith(("GITHUB_", "CI_", "SANDBOX_", "NEWSTORE_", "RECONCILER_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


# -- running the pipelines' own scripts -----------------------------------------------------------


@dataclass
class JobRun:
    ok: bool
    log: str
    outputs: dict[str, str] = field(default_factory=dict)  # GitHub's step outputs
    summary: str = ""  # GitHub's job summary


class Pipeline(Protocol):
    workdir: Path
    secrets: dict[str, str]
    comment_file: str

    def plan(self) -> JobRun: ...
    def apply(self) -> JobRun: ...
    def drift(self) -> JobRun: ...
    def break_glass(self, reason: str) -> None: ...


_EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
_CONDITION = re.compile(r"steps\.(\w+)\.outputs\.(\w+) (==|!=) '(\w*)'")
# The reconciler's own GitHub Action (action.yml), as the recipes use it.
ACTION = ROOT / "action.yml"
ACTION_PREFIX = "OWNER/newstore-reconciler@"


def action_step(given: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The action's tested script and its env, its inputs resolved the runner's way: `with:`
    over the inputs' defaults."""
    action = _load(ACTION)
    unknown = set(given) - set(action["inputs"])
    assert not unknown, f"the action has no input {unknown}"
    inputs = {k: str(v.get("default", "")) for k, v in action["inputs"].items()} | given
    (step,) = [s for s in action["runs"]["steps"] if s.get("run", "").startswith(ACTION_MARK)]
    env = {}
    for key, value in step["env"].items():
        match = re.fullmatch(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", str(value))
        assert match, f"the action's tested step may only use inputs: {value}"
        env[key] = inputs[match[1]]
    return step["run"], env


class GitHub:
    """Runs a workflow job's tested steps in order, like the Actions runner: `env:` resolved
    from the secrets and context, step outputs through $GITHUB_OUTPUT, `if:` on step outputs
    honoured, and a stop at the first failing step that has no `continue-on-error`."""

    comment_file = "comment.md"

    def __init__(self, workdir: Path, secrets: dict[str, str]) -> None:
        self.workdir, self.secrets = workdir, secrets
        self.inputs: dict[str, str] = {}

    def plan(self) -> JobRun:
        secrets = self.secrets
        if "NEWSTORE_PLAN_CLIENT_ID" in secrets:  # a fork's pull request gets no secrets
            self.secrets = secrets | {
                "NEWSTORE_CLIENT_ID": secrets["NEWSTORE_PLAN_CLIENT_ID"],
                "NEWSTORE_CLIENT_SECRET": secrets["NEWSTORE_PLAN_CLIENT_SECRET"],
            }
        try:
            return self._job("plan.yml", "plan")
        finally:
            self.secrets = secrets

    def break_glass(self, reason: str) -> None:
        """The next runs are apply.yml run by hand with this break-glass reason."""
        self.inputs["break_glass"] = reason

    def apply(self) -> JobRun:
        return self._job("apply.yml", "apply")

    def drift(self) -> JobRun:
        return self._job("drift.yml", "drift")

    def _job(self, workflow_name: str, job_id: str) -> JobRun:
        workflow = _load(GITHUB / workflow_name)
        assert workflow["defaults"]["run"]["shell"] == "bash"
        context = dict(GITHUB_CONTEXT) | {"toJSON(secrets)": json.dumps(self.secrets)}
        context |= {f"inputs.{k}": v for k, v in self.inputs.items()}
        summary = self.workdir.parent / "summary.md"
        summary.write_text("")
        log: list[str] = []
        outputs: dict[str, str] = {}
        for step in workflow["jobs"][job_id]["steps"]:
            uses_action = step.get("uses", "").startswith(ACTION_PREFIX)
            if not (uses_action or _tested(step.get("run", ""))):
                continue
            if not self._wanted(step.get("if"), context):
                continue
            output = self.workdir.parent / "output.txt"
            output.write_text("")
            env = _clean_env() | {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
            env |= {k: self._resolve(str(v), context) for k, v in step.get("env", {}).items()}
            if uses_action:
                given = {k: self._resolve(str(v), context) for k, v in step["with"].items()}
                script, inputs_env = action_step(given)
                result = _bash(script, self.workdir, env | inputs_env)
            else:
                result = _bash(step["run"], self.workdir, env)
            log += [result.stdout, result.stderr]
            for line in output.read_text().splitlines():
                key, _, value = line.partition("=")
                outputs[key] = value
                if "id" in step:
                    context[f"steps.{step['id']}.outputs.{key}"] = value
            if result.returncode != 0 and not step.get("continue-on-error"):
                break
        else:
            return JobRun(True, "".join(log), outputs, summary.read_text())
        return JobRun(False, "".join(log), outputs, summary.read_text())

    @staticmethod
    def _resolve(value: str, context: dict[str, str]) -> str:
        def one(match: re.Match[str]) -> str:
            if match[1].startswith("steps.") and ".outputs." in match[1]:
                return context.get(match[1], "")  # a skipped step's outputs are empty
            assert match[1] in context, f"a tested step uses ${{{{ {match[1]} }}}}: add it here"
            return context[match[1]]

        return _EXPRESSION.sub(one, value)

    @staticmethod
    def _wanted(condition: str | None, context: dict[str, str]) -> bool:
        if condition is None:
            return True

        def atom(text: str) -> bool:
            match = _CONDITION.fullmatch(text)
            assert match, f"tested steps may only test step outputs: {condition}"
            value = context.get(f"steps.{match[1]}.outputs.{match[2]}", "")
            return (value == match[4]) == (match[3] == "==")

        return any(all(atom(a) for a in clause.split(" && ")) for clause in condition.split(" || "))


class GitLab:
    """Runs a job's tested script entries in one bash, as the runner runs a job's entries in
    one shell session (variables set in one entry are seen by the next)."""

    comment_file = "note.md"

    def __init__(self, workdir: Path, secrets: dict[str, str]) -> None:
        self.workdir, self.secrets = workdir, secrets

    def plan(self) -> JobRun:
        return self._job("plan")

    def break_glass(self, reason: str) -> None:
        """The next runs are a pipeline run by hand with RECONCILER_BREAK_GLASS set."""
        self.secrets["RECONCILER_BREAK_GLASS"] = reason

    def apply(self) -> JobRun:
        return self._job("apply")

    def drift(self) -> JobRun:
        return self._job("drift")

    def _job(self, name: str) -> JobRun:
        script = "\n".join(s for s in _gitlab_jobs()[name]["script"] if _tested(s))
        used = set(re.findall(r"\$\{?(CI_\w+)", script))
        assert used <= GITLAB_VARIABLES.keys(), f"give the test these variables: {used}"
        # Masked CI/CD variables reach a job as plain environment variables; protected ones
        # only reach jobs on protected branches (apply, drift), never merge-request pipelines.
        secrets = dict(self.secrets)
        if name == "plan":
            secrets = {k: v for k, v in secrets.items() if k not in PROTECTED}
        env = _clean_env() | GITLAB_VARIABLES | secrets
        for key, value in _gitlab_jobs()[name].get("variables", {}).items():
            env[key] = re.sub(r"\$(\w+)", lambda m: env.get(m[1], ""), str(value))
        result = _bash(script, self.workdir, env)
        return JobRun(result.returncode == 0, result.stdout + result.stderr)


@pytest.fixture
def repo(live_sandbox: tuple[SandboxApp, str], tmp_path: Path) -> Path:
    """A config repository's checkout: environments/ pointing at the sandbox, checked out as
    GitHub checks out a pull request (HEAD the merge, HEAD^1 the base without these files)."""
    if GIT is None:
        pytest.skip("needs the git program (the checkout, and the apply lock's remote)")
    _, base = live_sandbox
    workdir = tmp_path / "checkout"
    (workdir / "environments").mkdir(parents=True)
    _git(workdir, "init", "--quiet")
    (workdir / "README.md").write_text("config\n")
    _git(workdir, "add", "README.md")
    _git(workdir, "commit", "--quiet", "-m", "base")
    for name, body in (("_base", BASE), ("acme-staging", STAGING), ("acme-eu", EU)):
        text = body.replace("{sandbox}", base)
        (workdir / "environments" / f"{name}.yaml").write_text(text)
    _git(workdir, "add", "environments")
    _git(workdir, "commit", "--quiet", "-m", "the pull request")
    # The repository's own remote, which holds the apply lock (`--lock git`).
    remote = tmp_path / "remote.git"
    _git(tmp_path, "init", "--quiet", "--bare", str(remote))
    _git(workdir, "remote", "add", "origin", remote.as_uri())
    _git(workdir, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    return workdir


def _git(workdir: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=workdir,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    """The sandbox accepts the plan client beside the apply client."""
    return SandboxConfig(more_clients={PLAN_CLIENT_ID: PLAN_CLIENT_SECRET})


@pytest.fixture
def secrets(sandbox_config: SandboxConfig) -> dict[str, str]:
    return {
        "NEWSTORE_CLIENT_ID": sandbox_config.client_id,
        "NEWSTORE_CLIENT_SECRET": sandbox_config.client_secret,
        "NEWSTORE_PLAN_CLIENT_ID": PLAN_CLIENT_ID,
        "NEWSTORE_PLAN_CLIENT_SECRET": PLAN_CLIENT_SECRET,
        "RECONCILER_FINGERPRINT_KEY": FINGERPRINT_KEY,
        "ACME_STAGING_ATP_API_KEY": sandbox_config.webhook_api_key,
        "ACME_PRODUCTION_ATP_API_KEY": PRODUCTION_KEY,
        "ACME_STAGING_ORDER_WEBHOOK_API_KEY": "staging-order-webhook-key-0001",
        "ACME_PRODUCTION_ORDER_WEBHOOK_API_KEY": "production-order-webhook-key-01",
        # Not configured: GitHub passes an unset secret as the empty string.
        "RECONCILER_NOTIFY": "",
        "RECONCILER_NOTIFY_SECRET": "",
    }


@pytest.fixture(params=["github", "gitlab"])
def pipeline(request: pytest.FixtureRequest, repo: Path, secrets: dict[str, str]) -> Pipeline:
    return GitHub(repo, dict(secrets)) if request.param == "github" else GitLab(repo, dict(secrets))


def _hand_edit(sandbox: SandboxApp, tenant: str, **changes: Any) -> dict[str, Any]:
    """Someone changes NewStore by hand, outside the reconciler."""
    state = sandbox.state(tenant) | changes
    sandbox.seed(tenant, state)
    return sandbox.state(tenant)


def _assert_no_secret(text: str, secrets: dict[str, str]) -> None:
    # The runner consumes `::add-mask::VALUE` commands: no reader of the log sees them.
    text = re.sub(r"^::add-mask::.*\n?", "", text, flags=re.M)
    for name, value in secrets.items():
        if name not in ("NEWSTORE_CLIENT_ID", "NEWSTORE_PLAN_CLIENT_ID") and value:
            assert value not in text, f"{name} leaked"


@pytest.mark.e2e
def test_plan_review_apply_then_drift(
    pipeline: Pipeline, live_sandbox: tuple[SandboxApp, str], secrets: dict[str, str]
) -> None:
    sandbox, _ = live_sandbox
    work = pipeline.workdir

    # The pull request: staging has changes pending, EU is converged. The check passes.
    run = pipeline.plan()
    assert run.ok, run.log
    assert _exitcode_of(run) == _exitcode(pipeline, "2")
    assert (work / "plan.md").read_text().startswith("## NewStore reconciler plan")
    plan = load_plan_file(work / "plan.json")
    assert {e["name"]: e["status"] for e in plan["environments"]} == {
        "acme-eu": "converged",
        "acme-staging": "changes",
    }
    comment = (work / pipeline.comment_file).read_text()
    assert comment.startswith(f"{MARKER}\n### 📝 Changes pending")
    assert HEAD_SHA in comment
    assert "| acme-staging | 📝 changes |" in comment
    _assert_no_secret(comment + run.log, secrets)
    if isinstance(pipeline, GitHub):
        assert run.summary == comment

    # The merge: the reviewed plan is applied, and a new plan is empty.
    run = pipeline.apply()
    assert run.ok, run.log
    staging = sandbox.state("acme-staging")
    assert staging["uses_external_atp"] is True
    assert staging["associate_app_config"]["ui_configurations"]["use_new_om_ui"] is True
    assert (work / "apply-journal.jsonl").stat().st_size > 0
    run = pipeline.plan()
    assert run.ok, run.log
    assert (work / pipeline.comment_file).read_text().startswith(f"{MARKER}\n### ✅ No changes")

    # The nightly check: in sync; then someone turns external ATP off by hand.
    run = pipeline.drift()
    assert run.ok, run.log
    assert not (work / "issue.md").exists()
    _hand_edit(sandbox, "acme-staging", uses_external_atp=False)
    run = pipeline.drift()
    assert run.ok, run.log
    assert _exitcode_of(run) == _exitcode(pipeline, "2")
    drift = (work / "drift.md").read_text()
    assert "acme-staging" in drift
    assert drift in (work / "issue.md").read_text()
    _assert_no_secret(drift + run.log, secrets)

    # A pull request planned now, then another hand edit before its merge: the reviewed plan is
    # stale, apply refuses it and NewStore keeps what the person set.
    assert pipeline.plan().ok
    assert load_plan_file(work / "plan.json")["environments"][1]["status"] == "changes"
    writes = len(sandbox.history("acme-staging"))
    moved = _hand_edit(sandbox, "acme-staging", external_oms={"enabled": False})
    run = pipeline.apply()
    assert not run.ok
    assert "acme-staging" in run.log
    assert "external_oms" in run.log
    assert sandbox.state("acme-staging") == moved
    assert len(sandbox.history("acme-staging")) == writes


@pytest.mark.e2e
def test_nightly_drift_probes_tells_a_change_once_and_keeps_the_dashboard(
    pipeline: Pipeline, live_sandbox: tuple[SandboxApp, str]
) -> None:
    """Issue 22: the recipes' drift job passes --probe, publishes the dashboard and the
    Markdown, keeps the state between runs (here: the same checkout) and tells changes to the
    URL in RECONCILER_NOTIFY, once."""
    sandbox, base = live_sandbox
    work = pipeline.workdir
    with receiver("/services/T0/B0/nightly-secret-part") as hook:
        pipeline.secrets["RECONCILER_NOTIFY"] = f"{hook.url}/services/T0/B0/nightly-secret-part"
        pipeline.secrets["RECONCILER_NOTIFY_SECRET"] = "nightly-signing-secret-0042"

        # staging's migration was never applied: drift, told once.
        run = pipeline.drift()
        assert run.ok, run.log
        assert _exitcode_of(run) == _exitcode(pipeline, "2")
        (request,) = hook.requests
        assert request.signed_by("nightly-signing-secret-0042")
        assert [(c["name"], c["status"]) for c in request.json()["changes"]] == [
            ("acme-staging", "drift")
        ]
        dashboard = (work / "drift-dashboard.html").read_text()
        assert "acme-staging" in dashboard and "acme-eu" in dashboard
        assert (work / ".reconciler" / "drift-state.json").is_file()
        if isinstance(pipeline, GitHub):
            assert run.summary.startswith("## NewStore drift report")

        run = pipeline.drift()
        assert run.ok and len(hook.requests) == 1, "the same drift the next night: quiet"

        # Someone turns external ATP on by hand, with a webhook key the webhook refuses:
        # --probe makes it the off-sale alarm.
        _hand_edit(
            sandbox,
            "acme-staging",
            uses_external_atp=True,
            external_oms={"enabled": True},
            availability_webhook={
                "url": f"{base}/_sandbox/webhook/availabilities",
                "api_key": "a-key-the-webhook-refuses-0001",
                "external_identifier": "product_id",
                "timeout": 5,
            },
        )
        run = pipeline.drift()
        assert run.ok, run.log
        assert [
            (c["name"], c["status"], c["previous_status"])
            for c in hook.requests[1].json()["changes"]
        ] == [("acme-staging", "unhealthy", "drift")]
        assert "🚨 unhealthy" in (work / "drift.md").read_text()
        text = (
            run.log + (work / "drift.md").read_text() + (work / "drift-dashboard.html").read_text()
        )
        _assert_no_secret(text, pipeline.secrets)
        # The runner consumes `::add-mask::VALUE` (the action masks the URL): no reader sees it.
        assert "nightly-secret-part" not in re.sub(r"^::add-mask::.*\n?", "", text, flags=re.M)


@pytest.mark.e2e
def test_blocked_and_failed_plans_fail_the_check(
    pipeline: Pipeline, live_sandbox: tuple[SandboxApp, str], secrets: dict[str, str]
) -> None:
    sandbox, _ = live_sandbox
    work = pipeline.workdir
    # EU turned external ATP on by hand; turning it off needs newstore_stock_confirmed.
    sandbox.seed("acme-eu", {"external_oms": {"enabled": True}, "uses_external_atp": True})

    run = pipeline.plan()
    assert not run.ok
    assert _exitcode_of(run) == _exitcode(pipeline, "3")
    assert "blocks this plan" in run.log
    comment = (work / pipeline.comment_file).read_text()
    assert comment.startswith(f"{MARKER}\n### ⛔ Blocked")
    assert "newstore_stock_confirmed" in comment

    # A wrong client secret: plan fails, the comment says so and shows the error, not the secret.
    pipeline.secrets["NEWSTORE_PLAN_CLIENT_SECRET"] = "not-the-sandbox-secret-0123"
    run = pipeline.plan()
    assert not run.ok
    assert _exitcode_of(run) == _exitcode(pipeline, "1")
    comment = (work / pipeline.comment_file).read_text()
    assert comment.startswith(f"{MARKER}\n### ❌ The plan failed (exit 1)")
    assert "```text\nError:" in comment
    _assert_no_secret(comment + run.log, pipeline.secrets)

    # A broken file: validate fails, yet the comment is replaced, naming the file and line.
    eu = pipeline.workdir / "environments" / "acme-eu.yaml"
    eu.write_text(eu.read_text().replace("enabled: false", "enabled: nope", 1))
    run = pipeline.plan()
    assert not run.ok
    comment = (work / pipeline.comment_file).read_text()
    assert comment.startswith(f"{MARKER}\n### ❌ The plan failed (exit 1)")
    assert "environments/acme-eu.yaml:7:3: external_oms.enabled" in comment


@pytest.mark.e2e
def test_drift_errors_fail_the_job(pipeline: Pipeline) -> None:
    pipeline.secrets["NEWSTORE_CLIENT_SECRET"] = "not-the-sandbox-secret-0123"
    run = pipeline.drift()
    assert not run.ok
    assert "drift exited 1" in run.log
    assert not (pipeline.workdir / "issue.md").exists()


FOREVER_FROZEN = """\
policy:
  freezes:
    - from: 2000-01-01
      to: 2999-12-31
      reason: peak season, for as long as this test can run
"""


@pytest.mark.e2e
def test_a_freeze_blocks_the_apply_job_clearly_until_someone_breaks_glass(
    pipeline: Pipeline, live_sandbox: tuple[SandboxApp, str], secrets: dict[str, str]
) -> None:
    sandbox, _ = live_sandbox
    work = pipeline.workdir
    staging = work / "environments" / "acme-staging.yaml"
    staging.write_text(staging.read_text() + FOREVER_FROZEN)

    # The review: changes pending, and the comment says an apply now would be refused.
    run = pipeline.plan()
    assert run.ok, run.log
    assert _exitcode_of(run) == _exitcode(pipeline, "2")
    comment = (work / pipeline.comment_file).read_text()
    assert comment.startswith(f"{MARKER}\n### 📝 Changes pending")
    assert "> ⏸️ **Not right now:**" in comment
    assert "apply now: BLOCKED by policy rule freeze" in comment

    # The merge: the apply job fails, writing nothing, and says why and when.
    run = pipeline.apply()
    assert not run.ok
    assert "blocked by policy rule freeze" in run.log
    assert "peak season, for as long as this test can run" in run.log
    assert "blocked by the change policy or a gate" in run.log
    assert sandbox.history("acme-staging") == []

    # The emergency: run by hand with a reason; the same reviewed plan is applied.
    pipeline.break_glass("external OMS down, INC-4711")
    run = pipeline.apply()
    assert run.ok, run.log
    assert "Break glass: external OMS down, INC-4711" in run.log
    assert sandbox.state("acme-staging")["uses_external_atp"] is True
    journal = (work / "apply-journal.jsonl").read_text()
    assert '"break_glass": "external OMS down, INC-4711"' in journal
    _assert_no_secret(comment + run.log + journal, secrets)


def _exitcode_of(run: JobRun) -> dict[str, str]:
    """The exit code a job's steps passed on (other outputs, e.g. the action's file names,
    aside)."""
    return {k: v for k, v in run.outputs.items() if k == "exitcode"}


def _exitcode(pipeline: Pipeline, code: str) -> dict[str, str]:
    """The step outputs a job run should have: GitHub passes the exit code on, GitLab keeps it
    in the shell."""
    return {"exitcode": code} if isinstance(pipeline, GitHub) else {}


# -- the files themselves ---------------------------------------------------------------------


def test_github_workflows_match_github_schema() -> None:
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [GITHUB / name for name in WORKFLOWS],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_ci_matches_gitlab_schema() -> None:
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.gitlab-ci", GITLAB],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    doc = _load(GITLAB)
    assert doc["stages"] == ["plan", "apply", "drift"]
    assert {name: job["stage"] for name, job in _gitlab_jobs().items()} == {
        "plan": "plan",
        "apply": "apply",
        "drift": "drift",
    }


def test_github_triggers() -> None:
    plan, apply, drift = (_trigger(_load(GITHUB / name)) for name in WORKFLOWS)
    # Every pull request, so that the check can be required (a path filter would leave it
    # pending forever on a pull request that does not touch environments/).
    assert plan == {"pull_request": None}
    assert apply["push"] == {"branches": ["main"], "paths": ["environments/**"]}
    assert set(apply) == {"push", "workflow_dispatch"}
    assert apply["workflow_dispatch"]["inputs"]["break_glass"]["required"] is True
    assert set(drift) == {"schedule", "workflow_dispatch"}
    assert drift["schedule"][0]["cron"]


def test_github_permissions_are_minimal_per_job() -> None:
    expected = {
        "plan.yml": {"plan": {"contents": "read"}, "comment": {"pull-requests": "write"}},
        # contents: write, for the apply lock's refs in the repository (refs/reconciler/*).
        "apply.yml": {
            "apply": {"contents": "write", "actions": "read", "pull-requests": "read"},
        },
        "drift.yml": {"drift": {"contents": "read"}, "report": {"issues": "write"}},
    }
    for name, jobs in expected.items():
        workflow = _load(GITHUB / name)
        assert workflow["permissions"] == {}, name
        assert {job_id: job["permissions"] for job_id, job in workflow["jobs"].items()} == jobs


def test_no_apply_is_cancelled_while_it_waits() -> None:
    """No concurrency group (GitHub cancels a waiting run of a group when a third one queues)
    and no resource group: every apply waits for the git lock, and an older one is refused."""
    apply = _load(GITHUB / "apply.yml")
    assert "concurrency" not in apply and "concurrency" not in apply["jobs"]["apply"]
    steps = apply["jobs"]["apply"]["steps"]
    (run,) = [s for s in steps if s.get("with", {}).get("command") == "apply"]
    assert "--lock git --lock-timeout 1200" in run["with"]["args"]
    assert apply["jobs"]["apply"]["timeout-minutes"] * 60 > 1200, "the job outlives the wait"
    assert not [s for s in steps if s.get("with", {}).get("command") == "drift"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert "persist-credentials" not in checkout.get("with", {}), "git push needs the token"
    job = _gitlab_jobs()["apply"]
    assert "resource_group" not in job and job["interruptible"] is False
    (script,) = [s for s in job["script"] if _tested(s) and "reconciler apply" in s]
    assert "--lock git --lock-timeout 1200 --format json" in script


@pytest.mark.e2e
def test_an_apply_older_than_the_one_applied_passes_writing_nothing(
    pipeline: Pipeline, live_sandbox: tuple[SandboxApp, str]
) -> None:
    """Two merges, their runs in the wrong order: the newer one applies first and records its
    commit; the older one's run is refused before any write and passes, saying why."""
    sandbox, _ = live_sandbox
    work = pipeline.workdir
    assert pipeline.plan().ok
    older = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.strip()
    (work / "environments" / "README.md").write_text("a newer merge\n")
    _git(work, "add", "environments")
    _git(work, "commit", "--quiet", "-m", "a newer merge")
    run = pipeline.apply()
    assert run.ok, run.log
    writes = len(sandbox.history("acme-staging"))
    assert writes > 0
    if isinstance(pipeline, GitHub):
        assert run.outputs["applied"] == "5" and run.outputs["not-attempted"] == "0"
        assert run.outputs["error-kind"] == ""
        assert run.summary.startswith("## reconciler apply\n\n**applied** (exit 0): 5 applied")
        assert "| acme-staging | applied | 5 | 0 | 0 | 0 |" in run.summary

    _git(work, "checkout", "--quiet", older)
    assert pipeline.plan().ok
    run = pipeline.apply()
    assert run.ok, run.log
    assert "newer configuration already applied to tenant acme-" in run.log
    assert "it holds this merge's changes. Nothing was written." in run.log
    assert len(sandbox.history("acme-staging")) == writes
    if isinstance(pipeline, GitHub):
        assert run.outputs["error-kind"] == "older_commit"
        assert "**failed** (exit 1)" in run.summary


def test_secrets_reach_only_the_tested_reconciler_steps() -> None:
    """The workflows name no secret, not even the reconciler's own fingerprint key: each
    reconciler step gets them all as one JSON input, and the action exports just those
    environments/ uses plus the secrets named RECONCILER_* (tests/test_action.py; the plan and
    apply tests here use two API clients, so the key does travel that way)."""
    for name in WORKFLOWS:
        text = (GITHUB / name).read_text()
        assert not re.findall(r"secrets\.\w+", text), name
        assert not [s for s in SECRET_NAMES if s in text], name
        workflow = _load(GITHUB / name)
        assert "env" not in workflow, name
        for job_id, job in workflow["jobs"].items():
            assert "secrets" not in str(job.get("env", {})), (name, job_id)
    for name, _job_id, step in _github_steps():
        run = step.get("run", "")
        assert "secrets" not in str(step.get("env", {})), (name, step.get("name"))
        assert "secrets." not in run and "${{" not in (run if _tested(run) else "")
        uses_secrets = "secrets" in step.get("with", {})
        if uses_secrets:
            assert step["with"]["secrets"] == "${{ toJSON(secrets) }}"
        # The reconciler runs through the action only; a fork's offline validation gets none.
        runs_reconciler = step.get("uses", "").startswith(ACTION_PREFIX) and (
            "--allow-missing-secrets" not in step["with"].get("args", "")
        )
        assert not _runs_reconciler(run), (name, step.get("name"))
        assert uses_secrets == runs_reconciler, (name, step.get("name"))
    # GitLab masks the variables; no script should print or pass them on anyway.
    for job in _gitlab_jobs().values():
        for script in job["script"]:
            assert not any(s in script for s in SECRET_NAMES[1:]), script
            tokens = re.findall(r".*RECONCILER_GITLAB_TOKEN.*", script)
            # The API's header, or git's credential helper (which never writes it down).
            helper = 'password=%s\\n" "$RECONCILER_GITLAB_TOKEN"; }; f\''
            assert all(
                'PRIVATE-TOKEN: $RECONCILER_GITLAB_TOKEN"' in line or line.endswith(helper)
                for line in tokens
                if not line.lstrip().startswith("#")
            ), tokens
    # GitLab's header lists the CI/CD variables to create: no environment file's name (that
    # is `reconciler vars`'s job), only the reconciler's own, which no file names.
    header = GITLAB.read_text()
    assert not [s for s in FILE_SECRET_NAMES[2:] if s in header]
    assert all(s in header for s in TOOL_SECRET_NAMES)


def test_every_reconciler_command_is_in_a_tested_script() -> None:
    expected = {
        "reconciler validate",
        "reconciler plan --format markdown --detailed-exitcode --out plan.json",
        "reconciler apply --plan plan.json --auto-approve --journal apply-journal.jsonl"
        ' --lock git --lock-timeout 1200 --format json "${glass[@]}"',
        "reconciler drift --probe --format markdown --state .reconciler/drift-state.json"
        " --output html=drift-dashboard.html",
    }
    gitlab = [s for job in _gitlab_jobs().values() for s in job["script"]]
    # GitHub runs them through the action, whose script is run by these tests.
    github = [
        step["with"]
        for _, _, step in _github_steps()
        if step.get("uses", "").startswith(ACTION_PREFIX)
    ]
    assert {(w["command"], w.get("args", ""), w.get("format", "")) for w in github} == {
        ("validate", "", ""),
        ("validate", "--allow-missing-secrets", ""),
        ("plan", "", "markdown"),
        (
            "apply",
            "--plan plan.json --auto-approve --journal apply-journal.jsonl --lock git "
            "--lock-timeout 1200",
            "",
        ),
        ("drift", DRIFT_ARGS, "markdown"),
    }
    for scripts in (gitlab,):
        invoking = [s for s in scripts if _runs_reconciler(s)]
        assert all(_tested(s) for s in invoking)
        commands = {
            line.strip().split(" > ")[0]
            for s in invoking
            for line in s.splitlines()
            if line.strip().startswith("reconciler ")
        }
        assert commands == expected


def test_api_scripts_use_the_marker_and_the_files_the_tested_ones_write() -> None:
    steps = {(name, step.get("name", "")): step for name, _, step in _github_steps()}

    comment = steps["plan.yml", "Post the plan comment, or update the one already there"]["run"]
    assert MARKER in comment and "-F body=@comment.md" in comment
    assert "--method PATCH" in comment and "--method POST" in comment

    artifact = steps["plan.yml", "Keep the reviewed plan for apply.yml"]
    assert artifact["with"]["path"] == "plan.json"
    assert artifact["with"]["name"] == (
        "reconciler-plan-pr${{ github.event.pull_request.number }}"
        "-${{ github.event.pull_request.head.sha }}"
    )
    assert artifact["if"] == (
        "steps.plan.outputs.exitcode == '0' || steps.plan.outputs.exitcode == '2'"
    )

    fetch = steps["apply.yml", "Fetch the plan reviewed in the merged pull request"]["run"]
    assert 'name="reconciler-plan-pr$number-$head"' in fetch
    assert "head_repository_id == $REPO_ID" in fetch
    assert "unzip -o reviewed-plan.zip plan.json" in fetch
    assert fetch.count("Nothing was applied.") == 2 and fetch.count("exit 1") == 2

    report = steps["drift.yml", "Open the drift issue, or update the one already open"]["run"]
    assert "--label drift" in report and "--body-file issue.md" in report

    plan, apply, drift = (_gitlab_jobs()[job]["script"] for job in ("plan", "apply", "drift"))
    (note,) = [s for s in plan if "/notes" in s]
    assert MARKER in note and '"body@note.md"' in note
    fetch, push = [s for s in apply if not _tested(s)]
    assert '"jobs/$job/artifacts/plan.json" > plan.json' in fetch
    assert fetch.count("Nothing was applied.") == 2 and fetch.count("exit 1") == 2
    # The lock's pushes go to the project with the token, from the variable, never stored.
    assert 'git remote set-url --push origin "$CI_SERVER_URL/$CI_PROJECT_PATH.git"' in push
    assert "git config credential.helper '!f()" in push
    (issue,) = [s for s in drift if not _tested(s)]
    assert "labels=drift" in issue and '"description@issue.md"' in issue


def test_gitlab_keeps_the_plan_and_only_applies_a_passed_plan_job() -> None:
    jobs = _gitlab_jobs()
    artifacts = jobs["plan"]["artifacts"]
    assert {"plan.json", "plan.md"} <= set(artifacts["paths"])
    assert artifacts["reports"]["terraform"] == "plan-report.json"
    assert "scope%5B%5D=success" in next(s for s in jobs["apply"]["script"] if not _tested(s))


def test_gitlab_change_counts_report(repo: Path) -> None:
    """The MR widget's counts come from plan.json (offline: a hand-written plan file is enough
    for the counting entry, which only reads it)."""
    entry = next(s for s in _gitlab_jobs()["plan"]["script"] if "plan-report.json" in s)
    (repo / "plan.md").write_text("## NewStore reconciler plan\n")
    (repo / "plan.json").write_text(
        '{"environments": [{"steps": [{"action": "update"}, {"action": "create"},'
        ' {"action": "update"}]}, {"steps": []}]}'
    )
    result = _bash(f"PLAN_EXITCODE=2\n{entry}", repo, _clean_env() | GITLAB_VARIABLES)
    assert result.returncode == 0, result.stderr
    assert (repo / "plan-report.json").read_text() == '{"create": 1, "update": 2, "delete": 0}\n'
    assert (repo / "note.md").read_text().startswith(f"{MARKER}\n### 📝 Changes pending")


def test_example_requirements_pin_this_release() -> None:
    lines = [
        line
        for line in (CI / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Not on PyPI: a git URL pinned to this release's tag (tests/test_install.py installs one).
    assert lines == [
        f"newstore-reconciler @ git+https://github.com/OWNER/newstore-reconciler@v{__version__}"
    ]
    for name, _, step in _github_steps():
        if "newstore-reconciler" in step.get("uses", ""):
            assert step["uses"] == f"{ACTION_PREFIX}v{__version__}", name
    assert "-r requirements.txt" in GITLAB.read_text()


def test_readme_names_every_file_and_how_to_find_the_secrets() -> None:
    readme = (CI / "README.md").read_text()
    for name in (
        *WORKFLOWS,
        "gitlab-ci.yml",
        "requirements.txt",
        *SECRET_NAMES[:2],
        *TOOL_SECRET_NAMES,
        *NOTIFY_SECRET_NAMES,
    ):
        assert name in readme, name
    assert "RECONCILER_GITLAB_TOKEN" in readme
    assert "reconciler vars" in readme and "toJSON(secrets)" in readme


@pytest.mark.e2e
def test_github_plan_is_a_cheap_no_op_without_environment_changes(
    repo: Path, secrets: dict[str, str], live_sandbox: tuple[SandboxApp, str]
) -> None:
    """The required check passes on a pull request that touches nothing under environments/,
    without reading NewStore."""
    sandbox, _ = live_sandbox
    (repo / "README.md").write_text("docs only\n")
    _git(repo, "commit", "--quiet", "-am", "docs")
    run = GitHub(repo, dict(secrets)).plan()
    assert run.ok, run.log
    assert run.outputs == {"changed": "false", "fork": "false"}
    assert "nothing to plan" in run.log
    assert not (repo / "plan.json").exists() and not (repo / "comment.md").exists()
    assert sandbox.requests("acme-staging") == [] and sandbox.requests("acme-eu") == []


@pytest.mark.e2e
def test_github_fork_pull_request_is_validated_offline_only(
    repo: Path, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, _ = live_sandbox
    fork = GitHub(repo, {})  # a fork's pull request gets no secrets
    key = "github.event.pull_request.head.repo.full_name"
    original = GITHUB_CONTEXT[key]
    GITHUB_CONTEXT[key] = "someone/newstore-config"
    try:
        run = fork.plan()
        assert run.ok, run.log
        assert run.outputs["fork"] == "true" and run.outputs["exitcode"] == "0"
        assert "validated offline and not planned" in run.log
        assert not (repo / "plan.json").exists()
        assert sandbox.requests("acme-staging") == []
        # An invalid file fails the fork's check.
        eu = repo / "environments" / "acme-eu.yaml"
        eu.write_text(eu.read_text().replace("enabled: false", "enabled: nope", 1))
        run = fork.plan()
        assert not run.ok
        assert "external_oms.enabled" in run.log
    finally:
        GITHUB_CONTEXT[key] = original


def test_gitlab_protects_the_write_credentials() -> None:
    jobs = _gitlab_jobs()
    for apply_rule in jobs["apply"]["rules"]:
        assert '$CI_COMMIT_REF_PROTECTED == "true"' in apply_rule["if"]
        assert "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in apply_rule["if"]
    # Plan runs on every merge request (no `changes:`), with the plan client's variables.
    assert jobs["plan"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert jobs["plan"]["variables"]["NEWSTORE_CLIENT_ID"] == "$NEWSTORE_PLAN_CLIENT_ID"
    assert jobs["plan"]["variables"]["NEWSTORE_CLIENT_SECRET"] == "$NEWSTORE_PLAN_CLIENT_SECRET"
    text = GITLAB.read_text()
    assert "PROTECTED" in text and "NEWSTORE_PLAN_CLIENT_SECRET" in text


@pytest.mark.e2e
def test_gitlab_plan_is_a_cheap_no_op_without_environment_changes(
    repo: Path, secrets: dict[str, str], live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, _ = live_sandbox
    (repo / "README.md").write_text("docs only\n")
    _git(repo, "commit", "--quiet", "-am", "docs")
    run = GitLab(repo, dict(secrets)).plan()
    assert run.ok, run.log
    assert "nothing to plan" in run.log
    assert not (repo / "plan.json").exists() and not (repo / "note.md").exists()
    assert sandbox.requests("acme-staging") == []
