"""Benchmark: `reconciler plan` over many environments against a slow sandbox (`make bench`).

Starts `python -m reconciler sandbox` with a fixed latency per request, writes N environment
files for N tenants on it, runs `python -m reconciler plan` once as a subprocess, then asks the
sandbox how many requests each tenant received. Prints the wall time against the latency-bound
lower limit, and the start-up time of `reconciler --help` and `reconciler validate`.

The lower limit: an environment costs one token request, then the four setting GETs, which
`read_live` sends concurrently; so its critical path is ROUND_TRIPS_PER_ENV round trips of the
sandbox's latency, and P environments are in flight at once:

    ideal = N × ROUND_TRIPS_PER_ENV × latency / P

Not a test: the figures depend on the machine. The target is 200 environments at 50 ms within
2× the ideal.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "environments"
ROUND_TRIPS_PER_ENV = 2  # the token, then the four GETs side by side
SETTING_PATHS = (
    "/v0/config/sales_order/external_oms",
    "/v0/config/availability/webhook",
    "/v0/config/routing/uses_external_atp",
    "/api/v1/associate-app/config",
)
ENV_FILE = """\
tenant: {tenant}
connection:
  base_url: {url}/{tenant}
  token_url: {url}/auth/realms/{tenant}/protocol/openid-connect/token
  client_id: sandbox
  client_secret: ${{BENCH_CLIENT_SECRET}}
external_oms:
  enabled: false
availability_webhook: absent
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
"""


def _default_parallelism() -> int:
    sys.path.insert(0, str(REPO))
    from reconciler.parallelism import DEFAULT_PARALLELISM

    return DEFAULT_PARALLELISM


def _start_sandbox(latency_ms: int) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "reconciler", "sandbox", "--port", "0"]
    command += ["--latency-ms", str(latency_ms)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on" in line:
            return process, line.split("listening on", 1)[1].strip()
    process.wait()
    raise SystemExit(f"the sandbox exited ({process.returncode}) before listening")


def _children_cpu() -> tuple[float, float]:
    """User and system CPU seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def _median_seconds(command: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _count_requests(url: str, tenants: list[str]) -> tuple[collections.Counter[int], int]:
    """Per-tenant counts of token requests and of GETs per setting path, as a histogram of
    "how many times" (ideally {1: ...} only), and the total number of requests."""
    histogram: collections.Counter[int] = collections.Counter()
    total = 0
    with httpx.Client(base_url=url) as http:
        for tenant in tenants:
            requests = http.get(f"/_sandbox/tenants/{tenant}/requests").json()
            total += len(requests)
            tokens = sum(r["method"] == "POST" and "/token" in r["path"] for r in requests)
            histogram[tokens] += 1
            for path in SETTING_PATHS:
                gets = sum(
                    r["method"] == "GET" and r["path"] == f"/{tenant}{path}" for r in requests
                )
                histogram[gets] += 1
    return histogram, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, default=200, help="environments (default 200)")
    parser.add_argument("--latency-ms", type=int, default=50, help="sandbox latency (default 50)")
    parser.add_argument("--parallelism", type=int, help="plan --parallelism (default: the CLI's)")
    parser.add_argument("--runs", type=int, default=5, help="start-up timing runs (default 5)")
    args = parser.parse_args()
    parallelism = args.parallelism or _default_parallelism()

    env = {**os.environ, "BENCH_CLIENT_SECRET": "sandbox-secret", "NO_COLOR": "1"}
    sandbox, url = _start_sandbox(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
            directory = Path(tmp)
            tenants = [f"bench-{i:04d}" for i in range(args.envs)]
            for tenant in tenants:
                (directory / f"{tenant}.yaml").write_text(ENV_FILE.format(tenant=tenant, url=url))
            command = [sys.executable, "-m", "reconciler", "--environments-dir", str(directory)]
            command += ["plan", "--parallelism", str(parallelism)]
            cpu_before = _children_cpu()
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
            wall = time.perf_counter() - started
            plan_user, plan_sys = (b - a for a, b in zip(cpu_before, _children_cpu(), strict=True))
            if result.returncode != 0:
                raise SystemExit(f"plan exited {result.returncode}:\n{result.stderr}")
            histogram, total = _count_requests(url, tenants)
            # The same process without the HTTP part: start-up, loading and validating the files.
            offline = [*command[:5], "validate"]
            load_s = _median_seconds(offline, args.runs, env)
    finally:
        sandbox.terminate()
        cpu_before = _children_cpu()
        sandbox.wait()
        sandbox_user, sandbox_sys = (
            b - a for a, b in zip(cpu_before, _children_cpu(), strict=True)
        )

    ideal = args.envs * ROUND_TRIPS_PER_ENV * args.latency_ms / 1000 / parallelism
    print(
        f"plan: {args.envs} environments, {args.latency_ms} ms latency, parallelism {parallelism}"
    )
    load = os.getloadavg()[0]
    print(f"  machine          {os.cpu_count()} cores, load average {load:.2f} (1 min) at the end")
    print(f"  wall time        {wall:8.2f} s (whole process: start-up, load, read, render)")
    print(f"    of which       {load_s:8.2f} s start-up and loading the files (`validate` of them)")
    print(
        f"  ideal bound      {ideal:8.2f} s "
        f"(N × {ROUND_TRIPS_PER_ENV} round trips × latency / parallelism)"
    )
    print(f"  ratio            {wall / ideal:8.2f} × the ideal (target: within 2×)")
    print(f"    reading only   {(wall - load_s) / ideal:8.2f} × the ideal")
    print(f"  plan CPU         {plan_user:8.2f} s user, {plan_sys:.2f} s system")
    print(
        f"  sandbox CPU      {sandbox_user:8.2f} s user, {sandbox_sys:.2f} s system "
        "(its whole life: start-up, the run, the counting)"
    )
    print(f"  requests         {total} ({total / args.envs:.1f} per environment)")
    print(
        "  per environment  1 token request and 1 GET per setting: "
        + ("yes" if set(histogram) == {1} else f"NO, counts seen: {dict(histogram)}")
    )
    if set(histogram) != {1}:
        raise SystemExit("expected exactly 1 token request and 1 GET per setting per environment")

    validate_env = {
        **env,
        "NEWSTORE_CLIENT_ID": "bench",
        "NEWSTORE_CLIENT_SECRET": "bench-client-secret-0000000",
        "SANDBOX_CLIENT_ID": "sandbox",
        "SANDBOX_CLIENT_SECRET": "sandbox-secret",
    }
    cli = [sys.executable, "-m", "reconciler"]
    help_s = _median_seconds([*cli, "--help"], args.runs, validate_env)
    validate = [*cli, "--environments-dir", str(EXAMPLES), "validate", "--allow-missing-secrets"]
    validate_s = _median_seconds(validate, args.runs, validate_env)
    print(f"start-up (median of {args.runs})")
    print(f"  reconciler --help     {help_s * 1000:6.0f} ms")
    print(f"  reconciler validate   {validate_s * 1000:6.0f} ms (the example environments)")


if __name__ == "__main__":
    main()
