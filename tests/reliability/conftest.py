"""Write the reliability suites' counts at the end of the session (see `summary`)."""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reliability.summary import COUNTS, SCALE

SUMMARY = Path(".reconciler") / "reliability" / "summary.json"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not COUNTS:
        return
    path = session.config.rootpath / SUMMARY
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pytest_exit_status": int(exitstatus),
        "scale": SCALE,
        "python": sys.version.split()[0],
        "machine": f"{platform.system()} {platform.machine()}",
        "counts": {suite: dict(sorted(c.items())) for suite, c in sorted(COUNTS.items())},
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    terminalreporter.section("reliability counts")
    for suite, found in sorted(COUNTS.items()):
        listed = ", ".join(f"{what}: {n}" for what, n in sorted(found.items()))
        terminalreporter.write_line(f"{suite}: {listed}")
    terminalreporter.write_line(f"written to {SUMMARY}")
