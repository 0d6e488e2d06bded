"""The Python API (`reconciler.load/plan/apply/drift`): the README's example runs against a
sandbox on 127.0.0.1, and the API returns values and raises, never prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import reconciler
from reconciler.core.apply import StepFinished
from reconciler.core.plan import RunPlan, Status
from reconciler.errors import ApplyError, ValidationFailed
from reconciler.model import Environment
from reconciler.sandbox import SandboxApp
from tests.env_helpers import ON_YAML, WriteEnv

README = Path(__file__).parent.parent / "docs" / "python-api.md"


def _readme_example() -> str:
    text = README.read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    return str(code)


def test_readme_example_runs_against_the_sandbox(
    live_sandbox: tuple[SandboxApp, str],
    write_env: WriteEnv,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox, url = live_sandbox
    path = write_env("staging", "acme-staging", url, ON_YAML)
    monkeypatch.chdir(path.parent.parent)

    exec(compile(_readme_example(), str(README), "exec"), {})

    out = capsys.readouterr().out
    first, *_ = out.splitlines()
    assert first.startswith("staging changes ['update external_oms', 'create availability_webhook'")
    planned = first.count("'") // 2
    assert f"applied {planned} steps; journal journal/staging.jsonl" in out, out
    assert (path.parent.parent / "journal" / "staging.jsonl").is_file()
    state = sandbox.state("acme-staging")
    assert state["uses_external_atp"] is True


def test_the_api_returns_values_and_prints_nothing(
    live_sandbox: tuple[SandboxApp, str],
    write_env: WriteEnv,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from reconciler.newstore.client import NewStoreClient
    from reconciler.newstore.settings import SECRET_KEYS

    sandbox, url = live_sandbox
    # The client talks to the app in-process (the injected factory); the webhook probe goes
    # over 127.0.0.1.
    path = write_env("staging", "acme-staging", url, ON_YAML)

    def factory(env: Environment) -> NewStoreClient:
        return NewStoreClient(env, secret_keys=SECRET_KEYS, transport=sandbox.transport())

    tool = reconciler.Reconciler(path.parent, client_factory=factory)
    (env,) = tool.load()
    assert env.name == "staging"
    run = tool.plan()
    assert [p.status for p in run.environments] == [Status.CHANGES]
    asked = []

    def refuse(seen: RunPlan) -> bool:
        asked.append(seen)
        return False

    with pytest.raises(ApplyError, match="apply cancelled: nothing was written"):
        tool.apply(confirm=refuse, journal=tmp_path / "j")
    assert len(asked) == 1
    events: list[object] = []
    result = tool.apply(journal=tmp_path / "j", on_event=events.append)
    assert result.journal == tmp_path / "j"
    assert [r.status for r in result.results] == ["applied"]
    assert result.steps == sum(isinstance(e, StepFinished) for e in events) > 0
    again = tool.apply(journal=tmp_path / "k")
    assert again.journal is None and again.results == ()
    report = tool.drift()
    assert report.worst == "in_sync"
    assert capsys.readouterr() == ("", "")


def test_load_raises_the_problems(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("tenant: acme\nexternal_oms: {enabled: maybe}\n")
    with pytest.raises(ValidationFailed) as caught:
        reconciler.Reconciler(tmp_path).load()
    assert caught.value.exit_code == 1
    assert "bad.yaml:2" in str(caught.value)


def test_import_reconciler_does_not_load_the_api() -> None:
    code = (
        "import sys, reconciler; "
        "print('reconciler.api' in sys.modules, 'httpx' in sys.modules, "
        "callable(reconciler.Reconciler), 'reconciler.api' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False", "True", "True"]


def test_the_package_exports_the_api_functions() -> None:
    import reconciler
    from reconciler import api

    for name in ("load", "plan", "apply", "drift", "Reconciler", "ApplyResult"):
        assert name in reconciler.__all__
        assert getattr(reconciler, name) is getattr(api, name)
