"""Benchmark: `reconciler plan` over many environments against a slow sandbox (`make bench`).

For each variant (plain HTTP, and HTTPS with a throwaway certificate, as NewStore's hosts are)
and each size (200 and 1,000 environments by default): starts `python -m reconciler sandbox`
with a fixed latency per request, writes N environment files for N tenants on it, each
managing the five settings, runs the real `reconciler plan` once as a subprocess (through
`bench/phases.py`, which records where its CPU goes), then asks the sandbox how many requests
each tenant received. Prints the wall time against the latency-bound lower limit, the plan's
CPU per environment and its breakdown by phase, and the start-up time of `reconciler --help`
and `reconciler validate`.

Each tenant's API is on 127.0.0.1 and its token endpoint on `localhost`: two hosts, so two
connections (and over HTTPS two handshakes) per environment, as against NewStore's tenant and
identity hosts.

The lower limit: an environment costs one token request, then the five setting GETs, which
`read_live` sends concurrently; so its critical path is ROUND_TRIPS_PER_ENV round trips of the
sandbox's latency, and P environments are in flight at once:

    ideal = N × ROUND_TRIPS_PER_ENV × latency / P

Not a test: the figures depend on the machine and on what else runs on it (the load average is
printed with them). Targets: within 1.6× of the ideal at 200 environments, 1.5× at 1,000, and at
most 4.5 ms of plan CPU per environment at 1,000.

Figures (2 cores, 50 ms latency, parallelism 16, plain HTTP, 1,000 environments). This
machine's speed drifts by a third within an hour (the sandbox's own CPU for the same 6,000
requests went from 4.4 to 6.6 s), so each figure is from runs interleaved with its comparison.

Round 1 (the previous session): before = ba28f04 (PyYAML's pure parser, httpx's cookie jar and
environment walk per client), after = 0be8ae0 (libyaml's events under the budgeted composer,
no cookie jar, proxies read only when named, absolute URLs parsed once, is_loopback cached):

    plan CPU per environment   7.92, 7.83 ms  →  6.34, 8.04 ms; ratio 1.59-1.64× → 1.44-1.66×

Round 2: before = 0be8ae0, after = this tree (the client sends through httpx's transports
itself; a pool that checks one idle connection per request; the token host's connections
shared by every environment; an environment's other reads started once its token is in hand;
apply and drift imported on first use). Three interleaved pairs each, the machine idle at the
start (load 0.15):

    plan CPU per environment   6.65, 7.70, 6.68 ms  →  5.50, 5.25, 5.57 ms
      token                    0.84-0.98 ms         →  0.53-0.57 ms
      reads (five GETs)        3.49-4.13 ms         →  2.86-3.03 ms
      client / start-up        0.24-0.34 / 0.24-0.33 →  0.16-0.17 / 0.17-0.19 ms
    ratio to the ideal         1.54-1.69×           →  1.38-1.44×  (target ≤ 1.5×: met)
    one environment's reads, in-process, one at a time, no latency: 3.43 → 2.06 ms of CPU

  200 environments (three pairs, the machine slowed by then): 10.6-13.8 → 9.4-11.8 ms per
  environment, ratio 2.2-2.9× → 2.1-2.6× (an earlier `make bench` in the same hour: 1.72×);
  start-up (~0.2 s, imports) is a fifth of the run at this size.
  HTTPS, 1,000 (one pair): 20.3 → 16.5 ms per environment, 3.45× → 3.00× (`make bench` on an
  idle machine: 13.5 ms, 2.45×): the token's handshake is now once per run, not per
  environment; the five GETs still open five connections, so five handshakes.
  start-up (median of 5-11): --help 90-105 ms both trees; validate of the examples 256 ms.

Round 3: before = 76d135c, after = this tree (the client's own HTTP/1.1 connections: h11 over
a socket, one write per request, the answer read whole; no httpcore layers, no conversion of
httpcore's models to httpx's). Three interleaved pairs, the machine slowing as they ran (the
sandbox's CPU for the same 6,000 requests is the yardstick; the plan's CPU per unit of it is
the fair comparison):

    plan CPU per environment   7.25, 6.33, 6.14 ms  →  5.06, 4.96, 7.15 ms
      per second of the sandbox's CPU   1.18, 1.17, 1.18  →  1.03, 1.01, 0.97
      reads (five GETs)        3.39-4.06 ms         →  2.34-2.46 ms (3.68 in the slowed run)
      token                    0.64-0.77 ms         →  0.45-0.47 ms
    ratio to the ideal         1.47-1.63×           →  1.39-1.40× (1.82× slowed)
    one environment's reads, in-process, one at a time, no latency: 2.18 → 1.62 ms of CPU
  `make bench` just after (load 0.21 at the start, the machine slower than in the morning:
  the sandbox's CPU 5.3 s where it was 4.5): 1,000 plain 5.34 ms, 1.42×; 200 plain 1.67×;
  HTTPS 1,000 11.6 ms, 2.16×; --help 99 ms, validate 225 ms.

Round 4 (2026-12-03, on a machine about half as fast: the sandbox's CPU for the same 6,000
requests 8.5-11.6 s where it was 4.5-6.6 s, so the absolute targets, set on the faster one,
are read here as "half of the issue's tree, interleaved"): before = ba28f04 (the tree the
issue measured, 9.0 ms there), after = this tree (the plain exchange written and read by
`newstore/wire.py`'s patterns, h11 for the rest; the bench compiling the package's bytecode
first, as pip does). Both trees compiled, three interleaved pairs at 1,000 plain:

    plan CPU per environment   20.02, 18.60, 19.57 ms  →  9.80, 9.85, 7.83 ms   (0.47×)
      per second of the sandbox's CPU   1.79, 1.83, 1.76  →  0.87, 0.85, 0.92    (0.49×)
    one environment's reads, in-process, one at a time, no latency: 5.95 → 4.96 ms of CPU
      (c5cfd34 → this tree, three interleaved pairs)
  `make bench` right after: 1,000 plain 9.78 ms per environment (start-up 0.32, load 1.42,
  client 0.35, token 0.81, reads 4.70, plan 1.06, other 1.11; at the session's start, on
  c5cfd34 without compiled bytecode: 11.15, of which start-up 0.43, token 1.09, reads 5.51),
  2.80× the ideal; 200 plain 2.58×; HTTPS 1,000 18.5 ms, 3.69×. Plain alone later (load 0.02
  at the start): 1,000 at 9.18 ms (reads 4.18, token 0.80), 2.34×; 200 at 3.29×. --help and
  validate of the examples, median of 5, both trees on this machine: 0.10-0.11 / 0.34-0.41 s
  against ba28f04's 0.11-0.14 / 0.41-0.48 s.

Round 4's ratios were bound by the sandbox: one Python process (one GIL) spending 1.4-1.9 ms
of CPU per request there, so the 6,000 requests took it longer than the 6.25 s ideal.

Round 5 (2026-12-03, a later session, the machine between the two: ee2dcef's sandbox served
the 6,000 requests in 5.8-8.5 s of CPU): the stand-in made cheaper, the plan untouched but for
one start-up cost. The sandbox reads request heads without the email package
(`sandbox/head.py`), writes each answer's head and body in one send, keeps its handler threads
for the next connection (`sandbox/workers.py`: starting a thread for each of a run's 5,000
connections was a tenth of its CPU), drops expired tokens from the oldest instead of scanning
them all per token request, and runs without its access log (`--quiet`, which the bench now
passes). The plan no longer checks the environment schema against the meta-schema at start-up
(30 ms of every command; the checked-in schema is checked by the tests). Interleaved pairs,
the plan side the same tree in both, before = ee2dcef's sandbox (with its access log, as
round 4 ran it), the machine busy with neighbours (load 2.6-5.1):

    1,000 plain   sandbox CPU   6.81, 6.96, 8.50 s  →  4.43, 4.94, 4.84 s
                  ratio         1.67, 1.68, 2.03×   →  1.54, 1.58, 1.64×
      200 plain   sandbox CPU   1.32, 1.21, 1.31 s  →  0.85, 0.81, 0.74 s
                  ratio         1.92, 1.91, 1.88×   →  1.75, 1.71, 1.61×
  `make bench --variant plain` on the idle machine, three runs (load 0.3-1.6 at the start):
  1,000 plain 5.30-6.21 ms per environment (start-up 0.22, load 0.74, client 0.18, token
  0.44, reads 2.73, plan 0.55, other 0.70 in the first), 1.37×, 1.45×, 1.33× (target 1.5×:
  met); 200 plain 6.47-8.30 ms, 1.68×, 1.90×, 1.61× (target 1.6×: not met). --help 96 ms,
  validate of the examples 232 ms (281 before the schema change). An earlier `make bench`
  (before the thread reuse and the schema change): HTTPS 1,000 12.8 ms, 2.36×; HTTPS 200
  3.10×. Against the issue's tree on this machine (each tree's `reconciler plan` against the
  same quiet sandbox, three interleaved pairs at 1,000): ba28f04 11.52, 11.92, 14.06 ms of
  CPU per environment, this tree 6.44, 6.33, 6.19 (0.51×); ratio 1.96-2.43× against
  1.47-1.51×.

Where the ratios stand. At 1,000 (target 1.5×) the idle runs meet it. At 200 (target 1.6×) a
fixed cost weighs: the start-up (0.22 s, the imports) and loading the 200 files (0.24 s) are
0.46 s, a third of the 1.25 s ideal, before the first request; a timeline of one run (start-up
0.22 s, load done at 0.46 s, the first environment done at 0.61 s, then 16 environments per
0.11 s where 0.10 s is ideal) leaves the start-up and the first round as the gap. At 16
environments in flight and ~5.5 ms of plan CPU each, the plan process's one GIL is busy ~88 ms
of every 100 ms round, so every answer waits its turn for it: the plan's CPU per environment,
not the network, sets the pace. Loading the files in the workers, so the first requests leave
while later files are still read, was tried and gained nothing: the plan process is one GIL,
and loading then competes with the reads for it. What the plan's CPU is still spent on: threads
waking (four reads handed to the pool per environment, ~0.35 ms), connecting (five connections
per environment, one per concurrent GET), httpx's Request and Response models, parsing each
environment's URLs, YAML composition and schema validation (~0.6 ms per file together). HTTPS
costs five handshakes per environment. Halving the CPU again needs fewer connections and
wake-ups per environment: HTTP/2 (the five GETs multiplexed on one connection; the sandbox's
werkzeug speaks HTTP/1.1 only) or an event loop.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reconciler.parallelism import DEFAULT_PARALLELISM  # noqa: E402

EXAMPLES = REPO / "environments"
PHASES = REPO / "bench" / "phases.py"
ROUND_TRIPS_PER_ENV = 2  # the token, then the five GETs side by side
SETTING_PATHS = (
    "/v0/config/sales_order/external_oms",
    "/v0/config/availability/webhook",
    "/v0/config/routing/uses_external_atp",
    "/v0/config/sales_order/external_order_webhook",
    "/api/v1/associate-app/config",
)
PHASE_ORDER = ("start-up", "load", "client", "token", "reads", "plan", "render", "other")
ENV_FILE = """\
tenant: {tenant}
connection:
  base_url: {scheme}://127.0.0.1:{port}/{tenant}
  token_url: {scheme}://localhost:{port}/auth/realms/{tenant}/protocol/openid-connect/token
  client_id: sandbox
  client_secret: ${{BENCH_CLIENT_SECRET}}
external_oms:
  enabled: false
availability_webhook: absent
external_atp:
  enabled: false
external_order_webhook:
  url: https://oms.example.com/newstore
  api_key: ${{BENCH_ORDER_WEBHOOK_API_KEY}}
  timeout: 15
associate_app:
  use_new_om_ui: false
"""


@dataclass
class Run:
    variant: str
    envs: int
    latency_ms: int
    parallelism: int
    wall_s: float
    load_s: float
    figures: dict[str, Any]
    sandbox_cpu_s: float
    requests: int
    histogram: collections.Counter[int]

    @property
    def ideal_s(self) -> float:
        return self.envs * ROUND_TRIPS_PER_ENV * self.latency_ms / 1000 / self.parallelism

    def per_env_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.envs


def _start_sandbox(
    latency_ms: int, tls: tuple[Path, Path] | None
) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "reconciler", "sandbox", "--port", "0", "--quiet"]
    command += ["--latency-ms", str(latency_ms), "--allow-host", "localhost"]
    # --quiet: no access log. NewStore's costs the plan nothing; the stand-in's cost it a
    # sixth of its CPU per request.
    if tls is not None:
        command += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on" in line:
            return process, int(line.rsplit(":", 1)[1])
    process.wait()
    raise SystemExit(f"the sandbox exited ({process.returncode}) before listening")


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds a running process has used so far (Linux's /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median_seconds(command: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _count_requests(
    url: str, tenants: list[str], verify: ssl.SSLContext | bool
) -> tuple[collections.Counter[int], int]:
    """Per-tenant counts of token requests and of GETs per setting path, as a histogram of
    "how many times" (ideally {1: ...} only), and the total number of requests."""
    histogram: collections.Counter[int] = collections.Counter()
    total = 0
    with httpx.Client(base_url=url, verify=verify) as http:
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


def _measure(
    variant: str, envs: int, latency_ms: int, parallelism: int, runs: int, base: dict[str, str]
) -> Run:
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        directory = Path(tmp)
        env = dict(base)
        verify: ssl.SSLContext | bool = True
        tls = None
        if variant == "tls":
            # Here, so that the plain variant also runs on a checkout from before --tls-cert.
            from reconciler.sandbox.certs import throwaway_certificate

            (directory / "tls").mkdir()
            tls = throwaway_certificate(directory / "tls")
            env["SSL_CERT_FILE"] = str(tls[0])  # trusted as a public CA would be
            verify = ssl.create_default_context(cafile=str(tls[0]))
        scheme = "https" if tls else "http"
        environments = directory / "environments"
        environments.mkdir()
        sandbox, port = _start_sandbox(latency_ms, tls)
        sandbox_before = _process_cpu(sandbox.pid)
        try:
            tenants = [f"bench-{i:04d}" for i in range(envs)]
            for tenant in tenants:
                text = ENV_FILE.format(tenant=tenant, scheme=scheme, port=port)
                (environments / f"{tenant}.yaml").write_text(text)
            cli = ["--environments-dir", str(environments)]
            figures_file = directory / "phases.json"
            command = [sys.executable, str(PHASES), str(figures_file), "--", *cli]
            command += ["plan", "--parallelism", str(parallelism)]
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
            wall = time.perf_counter() - started
            if result.returncode not in (0, 2):
                raise SystemExit(f"plan exited {result.returncode}:\n{result.stderr[-3000:]}")
            figures = json.loads(figures_file.read_text())
            sandbox_after = _process_cpu(sandbox.pid)
            histogram, total = _count_requests(f"{scheme}://127.0.0.1:{port}", tenants, verify)
            # The same process without the HTTP part: start-up, loading and validating the files.
            load_s = _median_seconds(
                [sys.executable, "-m", "reconciler", *cli, "validate"], runs, env
            )
        finally:
            sandbox.terminate()
            sandbox.wait()
            assert sandbox.stdout is not None
            sandbox.stdout.close()
    sandbox_cpu = (
        sandbox_after - sandbox_before
        if sandbox_after is not None and sandbox_before is not None
        else float("nan")
    )
    return Run(
        variant, envs, latency_ms, parallelism, wall, load_s, figures, sandbox_cpu, total, histogram
    )


def _report(run: Run) -> None:
    figures = run.figures
    total = float(figures["total_cpu_s"])
    phases: dict[str, float] = dict(figures["phases_s"])
    phases["start-up"] = float(figures["startup_cpu_s"])
    phases["other"] = total - sum(phases.values())
    label = "HTTPS" if run.variant == "tls" else "plain HTTP"
    print(
        f"plan: {run.envs} environments, {label}, {run.latency_ms} ms latency, "
        f"parallelism {run.parallelism}"
    )
    print(f"  wall time        {run.wall_s:8.2f} s (whole process: start-up, load, read, render)")
    print(f"    of which       {run.load_s:8.2f} s start-up and loading (`validate` of the files)")
    print(
        f"  ideal bound      {run.ideal_s:8.2f} s "
        f"(N × {ROUND_TRIPS_PER_ENV} round trips × latency / parallelism)"
    )
    target = 1.6 if run.envs <= 200 else 1.5
    print(f"  ratio            {run.wall_s / run.ideal_s:8.2f} × the ideal (target: ≤ {target}×)")
    print(
        f"  plan CPU         {total:8.2f} s ({float(figures['user_s']):.2f} user, "
        f"{float(figures['system_s']):.2f} system): "
        f"{run.per_env_ms(total):.2f} ms per environment (target at 1,000: ≤ 4.5)"
    )
    breakdown = ", ".join(
        f"{phase} {run.per_env_ms(phases.get(phase, 0.0)):.2f}" for phase in PHASE_ORDER
    )
    print(f"    per env (ms)   {breakdown}")
    print(f"  sandbox CPU      {run.sandbox_cpu_s:8.2f} s during the plan")
    print(f"  requests         {run.requests} ({run.requests / run.envs:.1f} per environment)")
    ok = set(run.histogram) == {1}
    print(
        f"  per environment  1 token request and 1 GET per setting ({len(SETTING_PATHS)}): "
        + ("yes" if ok else f"NO, counts seen: {dict(run.histogram)}")
    )
    if not ok:
        raise SystemExit("expected exactly 1 token request and 1 GET per setting per environment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--envs", type=int, nargs="+", default=[200, 1000], help="sizes (default 200 1000)"
    )
    parser.add_argument(
        "--variant",
        choices=("plain", "tls"),
        nargs="+",
        default=["plain", "tls"],
        help="plain HTTP and/or HTTPS (default both)",
    )
    parser.add_argument("--latency-ms", type=int, default=50, help="sandbox latency (default 50)")
    parser.add_argument("--parallelism", type=int, help="plan --parallelism (default: the CLI's)")
    parser.add_argument("--runs", type=int, default=5, help="start-up timing runs (default 5)")
    args = parser.parse_args()
    parallelism = args.parallelism or DEFAULT_PARALLELISM

    _compile_package()
    base = {
        **os.environ,
        "BENCH_CLIENT_SECRET": "sandbox-secret",
        "BENCH_ORDER_WEBHOOK_API_KEY": "bench-order-webhook-key-0000000000",
        "NO_COLOR": "1",
    }
    _run(args, parallelism, base)


def _compile_package() -> None:
    """Compile the package's bytecode (into its __pycache__ directories, which git ignores)
    before timing anything, as `pip install` does for an installed tool. Where
    PYTHONDONTWRITEBYTECODE is set (CI images often set it) and the checkout has never been
    compiled, every process would otherwise compile each module it imports: 0.1-0.2 s of CPU
    per process that no installed copy of the tool pays. Python reads bytecode that exists
    whatever that variable says."""
    command = [sys.executable, "-m", "compileall", "-q", str(REPO / "reconciler")]
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def _run(args: argparse.Namespace, parallelism: int, base: dict[str, str]) -> None:
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    for variant in args.variant:
        for envs in args.envs:
            run = _measure(variant, envs, args.latency_ms, parallelism, args.runs, base)
            _report(run)
    print(f"machine: load average {os.getloadavg()[0]:.2f} (1 min) at the end")

    validate_env = {
        **base,
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
