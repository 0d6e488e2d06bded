"""The wheel is the product: build it, install it in a clean virtualenv, run it elsewhere.

Running outside the repository proves the installed tool finds its schemas and the sandbox's
vendored specs inside the wheel. Installing resolves the dependencies from the package index
(pip's cache keeps repeats quick).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from reconciler import __version__

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_wheel_installs_and_runs_on_its_own(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(
        sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, ROOT, cwd=ROOT
    )
    (wheel,) = dist.glob("*.whl")
    assert wheel.name == f"newstore_reconciler-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {
        *(f"reconciler/schemas/{p.name}" for p in (ROOT / "schemas").glob("*.json")),
        *(
            f"reconciler/sandbox/specs/{p.name}"
            for p in (ROOT / "reconciler/sandbox/specs").glob("*.yaml")
        ),
        "reconciler/py.typed",
        # The drift dashboard's template (issue 22), read through Jinja2's PackageLoader.
        "reconciler/render/templates/dashboard.html.j2",
    }
    assert {
        "reconciler/schemas/environment.schema.json",
        "reconciler/schemas/plan.schema.json",
    } <= shipped
    assert shipped <= names
    assert not [n for n in names if n.startswith(("tests/", "environments/", "examples/"))]

    # A clean virtualenv: nothing from this one, so every dependency must be declared.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    _run(
        bin_dir / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        wheel,
        cwd=tmp_path,
    )

    # Elsewhere, with a copy of the example environments and no credentials at all.
    config_repo = tmp_path / "config-repo"
    shutil.copytree(ROOT / "environments", config_repo / "environments")
    names_used = re.findall(
        r"\$\{(\w+)\}", "".join(p.read_text() for p in (ROOT / "environments").glob("*.yaml"))
    )
    clean = {k: v for k, v in os.environ.items() if k not in names_used and k != "PYTHONPATH"}

    reconciler = bin_dir / "reconciler"
    assert _run(reconciler, "--version", cwd=config_repo, env=clean) == (
        f"reconciler, version {__version__}\n"
    )
    out = _run(reconciler, "validate", "--allow-missing-secrets", cwd=config_repo, env=clean)
    count = len([p for p in (ROOT / "environments").glob("*.yaml") if not p.name.startswith("_")])
    assert out.startswith(f"{count} environments valid")

    # The schema and the sandbox's vendored specs load from inside the virtualenv.
    where = _run(
        bin_dir / "python",
        "-c",
        "from reconciler.resources import schema_path\n"
        "from reconciler.sandbox import validate\n"
        "assert validate.check_associate_app({}), 'an empty document must fail the spec'\n"
        "print(schema_path('environment.schema.json'))\n"
        "print(validate.SPECS_DIR)\n",
        cwd=config_repo,
        env=clean,
    )
    lines = where.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert Path(line).is_relative_to(env_dir), line

    # The dashboard's template and the metrics' client come with the wheel and its
    # dependencies: a report of one unreadable environment renders to HTML and metrics.
    rendered = _run(
        bin_dir / "python",
        "-c",
        "import reconciler.render.dashboard as d, reconciler.render.metrics as m\n"
        "from reconciler.core.drift import DriftReport, drift_of\n"
        "from reconciler.core.plan import EnvPlan, Status\n"
        "report = DriftReport([drift_of(EnvPlan('acme', 'acme', Status.ERROR, error='x'))])\n"
        "print(d.__file__)\n"
        "print('<title>' in d.render_dashboard(report), 'environment_status' in "
        "m.render_metrics(report))\n",
        cwd=config_repo,
        env=clean,
    )
    module, verdict = rendered.splitlines()
    assert Path(module).is_relative_to(env_dir), module
    assert verdict == "True True"
