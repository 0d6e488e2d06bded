"""The README's install commands, run as written: from a checkout (`python -m pip install .`)
and from a git URL pinned to a tag (`pip install "newstore-reconciler @ git+URL@TAG"`, what
requirements.txt of `reconciler init` and the CI recipes use), into a fresh virtualenv; then
the installed tool starts a configuration repository with `reconciler init`.

Dependencies come from the package index (pip's cache keeps repeats quick); the build backend
too, as for any user, unless it is already cached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from reconciler import __version__

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "docs" / "install.md").read_text()
pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _checkout(tmp_path: Path) -> Path:
    """A copy of this checkout's project files (not its .venv or caches), as a clone has."""
    copy = tmp_path / "newstore-reconciler"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "*cache*", ".hypothesis", "dist", "build", "__pycache__", ".reconciler"
    )
    shutil.copytree(ROOT, copy, ignore=ignore)
    return copy


def test_readme_install_commands_work(tmp_path: Path) -> None:
    assert "python -m pip install ." in README
    assert 'python -m pip install "newstore-reconciler @ git+' in README
    checkout = _checkout(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # A fresh virtualenv's bundled pip can be old; an older pip refuses `git+file:///` URLs.
    _run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip", cwd=tmp_path, env=env)
    # From a checkout, exactly as the README says (cwd: the checkout).
    _run(python, "-m", "pip", "install", "--quiet", ".", cwd=checkout, env=env)
    reconciler = env_dir / "bin" / "reconciler"
    assert _run(reconciler, "--version", cwd=tmp_path, env=env) == (
        f"reconciler, version {__version__}\n"
    )

    # From a git URL pinned to a tag: a repository with a tag, as the one you host it in.
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    _run(*git, "init", "--quiet", checkout, cwd=tmp_path, env=env)
    _run(*git, "add", "--all", cwd=checkout, env=env)
    _run(*git, "commit", "--quiet", "-m", "release", cwd=checkout, env=env)
    _run(*git, "tag", f"v{__version__}", cwd=checkout, env=env)
    requirement = f"newstore-reconciler @ git+file://{checkout}@v{__version__}"
    _run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--force-reinstall",
        "--no-deps",
        requirement,
        cwd=tmp_path,
        env=env,
    )
    where = _run(python, "-c", "import reconciler; print(reconciler.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(env_dir)

    # The installed tool starts a configuration repository that validates without secrets.
    repo = tmp_path / "config"
    clean = {k: v for k, v in env.items() if not k.startswith("NEWSTORE_")}
    _run(
        reconciler,
        "init",
        repo,
        "--ci",
        "gitlab",
        "--source",
        f"file://{checkout}@v{__version__}",
        cwd=tmp_path,
        env=clean,
    )
    assert f"git+file://{checkout}@v{__version__}" in (repo / "requirements.txt").read_text()
    out = _run(reconciler, "validate", "--allow-missing-secrets", cwd=repo, env=clean)
    assert out == "1 environment valid: staging\n"
    # requirements.txt as init wrote it installs (the reconciler already there: no download).
    _run(python, "-m", "pip", "install", "--quiet", "-r", "requirements.txt", cwd=repo, env=env)
