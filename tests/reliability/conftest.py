"""Print the reliability suites' counts at the end of the session (see `summary`), and write
them to a file only when asked: `RELIABILITY_SUMMARY=PATH` (what `make reliability` sets). A
plain `make test` writes nothing outside pytest's temporary directories."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reliability.summary import COUNTS, SCALE


def _summary_path() -> Path | None:
    target = os.environ.get("RELIABILITY_SUMMARY")
    return Path(target) if target else None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = _summary_path()
    if not COUNTS or path is None:
        return
    path = session.config.rootpath / path
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
    path = _summary_path()
    if path is not None:
        terminalreporter.write_line(f"written to {path}")
