"""Headless Chromium from the distribution's packages, for the dashboard and diagram tests:
a screenshot, or the DOM after the page ran. Tests call `chromium()` first: it skips, with one
line, where the browser is missing (`.ci/run` installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Mermaid's browser bundle (`npm pack mermaid`), fetched by .ci/run and `make docs-images`.
MERMAID_JS = ROOT / ".cache" / "mermaid" / "mermaid.min.js"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    # Chromium writes a crash-report folder, a dconf cache and a certificate database under
    # $HOME and the XDG folders: all of them point into the test's own directory. (Not
    # TMPDIR: its singleton socket's path must stay short, and it removes it on exit.)
    home = profile.parent / "chromium-home"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_RUNTIME_DIR": str(home / "run"),
    }
    (home / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
    # The timeout only guards against a browser that hangs; the test asserts no duration.
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


def screenshot(
    page: Path, png: Path, work: Path, *, width: int = 1280, height: int = 900, budget_ms: int = 0
) -> None:
    """A screenshot of `page` (after its scripts ran for `budget_ms` of virtual time)."""
    browser = chromium()
    extra = ["--allow-file-access-from-files", f"--virtual-time-budget={budget_ms}"]
    done = _run(
        browser,
        work / "chromium-profile",
        f"--window-size={width},{height}",
        *(extra if budget_ms else []),
        f"--screenshot={png}",
        page.resolve().as_uri(),
    )
    assert png.is_file(), f"no screenshot (exit {done.returncode}):\n{done.stderr[-2000:]}"


def dump_dom(page: Path, work: Path, *, budget_ms: int = 0) -> str:
    """The page's DOM as the browser built it (after its scripts, within `budget_ms` of
    virtual time)."""
    browser = chromium()
    extra = [f"--virtual-time-budget={budget_ms}"] if budget_ms else []
    done = _run(
        browser,
        work / "chromium-profile",
        "--allow-file-access-from-files",
        *extra,
        "--dump-dom",
        page.resolve().as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
