"""Chaos: both migrations and random live/desired pairs against a sandbox that fails at random.

Each seeded run gets its own sandbox with a transient fault rate of 10-50 % (429/503, half of
them with Retry-After: 1), a little latency, scripted dropped connections *after* committed
writes (the client cannot know the write landed), and now and then a failing webhook probe. It
plans and applies through the real core (config loader, planner, apply, journal, HTTP client)
over the in-process transport. Every run must either converge or stop with the safe-state
report; no write may ever break a safety rule that the state before it did not break; and a
rerun on the same tenant state without faults must converge.

The runs overlap in threads: they mostly wait (backoff, Retry-After), which costs no CPU. A
smaller sample runs the real CLI as subprocesses against a chaotic sandbox on 127.0.0.1, to check
what a user sees: exit 0, or exit 1 with one error paragraph and the safe-state report.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import ORDER_WEBHOOK_API_KEY

from reconciler.config import load_environment
from reconciler.core.apply import ApplyOptions, apply_run
from reconciler.core.journal import Journal, read_journal
from reconciler.core.plan import Status, plan_environments
from reconciler.errors import ApplyError, BlockedError
from reconciler.model import Environment
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.settings import REGISTRY
from reconciler.render.stop_report import render_report
from reconciler.rules import violations as rule_violations
from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.values import state_to_values
from reliability.scenarios import (
    API_KEY_VAR,
    CLIENT_SECRET_VAR,
    ORDER_API_KEY_VAR,
    Scenario,
    added_violations,
    scenario,
    seed_live,
)
from reliability.summary import SCALE, count

pytestmark = pytest.mark.slow

RUNS = 240 * SCALE
BASE = "http://127.0.0.1:1"  # never resolved: the transport is in-process
ENVIRON = {
    CLIENT_SECRET_VAR: "sandbox-secret",
    API_KEY_VAR: DEFAULT_WEBHOOK_API_KEY,
    ORDER_API_KEY_VAR: ORDER_WEBHOOK_API_KEY,
}
# What the safe-state report says about a fresh read of the live state, by what it found.
SAFE_STATEMENTS = {
    "The live state, re-read just now, satisfies every safety rule.": "re-read: safe",
    "WARNING: could not re-read the live state to check the safety rules": "re-read failed",
    "WARNING: THE LIVE STATE, RE-READ JUST NOW, BREAKS": "re-read: a rule still broken",
    "WARNING: THE LIVE STATE, RE-READ JUST NOW, CANNOT BE CONFIRMED SAFE": "re-read: unprobed",
}
WRITES = [(s.path, m) for s in REGISTRY for m in ("POST", "PUT", "DELETE")]


def _factory(app: SandboxApp) -> Callable[[Environment], AbstractContextManager[NewStoreClient]]:
    def make(env: Environment) -> AbstractContextManager[NewStoreClient]:
        # Its own limiter: a 429's pause belongs to this run's sandbox, not to all of them.
        return NewStoreClient(env, transport=app.transport(), limiter=HostLimiter(), backoff=0.01)

    return make


def _faults(rng: random.Random, tenant: str) -> list[dict[str, Any]]:
    """Scripted on top of the random 429/503s: connections dropped after the write committed,
    after a read, and a probe that fails once."""
    rules: list[dict[str, Any]] = []
    for setting in REGISTRY:
        path = f"/{tenant}{setting.path}"
        if rng.random() < 0.35:
            method = rng.choice(["POST", "PUT", "DELETE"])
            rules.append({"method": method, "path": path, "drop_connection": True, "times": 2})
        if rng.random() < 0.1:
            rules.append({"method": "GET", "path": path, "drop_connection": True})
    if rng.random() < 0.08:
        rules.append({"method": "POST", "path": WEBHOOK_PATH, "status": 500})
    return rules


@dataclass(frozen=True)
class Outcome:
    seed: int
    kind: str
    first: str  # converged | stopped while planning | stopped with report (...) | blocked
    rerun: str  # converged | not needed
    faults: int  # 429/503 answers, from the request log
    violations: list[str]
    started_broken: bool  # the seeded live state broke a rule (a hand edit)
    ended_broken: bool


def _apply(env: Environment, app: SandboxApp, journal_path: Path) -> str:
    """Plan and apply one environment; how it ended. Raises AssertionError on a bad ending."""
    factory = _factory(app)
    run = plan_environments([env], client_factory=factory)
    (plan,) = run.environments
    if plan.status is Status.ERROR:
        assert plan.error, "a planning failure says why"
        return "stopped while planning"
    if plan.status is Status.CONVERGED:
        return "converged"
    with Journal(journal_path) as journal:
        try:
            options = ApplyOptions(client_factory=factory, probe_transport=app.transport())
            apply_run([env], run, journal, options)
        except (ApplyError, BlockedError) as exc:
            report = render_report(exc)
            if not report:
                assert isinstance(exc, BlockedError), exc
                return "blocked"
            assert "stopped at step" in report or "convergence check failed" in report, report
            said = [what for statement, what in SAFE_STATEMENTS.items() if statement in report]
            assert len(said) == 1, report
            return f"stopped with the safe-state report ({said[0]})"
    phases = [entry["phase"] for entry in read_journal(journal_path)]
    assert phases[-2:] == ["converged", "end"], phases
    return "converged"


def _one(seed: int, root: Path) -> Outcome:
    rng = random.Random(10_000 + seed)
    case: Scenario = scenario(seed)
    tenant = f"chaos-{seed}"
    directory = root / tenant
    directory.mkdir()
    env_file = directory / f"{tenant}.yaml"
    env_file.write_text(case.yaml(tenant, BASE))
    env = load_environment(env_file, environ=ENVIRON)

    app = SandboxApp(
        SandboxConfig(fault_rate=rng.uniform(0.1, 0.5), seed=seed, latency_ms=rng.choice([0, 1, 2]))
    )
    seed_live(app, tenant, case.live, f"{BASE}{WEBHOOK_PATH}")
    start = app.state(tenant)
    app.set_faults(_faults(rng, tenant))
    first = _apply(env, app, directory / "first.jsonl")
    history = app.history(tenant)
    violations = added_violations(history, start)
    faults = sum(1 for r in app.requests(tenant) if r["status"] in (429, 503))

    rerun = "not needed"
    if first != "converged":
        # The same tenant state on a sandbox without faults.
        calm = SandboxApp(SandboxConfig())
        calm.seed(tenant, app.state(tenant))
        rerun = _apply(env, calm, directory / "rerun.jsonl")
        violations += added_violations(calm.history(tenant), app.state(tenant))
        history += calm.history(tenant)
    end = state_to_values(history[-1]["state_after"]) if history else state_to_values(start)
    started_broken = bool(rule_violations(state_to_values(start)))
    ended_broken = bool(rule_violations(end))
    return Outcome(seed, case.kind, first, rerun, faults, violations, started_broken, ended_broken)


def test_chaos(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=120) as pool:
        outcomes = list(pool.map(lambda seed: _one(seed, tmp_path), range(RUNS)))

    tally = Counter(o.first for o in outcomes)
    count("chaos", "runs", len(outcomes))
    count("chaos", "forward migrations", sum(o.kind == "forward" for o in outcomes))
    count("chaos", "back migrations", sum(o.kind == "back" for o in outcomes))
    count("chaos", "random live/desired pairs", sum(o.kind == "random" for o in outcomes))
    count("chaos", "transient faults answered (429/503)", sum(o.faults for o in outcomes))
    for first, n in tally.items():
        count("chaos", f"first run: {first}", n)
    reruns = [o for o in outcomes if o.rerun != "not needed"]
    count("chaos", "reruns after a stop", len(reruns))
    count("chaos", "reruns converged", sum(o.rerun == "converged" for o in reruns))
    count("chaos", "writes that broke a safety rule", sum(len(o.violations) for o in outcomes))
    count(
        "chaos", "runs starting from a hand-broken state", sum(o.started_broken for o in outcomes)
    )
    count(
        "chaos", "runs ending in a state that breaks a rule", sum(o.ended_broken for o in outcomes)
    )

    assert [o.violations for o in outcomes if o.violations] == []
    assert [o.seed for o in outcomes if o.ended_broken] == [], "every run ends repaired"
    assert [(o.seed, o.rerun) for o in reruns if o.rerun != "converged"] == []
    stopped = sum(n for first, n in tally.items() if first.startswith("stopped with"))
    assert tally["converged"] and stopped, "the faults did bite, but not always"


CLI_RUNS = 12 * SCALE


def _cli(directory: Path, journal: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "--environments-dir",
            str(directory),
            "apply",
            "--auto-approve",
            "--journal",
            journal,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **ENVIRON},
        cwd=directory.parent,
        timeout=120,
    )


def _through_the_cli(
    seed: int, root: Path, chaotic: tuple[SandboxApp, str], calm: tuple[SandboxApp, str]
) -> str:
    case = scenario(seed)
    tenant = f"cli-chaos-{seed}"
    (app, base), (calm_app, calm_base) = chaotic, calm
    directories = {}
    for name, url in (("chaotic", base), ("calm", calm_base)):
        directories[name] = root / tenant / name / "environments"
        directories[name].mkdir(parents=True)
        retry = "retry:\n  attempts: 4" if name == "chaotic" else ""
        (directories[name] / f"{tenant}.yaml").write_text(case.yaml(tenant, url, retry=retry))
    seed_live(app, tenant, case.live, f"{base}{WEBHOOK_PATH}")
    start = app.state(tenant)

    first = _cli(directories["chaotic"], "first.jsonl")
    assert "Traceback" not in first.stderr, first.stderr
    violations = added_violations(app.history(tenant), start)
    assert violations == [], violations
    if first.returncode == 0:
        assert "Apply complete" in first.stdout or "Nothing to do" in first.stdout
        return "converged"
    assert first.returncode == 1, first.stdout + first.stderr
    assert first.stderr.startswith("Error: "), first.stderr
    planning = "stopped at step" not in first.stderr
    if not planning:
        assert any(s in first.stderr for s in SAFE_STATEMENTS), first.stderr
        assert "Running apply again continues from the live state" in first.stderr

    # The rerun, on the same tenant state without faults: the world after the storm.
    state = app.state(tenant)
    calm_app.seed(tenant, state)
    rerun = _cli(directories["calm"], "rerun.jsonl")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert added_violations(calm_app.history(tenant), state) == []
    return "stopped while planning" if planning else "stopped with the safe-state report"


def test_chaos_through_the_cli(tmp_path: Path) -> None:
    """A smaller sample through the real command line, to see what a user sees under chaos:
    exit 0, or exit 1 with the one error paragraph and the safe-state report."""
    chaotic = SandboxApp(SandboxConfig(fault_rate=0.4, seed=7, latency_ms=2))
    calm = SandboxApp(SandboxConfig())
    with (
        running(chaotic) as base,
        running(calm) as calm_base,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        outcomes = list(
            pool.map(
                lambda seed: _through_the_cli(seed, tmp_path, (chaotic, base), (calm, calm_base)),
                range(CLI_RUNS),
            )
        )
    count("chaos (CLI subprocesses)", "runs", len(outcomes))
    for outcome, n in Counter(outcomes).items():
        count("chaos (CLI subprocesses)", f"first run: {outcome}", n)
    count("chaos (CLI subprocesses)", "reruns converged", sum(o != "converged" for o in outcomes))
