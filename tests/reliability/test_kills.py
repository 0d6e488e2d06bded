"""Kills: SIGKILL `reconciler apply` (a real subprocess) at seeded points, then look at what
it left behind.

Most kills are placed by progress, not by the clock: the sandbox counts each tenant's requests
as they arrive, and the test kills the process once its tenant's N-th request (N seeded) has
arrived, plus a seeded 0-20 ms. That lands kills while a write is in flight (its intent is in
the journal, the sandbox will still commit it) as well as between an answer and the journal
line that records it. The rest are placed by the clock, which also catches start-up and
planning. Several kills run at once, each on its own tenant of one live sandbox.

After each kill: every state the tenant went through breaks no rule that the state before it
did not; the journal's last line agrees with the history (a result matching the last write,
or an intent whose write is the last one or absent); and a rerun converges from whatever the
live state is.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import ORDER_WEBHOOK_API_KEY, check_killed_journal, wait_settled

from reconciler.config import load_environment
from reconciler.core.apply import apply_run
from reconciler.core.journal import Journal
from reconciler.core.plan import Status, build_plan, plan_environments
from reconciler.rules import violations
from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.values import state_to_values
from reliability.scenarios import (
    API_KEY_VAR,
    CLIENT_SECRET_VAR,
    ORDER_API_KEY_VAR,
    added_violations,
    scenario,
    seed_live,
)
from reliability.summary import SCALE, count

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RUNS = 120 * SCALE
LATENCY_MS = 15  # per request: an apply takes ~0.5 s, a write is in flight for 15 ms
AT_ONCE = 6
ENVIRON = {
    CLIENT_SECRET_VAR: "sandbox-secret",
    API_KEY_VAR: DEFAULT_WEBHOOK_API_KEY,
    ORDER_API_KEY_VAR: ORDER_WEBHOOK_API_KEY,
}


@dataclass
class Arrivals:
    """Requests that have arrived, per tenant (counted before the sandbox handles them)."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, tenant: str) -> int:
        with self.lock:
            return self.counts[tenant]


def _tenant_of(path: str) -> str:
    parts = path.split("/")
    if path.startswith("/auth/realms/") and len(parts) > 3:
        return parts[3]
    return parts[1] if len(parts) > 1 else ""


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SandboxApp, str, Arrivals]]:
    app = SandboxApp(SandboxConfig(latency_ms=LATENCY_MS))
    arrivals = Arrivals()

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        with arrivals.lock:
            arrivals.counts[_tenant_of(environ.get("PATH_INFO", ""))] += 1
        return app(environ, start_response)

    with running(wsgi) as base:  # type: ignore[arg-type]
        yield app, base, arrivals


@dataclass(frozen=True)
class Outcome:
    seed: int
    trigger: str
    journal: str  # which case of the journal check held
    writes_before_kill: int
    violations: list[str]
    ended_broken: bool
    finished_before_kill: bool
    rerun: str


def _kill(seed: int, root: Path, app: SandboxApp, base: str, arrivals: Arrivals) -> Outcome:
    rng = random.Random(20_000 + seed)
    case = scenario(seed)
    tenant = f"kill-{seed}"
    directory = root / tenant
    (directory / "environments").mkdir(parents=True)
    env_file = directory / "environments" / f"{tenant}.yaml"
    env_file.write_text(case.yaml(tenant, base))
    seed_live(app, tenant, case.live, f"{base}{WEBHOOK_PATH}")
    start = app.state(tenant)
    journal = directory / "killed.jsonl"
    env = load_environment(env_file, environ=ENVIRON)
    live = state_to_values(start)
    steps = len(build_plan(env, {key: live[key] for key in env.desired}).steps)

    by_progress = rng.random() < 0.75
    command = [
        *(sys.executable, "-m", "reconciler", "--environments-dir"),
        *(str(directory / "environments"), "apply", "--auto-approve", "--journal", str(journal)),
    ]
    errors = directory / "stderr.txt"
    with errors.open("w") as stderr:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **ENVIRON},
            cwd=directory,
        )
        try:
            if by_progress:
                # ~5 requests to plan, ~5 per step, ~5 to check convergence.
                target = rng.randint(1, 10 + 5 * steps)
                while proc.poll() is None and arrivals.of(tenant) < target:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0, 0.02))
                trigger = "after the N-th request arrived"
            else:
                time.sleep(rng.uniform(0.05, 0.9))
                trigger = "at a random time"
            finished = proc.poll() is not None
            proc.kill()
        finally:
            proc.wait()
    if finished:  # it beat the kill: then it must have succeeded
        assert proc.returncode == 0, errors.read_text()
    wait_settled(app, tenant, LATENCY_MS)
    case_held = check_killed_journal(journal, app, tenant)
    writes_before = len(app.history(tenant))

    # The rerun: the same environment file, planned and applied from the live state.
    run = plan_environments([env])
    (plan,) = run.environments
    assert plan.status in (Status.CHANGES, Status.CONVERGED), (seed, plan.status, plan.error)
    rerun = "nothing left to do"
    if plan.status is Status.CHANGES:
        with Journal(directory / "rerun.jsonl") as rerun_journal:
            apply_run([env], run, rerun_journal)  # raises unless it converged
        rerun = "applied the rest, converged"
    history = app.history(tenant)
    end = state_to_values(history[-1]["state_after"] if history else start)
    return Outcome(
        seed,
        trigger,
        case_held,
        writes_before,
        added_violations(history, start),
        bool(violations(end)),
        finished,
        rerun,
    )


def test_kills(server: tuple[SandboxApp, str, Arrivals], tmp_path: Path) -> None:
    app, base, arrivals = server
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        outcomes = list(
            pool.map(lambda seed: _kill(seed, tmp_path, app, base, arrivals), range(RUNS))
        )

    count("kills", "runs (SIGKILL of a real apply process)", len(outcomes))
    for trigger, n in Counter(o.trigger for o in outcomes).items():
        count("kills", f"killed {trigger}", n)
    killed = [o for o in outcomes if not o.finished_before_kill]
    count("kills", "apply had already finished when the kill came", len(outcomes) - len(killed))
    for case_held, n in Counter(o.journal for o in killed).items():
        count("kills", f"journal: {case_held}", n)
    count("kills", "killed after at least one write", sum(o.writes_before_kill > 0 for o in killed))
    for rerun, n in Counter(o.rerun for o in outcomes).items():
        count("kills", f"rerun: {rerun}", n)
    count("kills", "writes that broke a safety rule", sum(len(o.violations) for o in outcomes))

    assert [o.violations for o in outcomes if o.violations] == []
    assert [o.seed for o in outcomes if o.ended_broken] == []
    mid = [o for o in killed if o.journal.startswith("last line an intent")]
    assert mid, "some kills landed between an intent and its result"
