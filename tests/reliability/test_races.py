"""Races: two applies on one tenant at once, and someone changing a setting between plan and
apply (for `apply`, and for `apply --plan`).

Two applies at once from one machine: the per-tenant lock refuses the loser before it reads
anything (or, when their runs did not overlap, the later one plans from the earlier one's
result), so no write can land between the other's re-read and write: no write breaks a rule,
whatever the two want. The same races with `--no-lock` keep apply's own defence tested: the
loser stops with a clear "changed underneath" (or finds the work already done and skips it),
and a write that lands right after the other run broke its rule is undone by the next write.
No write may ever break a safety rule that the state before it did not break; and a rerun
converges. An out-of-band change made between a plan's read and apply's re-read is placed
exactly: a fault rule passes the plan's GET of the setting through and holds the next GET of it
for 400 ms, and the test changes the setting while that GET is held.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import OFF, ON, ORDER_WEBHOOK_API_KEY, writes
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.core.journal import read_journal
from reconciler.model import ABSENT, Value
from reconciler.newstore.settings import BY_KEY
from reconciler.rules import violations
from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.values import state_to_values
from reliability.scenarios import (
    API_KEY_VAR,
    CLIENT_SECRET_VAR,
    OLD_HOOK,
    ORDER_API_KEY_VAR,
    Scenario,
    scenario,
    seed_live,
    unrepaired_breaks,
)
from reliability.summary import SCALE, count

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

LATENCY_MS = 10
ENVIRON = {
    CLIENT_SECRET_VAR: "sandbox-secret",
    API_KEY_VAR: DEFAULT_WEBHOOK_API_KEY,
    ORDER_API_KEY_VAR: ORDER_WEBHOOK_API_KEY,
}
SAME_SEEDS = range(16 * SCALE)
CONFLICT_SEEDS = range(12 * SCALE)
HELD_MS = 400


@dataclass
class Server:
    app: SandboxApp
    base: str
    root: Path

    def directory(self, name: str, case: Scenario, tenant: str) -> Path:
        directory = self.root / name / "environments"
        directory.mkdir(parents=True)
        (directory / f"{tenant}.yaml").write_text(case.yaml(tenant, self.base))
        return directory

    def seed(self, tenant: str, live: dict[str, Value | None]) -> dict[str, Any]:
        seed_live(self.app, tenant, live, f"{self.base}{WEBHOOK_PATH}")
        return self.app.state(tenant)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = SandboxApp(SandboxConfig(latency_ms=LATENCY_MS))
    with running(app) as base:
        yield Server(app, base, tmp_path_factory.mktemp("races"))


def _start(directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--environments-dir", str(directory), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENVIRON},
        cwd=directory.parent,
    )


def _violations_after(history: list[dict[str, Any]], states: list[tuple[int, Any]]) -> list[str]:
    """Writes that broke a rule the state right before them did not break. `states` are the
    known states between writes: (number of history entries before it, state), in order; an
    out-of-band change is such a point, so it is not blamed on the next write."""
    known = dict(states)
    found = []
    state = state_to_values(known[0])
    for index, entry in enumerate(history):
        if index in known:
            state = state_to_values(known[index])
        after = state_to_values(entry["state_after"])
        added = [r for r in violations(after) if r not in violations(state)]
        if added:
            found.append(f"write {entry['seq']} {entry['method']} {entry['path']} broke {added}")
        state = after
    return found


@pytest.fixture(autouse=True)
def _secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set once per test, in the main thread: `_converges` runs in worker threads, where
    CliRunner's `env=` (set on entry, restored on exit, process-wide) would race and could
    leave a variable behind in os.environ for later tests."""
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)


def _converges(directory: Path) -> Result:
    journal = directory.parent / f"journal-{uuid.uuid4().hex}.jsonl"  # never the checkout's
    result = CliRunner().invoke(
        cli,
        [
            "--environments-dir",
            str(directory),
            "apply",
            "--auto-approve",
            "--journal",
            str(journal),
        ],
    )
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(
        cli, ["--environments-dir", str(directory), "plan", "--detailed-exitcode"]
    )
    assert again.exit_code == 0, again.output
    return result


# --- two applies at once ---------------------------------------------------------------------

LOCKED = "refused: the other run holds the tenant's lock"
NOTHING_TO_DO = "found nothing to do"
LOCKING = [True, False]
LOCK_IDS = ["locked", "no-lock"]


def _locked(err: str) -> bool:
    """Refused by the lock, before reading anything: one `Error:` line naming the holder."""
    if "is applying tenant" not in err:
        return False
    assert err.startswith("Error: another `reconciler apply` (pid "), err
    assert "from this machine; nothing was written." in err and err.count("\n") == 1, err
    return True


def _outcome(proc: subprocess.Popen[str], journal: Path) -> str:
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    if proc.returncode == 0:
        if "Nothing to do" in out:
            return NOTHING_TO_DO
        return "skipped work already done" if "already done" in out else "applied"
    assert proc.returncode == 1, out + err
    if _locked(err):
        assert not journal.exists(), "a refused run writes nothing, not even its journal"
        return LOCKED
    assert "changed underneath" in err, out + err
    assert "Another apply or a hand edit changed it since it was read" in err
    return "stopped: changed underneath"


def _apply_args(lock: bool, journal: str) -> list[str]:
    return ["apply", "--auto-approve", "--journal", journal, *([] if lock else ["--no-lock"])]


def _same(server: Server, seed: int, lock: bool) -> list[str]:
    rng = random.Random(30_000 + seed)
    case = scenario(seed)
    tenant = f"same-{seed}" if lock else f"same-nolock-{seed}"
    start = server.seed(tenant, case.live)
    directory = server.directory(tenant, case, tenant)
    first = _start(directory, *_apply_args(lock, "a.jsonl"))
    time.sleep(rng.uniform(0, 0.05))
    second = _start(directory, *_apply_args(lock, "b.jsonl"))
    outcomes = [
        _outcome(first, directory.parent / "a.jsonl"),
        _outcome(second, directory.parent / "b.jsonl"),
    ]
    if lock:
        # One ran alone; the other was refused, or ran once the first had finished.
        assert sorted(outcomes) in (
            sorted(["applied", LOCKED]),
            sorted(["applied", NOTHING_TO_DO]),
            [NOTHING_TO_DO, NOTHING_TO_DO],  # the seed's live state is already the target
            sorted([NOTHING_TO_DO, LOCKED]),
        ), outcomes
    else:
        assert LOCKED not in outcomes
    assert _violations_after(server.app.history(tenant), [(0, start)]) == []
    _converges(directory)
    return outcomes


@pytest.mark.parametrize("lock", LOCKING, ids=LOCK_IDS)
def test_two_applies_of_one_environment_at_once(server: Server, lock: bool) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda seed: _same(server, seed, lock), SAME_SEEDS))
    what = "same environment" if lock else "same environment, --no-lock"
    count("races", f"{what} applied twice at once (pairs)", len(results))
    outcomes = Counter(o for pair in results for o in pair)
    for outcome, n in outcomes.items():
        count("races", f"{what}: {outcome}", n)
    if lock:
        assert outcomes[LOCKED] > 0, "the runs overlapped, so the lock must have refused some"


def _conflict(server: Server, seed: int, lock: bool) -> list[str]:
    """Two checkouts at once: one turns the external OMS on, the other goes back.

    With the lock (both checkouts on one machine), the runs cannot interleave: no write may
    break a rule. Without it (`--no-lock`, or two machines), NewStore has no locks or ETags, so
    a write can land between the other run's re-read of a rule partner and its own write. What
    must hold then (issue 20): the run whose write broke a rule undoes it with its very next
    write (unless the other run's write repaired it first), and a rerun converges."""
    rng = random.Random(40_000 + seed)
    tenant = f"conflict-{seed}" if lock else f"conflict-nolock-{seed}"
    forward = scenario(3 * seed)
    back = scenario(3 * seed + 1)
    start = server.seed(tenant, rng.choice([forward.live, back.live]))
    one = server.directory(f"{tenant}-forward", forward, tenant)
    other = server.directory(f"{tenant}-back", back, tenant)
    first = _start(one, *_apply_args(lock, "a.jsonl"))
    time.sleep(rng.uniform(0, 0.1))
    second = _start(other, *_apply_args(lock, "b.jsonl"))
    outcomes, errors = [], []
    for proc in (first, second):
        out, err = proc.communicate(timeout=60)
        errors.append(err)
        assert "Traceback" not in err, err
        if proc.returncode == 0:
            outcomes.append(NOTHING_TO_DO if "Nothing to do" in out else "applied")
        elif _locked(err):
            assert lock, err
            outcomes.append(LOCKED)
        elif "changed underneath" in err:
            outcomes.append("stopped: changed underneath")
        elif "did not converge: after every step succeeded" in err:
            outcomes.append("stopped: the other run changed it after the last step")
        elif "did not settle: wrote" in err:
            outcomes.append("stopped: the other run changed it right after this write")
        elif "a re-read found that someone else" in err:
            # Its write landed just after the other run's change broke a rule with it: undone
            # at once by its very next write.
            assert "at once" in err, err
            outcomes.append("stopped: undid its own write at once")
        else:
            # The other run moved a setting this one's next step depends on: its rule check,
            # right before the write, refused.
            assert proc.returncode == 1 and "stopped before writing it" in err, out + err
            outcomes.append("stopped: the write would have broken a rule")
    history = server.app.history(tenant)
    broken = _violations_after(history, [(0, start)])
    if lock:
        assert broken == [], "with the lock the runs cannot interleave"
        assert set(outcomes) <= {"applied", NOTHING_TO_DO, LOCKED}, outcomes
    else:
        # Without the lock a write can still land right after the other run's change: then
        # the run whose write it was undoes it with its very next write (issue 20).
        for journal in (one.parent / "a.jsonl", other.parent / "b.jsonl"):
            ids = (
                {e.get("request_id") for e in read_journal(journal)} if journal.exists() else set()
            )
            left, _ = unrepaired_breaks(history, start, {i for i in ids if i})
            assert left == [], (left, errors)
    if history and violations(state_to_values(history[-1]["state_after"])):
        # Left broken: a run whose last re-read saw it must have said so, loudly.
        assert any("WARNING: THE LIVE STATE, RE-READ JUST NOW, BREAKS" in e for e in errors)
    _converges(one)
    assert not violations(state_to_values(server.app.state(tenant))), "the rerun repaired it"
    return [
        *outcomes,
        *(["a write broke a rule (undone by that run's very next write)"] * len(broken)),
    ]


@pytest.mark.parametrize("lock", LOCKING, ids=LOCK_IDS)
def test_two_checkouts_that_disagree_at_once(server: Server, lock: bool) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda seed: _conflict(server, seed, lock), CONFLICT_SEEDS))
    what = "opposite migrations" if lock else "opposite migrations, --no-lock"
    count("races", f"{what} at once (pairs)", len(results))
    outcomes = Counter(o for pair in results for o in pair)
    for outcome, n in outcomes.items():
        count("races", f"{what}: {outcome}", n)
    if lock:
        assert outcomes[LOCKED] > 0, "the runs overlapped, so the lock must have refused some"


# --- an out-of-band change between plan and apply -----------------------------------------------

ROTATED: Value = {**ON["availability_webhook"], "api_key": "a-rotated-webhook-key-0987654321"}
# (name, start, desired, setting changed out of band, its new value, what apply then does)
CHANGES: list[tuple[str, dict[str, Value], dict[str, Value], str, Value, str]] = [
    ("forward: oms switched on by hand", OFF, ON, "external_oms", {"enabled": True}, "skipped"),
    ("forward: another webhook set", OFF, ON, "availability_webhook", OLD_HOOK, "changed"),
    ("back: webhook key rotated", ON, OFF, "availability_webhook", ROTATED, "changed"),
    ("back: atp switched off by hand", ON, OFF, "external_atp", {"enabled": False}, "skipped"),
    ("back: new om ui off by hand", ON, OFF, "associate_app", {"use_new_om_ui": False}, "skipped"),
]


def _case(start: dict[str, Value], desired: dict[str, Value]) -> Scenario:
    hook = desired.get("availability_webhook", ABSENT)
    if isinstance(hook, dict):
        desired = {**desired, "availability_webhook": {**hook, "url": "(the sandbox's webhook)"}}
    live_hook = start.get("availability_webhook", ABSENT)
    if isinstance(live_hook, dict):
        start = {**start, "availability_webhook": {**live_hook, "url": "(the sandbox's webhook)"}}
    return Scenario(0, "race", dict(start), desired)


def _changed(server: Server, tenant: str, key: str, value: Value) -> Any:
    live = state_to_values(server.app.state(tenant))
    live[key] = value
    return server.seed(tenant, dict(live))


@pytest.mark.parametrize(
    ("name", "start", "desired", "key", "value", "expected"),
    CHANGES,
    ids=[c[0] for c in CHANGES],
)
def test_a_change_between_plan_and_apply(
    server: Server,
    name: str,
    start: dict[str, Value],
    desired: dict[str, Value],
    key: str,
    value: Value,
    expected: str,
) -> None:
    tenant = f"oob-{CHANGES.index(next(c for c in CHANGES if c[0] == name))}"
    case = _case(start, desired)
    before = server.seed(tenant, case.live)
    directory = server.directory(tenant, case, tenant)
    path = f"/{tenant}{BY_KEY[key].path}"
    app = server.app
    app.set_faults(
        [
            {"method": "GET", "path": path, "times": 1},  # the plan's read passes
            {"method": "GET", "path": path, "times": 1, "latency_ms": HELD_MS},  # apply's waits
        ]
    )
    changed: list[tuple[int, Any]] = []

    def change_while_held() -> None:
        while app.faults():  # a rule leaves the list when its last use begins
            time.sleep(0.002)
        changed.append((len(app.history(tenant)), _changed(server, tenant, key, value)))

    helper = threading.Thread(target=change_while_held)
    helper.start()
    journal = directory.parent / f"journal-{uuid.uuid4().hex}.jsonl"  # never the checkout's
    result = CliRunner().invoke(
        cli,
        [
            "--environments-dir",
            str(directory),
            "apply",
            "--auto-approve",
            "--journal",
            str(journal),
        ],
        env=ENVIRON,
    )
    helper.join()
    app.clear_faults()

    if expected == "skipped":
        assert result.exit_code == 0, result.output
        assert f"{key}: " in result.stdout and "already done" in result.stdout, result.stdout
    else:
        assert result.exit_code == 1, result.output
        assert f"{key} changed underneath: planned from" in result.stderr, result.stderr
        assert "nothing more was written" in result.stderr
        assert "The live state, re-read just now, satisfies every safety rule." in result.stderr
    assert _violations_after(app.history(tenant), [(0, before), *changed]) == []
    _converges(directory)
    count("races", f"out-of-band change during apply: {expected}")


@pytest.mark.parametrize(
    ("name", "start", "desired", "key", "value", "expected"),
    CHANGES,
    ids=[c[0] for c in CHANGES],
)
def test_a_change_between_plan_and_apply_plan(
    server: Server,
    tmp_path: Path,
    name: str,
    start: dict[str, Value],
    desired: dict[str, Value],
    key: str,
    value: Value,
    expected: str,
) -> None:
    tenant = f"oob-plan-{CHANGES.index(next(c for c in CHANGES if c[0] == name))}"
    case = _case(start, desired)
    server.seed(tenant, case.live)
    directory = server.directory(tenant, case, tenant)
    plan_file = tmp_path / "reviewed.json"
    runner = CliRunner()
    args = ["--environments-dir", str(directory)]
    planned = runner.invoke(cli, [*args, "plan", "--out", str(plan_file)], env=ENVIRON)
    assert planned.exit_code == 0, planned.output
    _changed(server, tenant, key, value)

    journal = tmp_path / "journal.jsonl"
    result = runner.invoke(
        cli,
        [*args, "apply", "--plan", str(plan_file), "--auto-approve", "--journal", str(journal)],
        env=ENVIRON,
    )

    assert result.exit_code == 1, result.output
    assert "is stale: the live state changed since the plan; nothing was applied" in result.stderr
    assert f"{tenant} {key}" in result.stderr, result.stderr
    assert writes(server.app, tenant) == []
    _converges(directory)
    count("races", "out-of-band change before apply --plan: refused as stale")
