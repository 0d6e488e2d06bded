"""SIGKILL apply at a seeded random moment, then run it again: the tenant is never left in a
state that breaks a safety rule, the rerun converges from whatever the live state is, and the
killed run's journal agrees with what the sandbox received."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import (
    OFF,
    ON,
    assert_no_write_adds_a_violation,
    check_killed_journal,
    seed,
    wait_settled,
)
from env_helpers import OFF_YAML, ON_YAML, STOCK_CONFIRMED_YAML

from reconciler.core.journal import read_journal
from reconciler.model import ABSENT
from reconciler.sandbox import SandboxApp, SandboxConfig, running

pytestmark = pytest.mark.slow

SEEDS = range(20)
LATENCY_MS = 10  # per request: the writes of one apply take about half a second
# Seconds after the run starts writing (its journal's "start" line): start-up and planning
# take longer than the writes and vary with load, so the delay is counted from there.
KILL_WINDOW = (0.0, 0.6)
BACK_YAML = OFF_YAML + STOCK_CONFIRMED_YAML
SCENARIOS: list[tuple[str, dict[str, Any], str]] = [
    ("forward", {}, ON_YAML),
    ("back", ON, BACK_YAML),
    (
        "repair",
        {**ON, "availability_webhook": ABSENT, "associate_app": OFF["associate_app"]},
        ON_YAML,
    ),
]


def _command(directory: Path, name: str, journal: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reconciler",
        "--environments-dir",
        str(directory),
        "apply",
        name,
        "--auto-approve",
        "--journal",
        str(journal),
    ]


def _started_writing(proc: subprocess.Popen[bytes], journal: Path) -> None:
    while proc.poll() is None and not (journal.exists() and read_journal(journal)):
        time.sleep(0.005)


def _one(app: SandboxApp, directory: Path, number: int) -> None:
    rng = random.Random(number)
    scenario, _, _ = SCENARIOS[number % len(SCENARIOS)]
    tenant = f"kill-{number}"
    before = app.state(tenant)
    killed_journal = directory.parent / f"killed-{number}.jsonl"

    proc = subprocess.Popen(
        _command(directory, tenant, killed_journal),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
        cwd=directory.parent,
    )
    _started_writing(proc, killed_journal)
    time.sleep(rng.uniform(*KILL_WINDOW))
    proc.kill()
    proc.wait()
    wait_settled(app, tenant, LATENCY_MS)
    check_killed_journal(killed_journal, app, tenant)

    rerun = subprocess.run(
        _command(directory, tenant, directory.parent / f"rerun-{number}.jsonl"),
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=directory.parent,
        timeout=120,
    )
    assert rerun.returncode == 0, f"seed {number} ({scenario}): {rerun.stdout}{rerun.stderr}"
    assert_no_write_adds_a_violation(app, tenant, before)


def test_a_killed_apply_is_safe_and_a_rerun_converges(write_env: Callable[..., Path]) -> None:
    app = SandboxApp(SandboxConfig(latency_ms=LATENCY_MS))
    with running(app) as base:
        directory = Path()
        for number in SEEDS:
            _, start, body = SCENARIOS[number % len(SCENARIOS)]
            seed(app, f"kill-{number}", start)
            directory = write_env(f"kill-{number}", f"kill-{number}", base, body).parent
        # Several at once, each on its own tenant: the sandbox serves them concurrently.
        with ThreadPoolExecutor(max_workers=4) as pool:
            for future in [pool.submit(_one, app, directory, n) for n in SEEDS]:
                future.result()
