"""docs/adding-a-setting.md stays true: a throwaway flag setting added exactly as it says (its
module, one REGISTRY line, one sandbox table entry, `reconciler schema --write`) to a copy of the
package goes through validate, plan, apply, drift and dump against the sandbox over 127.0.0.1,
through the real code and CLI, with no other edit.

The copy runs in a subprocess (its own `reconciler` first on the path), so nothing of it leaks
into this process's registry or sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from reconciler.sandbox.config import SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
KEY = "enable_automatic_rerouting"  # a real NewStore routing flag, `{"value": bool}`

MODULE = f'''\
"""Automatic rerouting of on-hold orders: `/v0/config/routing/{KEY}` (a `Flag`)."""

from __future__ import annotations

from reconciler.newstore.settings.flag import Flag


class AutomaticRerouting(Flag):
    key = "{KEY}"
    path = "/v0/config/routing/{KEY}"
    title = "Automatic rerouting"
    description = "Whether NewStore routes on-hold orders once stock is available."
    enabled_description = "true: on-hold orders are rerouted automatically."
'''
IMPORT = f"from reconciler.newstore.settings.{KEY} import AutomaticRerouting\n\n"
REGISTRY_LINE = "    AutomaticRerouting(),\n"
ENTRY = f"""\
    Endpoint(
        name="{KEY}",
        path="/v0/config/routing/{KEY}",
        methods=("GET", "POST"),
        state_key="{KEY}",
        spec=_ROUTING,
        shape=WRAPPED,
        errors="messages",
    ),
"""

# Runs inside the copy: a sandbox on 127.0.0.1 and the CLI against it, in order; prints JSON.
DRIVER = r"""
import json, sys
from pathlib import Path
from click.testing import CliRunner
from reconciler.cli import cli
from reconciler.sandbox import SandboxApp, running

KEY, TENANT, CLIENT_ID, SECRET = sys.argv[1:5]
work = Path(sys.argv[5])
app = SandboxApp()
out = {}
with running(app) as base:
    envs = work / "environments"
    envs.mkdir()
    (envs / "lab.yaml").write_text(
        f"tenant: {TENANT}\nconnection:\n  base_url: {base}/{TENANT}\n"
        f"  token_url: {base}/auth/realms/{TENANT}/protocol/openid-connect/token\n"
        f"  client_id: {CLIENT_ID}\n  client_secret: ${{LAB_SECRET}}\n"
        f"{KEY}:\n  enabled: true\n"
    )
    env = {"LAB_SECRET": SECRET}

    def run(name, *args):
        result = CliRunner().invoke(cli, ["--environments-dir", str(envs), *args], env=env)
        out[name] = {"exit": result.exit_code, "output": result.output}

    run("validate", "validate")
    run("plan", "plan", "--format", "json")
    run("apply", "apply", "--auto-approve")
    out["state_after_apply"] = app.state(TENANT)[KEY]
    run("drift_in_sync", "drift", "--format", "json")
    app.seed(TENANT, {KEY: False})  # a hand edit in NewStore
    run("drift", "drift", "--format", "json")
    run("dump", "dump", "lab")
print(json.dumps(out))
"""


def _copy_with_setting(tmp_path: Path) -> Path:
    """The package and its schemas, copied, with the throwaway setting added as documented."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "reconciler", src / "reconciler", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "schemas", src / "schemas")
    settings = src / "reconciler/newstore/settings"
    # 1. The module.
    (settings / f"{KEY}.py").write_text(MODULE)
    # 2. One line in REGISTRY (and its import).
    registry = settings / "__init__.py"
    text = registry.read_text()
    head, sep, tail = text.partition("REGISTRY: tuple[Setting, ...] = (\n")
    body, close, rest = tail.partition(")\n")
    assert sep and close, "REGISTRY is no longer a tuple literal: update this test and the docs"
    registry.write_text(head + IMPORT + sep + body + REGISTRY_LINE + close + rest)
    # 3. One sandbox table entry.
    table = src / "reconciler/sandbox/endpoints.py"
    text = table.read_text()
    head, sep, tail = text.partition("ENDPOINTS: tuple[Endpoint, ...] = (\n")
    body, close, rest = tail.partition("\n)\n")
    assert sep and close, "ENDPOINTS is no longer a tuple literal: update this test and the docs"
    table.write_text(head + sep + body + "\n" + ENTRY.rstrip("\n") + close + rest)
    return src


def _python(src: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_a_flag_added_as_documented_goes_through_plan_apply_drift_and_dump(
    tmp_path: Path,
) -> None:
    src = _copy_with_setting(tmp_path)
    schemas = src / "schemas"
    # 4. The generated schemas: stale until written, then up to date.
    stale = _python(src, "-m", "reconciler", "schema", "--check", "--dir", str(schemas), cwd=src)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "differ from the schemas the settings generate" in stale.stderr, stale.stderr
    written = _python(src, "-m", "reconciler", "schema", "--write", "--dir", str(schemas), cwd=src)
    assert written.returncode == 0, written.stderr
    environment = json.loads((schemas / "environment.schema.json").read_text())
    assert KEY in environment["properties"]
    drift_schema = json.loads((schemas / "drift.schema.json").read_text())

    config = SandboxConfig()
    work = tmp_path / "work"
    work.mkdir()
    ran = _python(
        src,
        "-c",
        textwrap.dedent(DRIVER),
        KEY,
        "lab",
        config.client_id,
        config.client_secret,
        str(work),
        cwd=work,
    )
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout.splitlines()[-1])

    assert out["validate"]["exit"] == 0, out["validate"]["output"]
    plan = json.loads(out["plan"]["output"])
    (environment_plan,) = plan["environments"]
    assert [(s["setting"], s["action"]) for s in environment_plan["steps"]] == [(KEY, "update")]
    assert environment_plan["steps"][0]["changes"] == [
        {"path": f"{KEY}.enabled", "from": False, "to": True}
    ]
    assert out["apply"]["exit"] == 0, out["apply"]["output"]
    assert out["state_after_apply"] is True
    assert out["drift_in_sync"]["exit"] == 0, out["drift_in_sync"]["output"]
    assert json.loads(out["drift_in_sync"]["output"])["status"] == "in_sync"

    assert out["drift"]["exit"] == 2, out["drift"]["output"]
    report = json.loads(out["drift"]["output"])
    (drifted,) = report["environments"][0]["settings"]
    assert drifted["setting"] == KEY
    # The drift report validates against the schema regenerated with the new setting.
    from jsonschema import Draft202012Validator

    assert not list(Draft202012Validator(drift_schema).iter_errors(report))

    assert out["dump"]["exit"] == 0, out["dump"]["output"]
    assert f"{KEY}:\n  enabled: false\n" in out["dump"]["output"]
