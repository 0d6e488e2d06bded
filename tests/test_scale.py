"""Many environments in one run: request counts at the sandbox, a shared 429 pause, progress."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from env_helpers import OFF_YAML, WriteEnv, run_cli

from reconciler.newstore.settings import REGISTRY
from reconciler.render.run_progress import progress
from reconciler.sandbox import SandboxApp, SandboxConfig

ATP_PATH = "/v0/config/routing/uses_external_atp"


def write_many(write_env: WriteEnv, base: str, count: int) -> tuple[Path, list[str]]:
    tenants = [f"scale-{i:02d}" for i in range(count)]
    for tenant in tenants:
        directory = write_env(tenant, tenant, base, OFF_YAML).parent
    return directory, tenants


def request_counts(sandbox: SandboxApp, tenant: str) -> Counter[tuple[str, str]]:
    """(method, path without the tenant prefix) → how many times; the token path as "token"."""
    counts: Counter[tuple[str, str]] = Counter()
    for request in sandbox.requests(tenant):
        path = request["path"]
        counts[
            request["method"], "token" if path.endswith("/token") else path.split(tenant, 1)[1]
        ] += 1
    return counts


# One GET of each setting OFF_YAML manages (the others, e.g. the external order webhook, are
# never read), and one token.
ONE_OF_EACH = Counter(
    {
        ("POST", "token"): 1,
        **{("GET", s.path): 1 for s in REGISTRY if s.key in yaml.safe_load(OFF_YAML)},
    }
)


def test_fifty_environments_one_token_and_one_get_per_setting_each(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    directory, tenants = write_many(write_env, base, 50)

    result = run_cli(directory, "drift", "--format", "json")

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # progress never leaks into stdout
    assert doc["summary"]["in_sync"] == 50
    for tenant in tenants:
        assert request_counts(sandbox, tenant) == ONE_OF_EACH, tenant
    assert result.stderr.splitlines() == [f"checked {n}/50" for n in range(5, 51, 5)]


def test_plan_reports_progress_on_stderr_only(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    _, base = live_sandbox
    directory, _ = write_many(write_env, base, 12)

    many = run_cli(directory, "plan")
    few = run_cli(directory, "plan", "scale-00", "scale-01", "scale-02", "scale-03")

    assert many.exit_code == 0, many.output
    assert many.stdout.rstrip().endswith("Plan: 12 environments, 0 changes, 0 blocked, 0 errors")
    assert "planned" not in many.stdout
    assert many.stderr.splitlines()[-1] == "planned 12/12"
    assert few.exit_code == 0, few.output
    assert few.stderr == "", "fewer than 5 environments: no progress"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(latency_ms=20)], indirect=True)
def test_a_burst_of_429s_pauses_every_environment_on_the_host_instead_of_failing_them(
    live_sandbox: tuple[SandboxApp, str],
    write_env: WriteEnv,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox, base = live_sandbox
    directory, tenants = write_many(write_env, base, 30)
    # Two 429s, on average, for each of the first ten tenants' external ATP read.
    sandbox.set_faults(
        [
            {
                "method": "GET",
                "path": f"/scale-0?{ATP_PATH}",
                "status": 429,
                "times": 20,
                "retry_after": 1,
            }
        ]
    )
    caplog.set_level(logging.INFO, logger="reconciler.http")

    result = run_cli(directory, "drift")

    assert result.exit_code == 0, result.output
    assert "Drift: 30 environments: 30 in sync" in result.stdout
    assert sandbox.faults() == [], "every scripted 429 was served"
    throttled = {t for t in tenants if any(r["status"] == 429 for r in sandbox.requests(t))}
    assert throttled and throttled <= {f"scale-0{i}" for i in range(10)}
    paused = {
        tenant
        for record in caplog.records
        if "host paused after a 429" in record.getMessage()
        for tenant in tenants
        if f"/{tenant}/" in record.getMessage()
    }
    assert paused - throttled, "tenants that never got a 429 waited too: the pause is shared"
    for tenant in tenants:
        counts = request_counts(sandbox, tenant)
        assert counts["POST", "token"] == 1, f"{tenant}: a retry reuses the token"


def test_progress_is_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress(6, "checked") as done:
        for _ in range(6):
            done(None)

    shown = terminal.getvalue()
    assert "Checked" in shown and "6/6" in shown
