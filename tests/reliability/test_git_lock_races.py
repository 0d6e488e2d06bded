"""Two CI runners applying opposite configurations of one tenant at once, kept apart only by the
git lock (`--lock git`).

Real git: a bare repository on disk is the configuration repository's remote (file://), and two
clones of it are the runners, each with a local lock directory of its own, as two machines
have: their local locks never meet. Runner A's commit migrates every tenant one way, runner B's
(a sibling commit, neither an ancestor of the other, so the older-commit check never refuses)
migrates it the other way. For each pair both applies start at once, the loser either refusing
at once (`--lock-timeout 0`) or waiting (`--lock-timeout 120`), drawn per runner from the pair's
seed. Judged on the sandbox's history: no write breaks a safety rule that the state before it
did not break (with the lock the runs cannot interleave, so not even a write that is undone at
once), every loser was refused naming the holder's lock id and runner or waited for it, no lock
is left in the remote, and a rerun converges.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import ORDER_WEBHOOK_API_KEY
from git_helpers import bare_remote, clone, commit_files, git, needs_git, remote_refs

from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reliability.scenarios import (
    API_KEY_VAR,
    CLIENT_SECRET_VAR,
    ORDER_API_KEY_VAR,
    scenario,
    seed_live,
)
from reliability.summary import SCALE, count
from reliability.test_races import _violations_after

pytestmark = [pytest.mark.slow, pytest.mark.e2e, needs_git]

PAIRS = range(50 * SCALE)
LATENCY_MS = 10
SECRETS = {
    CLIENT_SECRET_VAR: "sandbox-secret",
    API_KEY_VAR: DEFAULT_WEBHOOK_API_KEY,
    ORDER_API_KEY_VAR: ORDER_WEBHOOK_API_KEY,
}
LOCK_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
REFUSED = "refused, naming the holder"
WAITED = "waited for the holder"


@dataclass
class Runners:
    app: SandboxApp
    base: str
    remote: Path
    a: Path
    b: Path

    def env(self, runner: Path) -> dict[str, str]:
        return {
            **os.environ,
            **SECRETS,
            "RECONCILER_LOCK_DIR": str(runner.parent / f"locks-{runner.name}"),
            "GITHUB_ACTOR": runner.name,
        }


def _tenant(seed: int) -> str:
    return f"git-pair-{seed}"


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runners]:
    root = tmp_path_factory.mktemp("git-races")
    app = SandboxApp(SandboxConfig(latency_ms=LATENCY_MS))
    with running(app) as base:
        remote = bare_remote(root / "remote.git")
        seed = clone(remote.as_uri(), root / "seed")
        commit_files(seed, {"README.md": "config\n"}, "base")
        git(seed, "push", "--quiet", "origin", "HEAD:main")
        a, b = clone(remote.as_uri(), root / "runner-a"), clone(remote.as_uri(), root / "runner-b")
        for work, offset in ((a, 0), (b, 1)):
            (work.parent / f"locks-{work.name}").mkdir()
            files = {
                f"environments/{_tenant(s)}.yaml": scenario(3 * s + offset).yaml(_tenant(s), base)
                for s in PAIRS
            }
            commit_files(
                work, files, f"every tenant the {'forward' if offset == 0 else 'back'} way"
            )
        yield Runners(app, base, remote, a, b)


def _start(runners: Runners, runner: Path, tenant: str, timeout: int) -> subprocess.Popen[str]:
    command = [
        *(sys.executable, "-m", "reconciler", "--environments-dir", "environments", "apply"),
        *(tenant, "--auto-approve", "--lock", "git", "--lock-timeout", str(timeout)),
        *("--journal", str(runner.parent / f"journal-{tenant}-{runner.name}.jsonl")),
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=runner,
        env=runners.env(runner),
    )


def _outcome(proc: subprocess.Popen[str], other: str) -> str:
    out, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    if proc.returncode == 1:
        # The only way to lose: refused at once, before any read, naming who holds the lock.
        assert re.fullmatch(
            rf"Error: another `reconciler apply` \(lock id {LOCK_ID}, by {other} \(github\), "
            r"host .+ holds the git lock of tenant .+; nothing was written\. .+\n",
            err,
        ), err
        return REFUSED
    assert proc.returncode == 0, out + err
    if err.startswith("Waiting up to 120 s for another `reconciler apply` (lock id "):
        assert f"by {other} (github)" in err.splitlines()[0], err
        return WAITED
    return "nothing to do" if "Nothing to do" in out else "applied"


def _pair(runners: Runners, seed: int) -> list[str]:
    rng = random.Random(50_000 + seed)
    tenant = _tenant(seed)
    start = rng.choice([scenario(3 * seed), scenario(3 * seed + 1)]).live
    seed_live(runners.app, tenant, start, f"{runners.base}{WEBHOOK_PATH}")
    before: Any = runners.app.state(tenant)
    timeouts = [rng.choice([0, 120]), rng.choice([0, 120])]
    first = _start(runners, runners.a, tenant, timeouts[0])
    second = _start(runners, runners.b, tenant, timeouts[1])
    outcomes = [_outcome(first, "runner-b"), _outcome(second, "runner-a")]
    assert _violations_after(runners.app.history(tenant), [(0, before)]) == [], outcomes
    return outcomes


def test_opposite_applies_from_two_runners_at_once_never_interleave(runners: Runners) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda seed: _pair(runners, seed), PAIRS))

    outcomes = Counter(o for pair in results for o in pair)
    count("git lock", "opposite applies from two runners at once (pairs)", len(results))
    for outcome, n in outcomes.items():
        count("git lock", f"two runners: {outcome}", n)
    count("git lock", "two runners: rule-breaking writes", 0)  # each pair asserted it
    assert outcomes[REFUSED] + outcomes[WAITED] > 0, "the runs overlapped: some must have lost"
    assert not any(ref.startswith("refs/reconciler/locks/") for ref in remote_refs(runners.remote))
    # Whoever applied last left its commit recorded; both runners' commits are siblings, so a
    # rerun of either is no older: it converges to its own file.
    for seed in PAIRS[:5]:
        rerun = subprocess.run(
            [sys.executable, "-m", "reconciler", "--environments-dir", "environments", "apply",
             _tenant(seed), "--auto-approve", "--lock", "git", "--journal", "rerun.jsonl"],
            capture_output=True, text=True, cwd=runners.a, env=runners.env(runners.a), timeout=300,
        )  # fmt: skip
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
