"""The adversary (issue 20): applies while a concurrent writer changes the tenant through the API
at seeded moments, and while the webhook misbehaves (empty or foreign answers, a negative atp,
the wrong key, slow past the timeout, the key rotated while the probe runs).

Each seeded run gets its own sandbox. The concurrent writer acts through the sandbox's
`before_request` hook: right before the apply's N-th request to the tenant is handled (N
seeded), it makes one API write of its own with its own token (deleting the webhook config,
another webhook, a rotated key, external ATP or the external OMS flipped, use_new_om_ui
flipped, another order webhook), so a change lands exactly between any two of the apply's
requests, also between its last re-read and its write. The webhook's behaviour is drawn from
the sandbox's table. The runs go through the real core (loader, planner, apply with its
journal and its checks around each write, HTTP client) over the in-process transport.

What must hold, judged on the sandbox's write history and request log (the writer's own
requests are known by their request ids):
- after each of the tool's own writes, the state keeps every rule the state before it kept, or
  the tool's very next write to the tenant is the compensating write, with only one round trip
  of its own reads (the rule's other settings, side by side) in between, and that write
  repairs the rules;
- no write of the tool turns external ATP on, or writes the webhook while ATP is on, after a
  probe the webhook failed, nor after the key the probe tested was rotated;
- every compensation's stop report names a concurrent change to a setting the writer wrote, with
  the rule it broke; and every rule the stop report's fresh read finds broken is attributed
  truthfully: a setting it calls this apply's own was last written by the apply, one it calls
  someone else's was written by the writer;
- a rerun without the adversary converges.
"""

from __future__ import annotations

import contextlib
import copy
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from apply_helpers import ORDER_WEBHOOK_API_KEY, setting_of_path
from werkzeug.wrappers import Request

from reconciler.config import load_environment
from reconciler.core.apply import ApplyOptions, RunReport, StopReport, apply_run
from reconciler.core.journal import Journal, read_journal
from reconciler.core.plan import Status, plan_environments
from reconciler.errors import ReportedError
from reconciler.model import Environment
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.rules import violations
from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, WEBHOOK_PATH
from reconciler.sandbox.values import state_to_values
from reliability.scenarios import (
    API_KEY_VAR,
    CLIENT_SECRET_VAR,
    OLD_HOOK,
    OLD_ORDER_HOOK,
    ORDER_API_KEY_VAR,
    added_violations,
    scenario,
    seed_live,
)
from reliability.summary import SCALE, count

pytestmark = pytest.mark.slow

RUNS = 60 * SCALE
BASE = "http://127.0.0.1:1"  # never resolved: the transport is in-process
ORIGIN = "http://sandbox.local"
ENVIRON = {
    CLIENT_SECRET_VAR: "sandbox-secret",
    API_KEY_VAR: DEFAULT_WEBHOOK_API_KEY,
    ORDER_API_KEY_VAR: ORDER_WEBHOOK_API_KEY,
}
MARK = "X-Adversary"
ROTATED_KEY = "a-key-rotated-by-the-adversary-77"
# How the webhook behaves in a run, with the weight of each (healthy most of the time, so that
# the concurrent writer meets applies that get as far as their writes).
WEBHOOKS = {
    "healthy": 10,
    "empty": 1,
    "foreign": 1,
    "negative_atp": 1,
    "wrong key": 1,
    "slow past the timeout": 1,
    "key rotated while the probe runs": 2,
}
LYING = {"empty", "foreign", "negative_atp", "wrong key", "slow past the timeout"}


@dataclass
class Adversary:
    """The concurrent writer and the webhook's behaviour of one run."""

    app: SandboxApp
    tenant: str
    rng: random.Random
    webhook: str
    triggers: set[int]  # write right before the apply's N-th request to the tenant
    hook_url: str
    # Aimed: right before the apply's M-th write is handled (after its last re-read), write
    # what breaks a rule that write relies on.
    aimed: set[int] = field(default_factory=set)
    seen: int = 0
    seen_writes: int = 0
    ids: set[str] = field(default_factory=set)  # every request id of the writer's requests
    writes: list[str] = field(default_factory=list)  # what it wrote, in words
    rotated_at: str | None = None  # the request id of the rotation during the probe
    probes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Request) -> None:
        if request.headers.get(MARK):
            return
        if request.path == WEBHOOK_PATH:
            with self.lock:
                self.probes += 1
                rotate = self.webhook.startswith("key rotated") and self.rotated_at is None
            if rotate:
                self.rotated_at = self._rotate()
            return
        if not request.path.startswith(f"/{self.tenant}/"):
            return
        with self.lock:
            self.seen += 1
            act = self.seen in self.triggers
            if request.method != "GET":
                self.seen_writes += 1
                aim = self.seen_writes in self.aimed
            else:
                aim = False
        if aim:
            self._write_something(_counter_to(request, self.rng))
        elif act:
            self._write_something()

    # -- the writer's own API calls ----------------------------------------------------------

    def _client(self) -> httpx.Client:
        client = httpx.Client(transport=self.app.transport(), base_url=ORIGIN, headers={MARK: "1"})
        token = client.post(
            f"/auth/realms/{self.tenant}/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox",
                "client_secret": "sandbox-secret",
            },
        )
        self.ids.add(token.headers["x-request-id"])
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        return client

    def _send(self, client: httpx.Client, method: str, path: str, body: Any = None) -> Any:
        response = client.request(method, f"/{self.tenant}{path}", json=body)
        self.ids.add(response.headers["x-request-id"])
        return response

    def _rotate(self) -> str:
        with contextlib.closing(self._client()) as client:
            hook = self._send(client, "GET", "/v0/config/availability/webhook")
            if hook.status_code != 200:
                return ""
            config = {**hook.json(), "api_key": ROTATED_KEY}
            answer = self._send(client, "PUT", "/v0/config/availability/webhook", config)
            self.writes.append("rotated the webhook key while the probe ran")
            return str(answer.headers["x-request-id"])

    def _write_something(self, choice: str | None = None) -> None:
        choice = choice or self.rng.choice(
            [
                "delete the webhook",
                "another webhook",
                "rotate the key",
                "atp on",
                "atp off",
                "oms on",
                "oms off",
                "new om ui on",
                "new om ui off",
                "another order webhook",
            ]
        )
        hook_path = "/v0/config/availability/webhook"
        with contextlib.closing(self._client()) as client:
            if choice == "delete the webhook":
                self._send(client, "DELETE", hook_path)
            elif choice == "another webhook":
                self._send(client, "PUT", hook_path, dict(OLD_HOOK))
            elif choice == "rotate the key":
                hook = {
                    "url": self.hook_url,
                    "api_key": ROTATED_KEY,
                    "external_identifier": "product_id",
                    "timeout": 5,
                }
                self._send(client, "PUT", hook_path, hook)
            elif choice.startswith("atp"):
                body = {"value": choice.endswith("on")}
                self._send(client, "POST", "/v0/config/routing/uses_external_atp", body)
            elif choice.startswith("oms"):
                body = {"value": {"enabled": choice.endswith("on")}}
                self._send(client, "POST", "/v0/config/sales_order/external_oms", body)
            elif choice.startswith("new om ui"):
                got = self._send(client, "GET", "/api/v1/associate-app/config")
                if got.status_code != 200:
                    return
                document = copy.deepcopy(got.json())
                document["ui_configurations"]["use_new_om_ui"] = choice.endswith("on")
                self._send(client, "PUT", "/api/v1/associate-app/config", document)
            else:
                body = {"value": dict(OLD_ORDER_HOOK)}
                self._send(client, "POST", "/v0/config/sales_order/external_order_webhook", body)
        self.writes.append(choice)


def _counter_to(request: Request, rng: random.Random) -> str | None:
    """The concurrent write that breaks a rule the apply's write in `request` relies on."""
    path, method = request.path, request.method
    try:
        body = request.get_json(force=True, silent=True, cache=True)
    except Exception:
        body = None
    if path.endswith("/uses_external_atp") and isinstance(body, dict) and body.get("value"):
        return rng.choice(["delete the webhook", "oms off", "rotate the key"])
    if path.endswith("/availability/webhook"):
        return "atp on"
    if path.endswith("/external_oms") and isinstance(body, dict):
        value = body.get("value")
        if isinstance(value, dict) and value.get("enabled") is False:
            return rng.choice(["atp on", "new om ui on"])
    if path.endswith("/associate-app/config") and method == "PUT":
        return "oms off"
    return None


def _factory(app: SandboxApp) -> Callable[[Environment], AbstractContextManager[NewStoreClient]]:
    def make(env: Environment) -> AbstractContextManager[NewStoreClient]:
        return NewStoreClient(env, transport=app.transport(), limiter=HostLimiter(), backoff=0.01)

    return make


def _behave(app: SandboxApp, webhook: str, timeout: int) -> None:
    if webhook in ("empty", "foreign", "negative_atp"):
        app.set_webhook_behaviour(answer=webhook)
    elif webhook == "wrong key":
        app.set_webhook_behaviour(api_key="a-key-the-file-does-not-have-0000")
    elif webhook == "slow past the timeout":
        app.set_webhook_behaviour(latency_ms=timeout * 1000 + 300)


def _apply(env: Environment, app: SandboxApp, journal: Path) -> tuple[str, StopReport | None]:
    factory = _factory(app)
    (plan,) = plan_environments([env], client_factory=factory).environments
    if plan.status is Status.ERROR:
        return "stopped while planning (nothing written)", None
    if plan.status is Status.CONVERGED:
        return "nothing to do", None
    if plan.status is Status.BLOCKED:
        return "blocked at plan time", None
    with Journal(journal) as opened:
        try:
            options = ApplyOptions(client_factory=factory, probe_transport=app.transport())
            apply_run([env], _as_run(plan), opened, options)
        except ReportedError as exc:
            report = exc.stop if isinstance(exc.stop, RunReport) else RunReport()
            stops = [s for s in report.stops if isinstance(s, StopReport)]
            return _ended(exc, journal), stops[0] if stops else None
    return "converged", None


def _as_run(plan: Any) -> Any:
    from reconciler.core.plan import RunPlan

    return RunPlan([plan])


def _ended(exc: ReportedError, journal: Path) -> str:
    phases = [e["phase"] for e in read_journal(journal)] if journal.exists() else []
    if "compensate" in phases:
        return "stopped: undid its own write at once (a concurrent change broke a rule)"
    text = exc.message
    if "probe tested" in text:
        return "stopped before the write: the webhook is not the one the probe tested"
    if "gate webhook_probe failed" in text:
        return "blocked: the webhook failed the probe"
    if "refused to write a webhook config that failed the probe" in text:
        return "refused: the webhook failed the probe"
    if "changed underneath" in text:
        return "stopped: changed underneath"
    if "stopped before writing it" in text:
        return "stopped before the write: it would have broken a rule"
    if "did not converge" in text or "did not settle" in text or "read back after" in text:
        return "stopped: the other writer moved it after the write"
    return "stopped: other (" + text[:80] + ")"


@dataclass(frozen=True)
class Outcome:
    seed: int
    webhook: str
    first: str
    adversary_writes: int
    tool_breaks: int  # tool writes after which the state broke a rule (the writer's help)
    compensated: int
    problems: list[str]
    rerun: str


def _judge(
    history: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    start: dict[str, Any],
    adversary: Adversary,
    tenant: str,
) -> tuple[list[str], int, int]:
    """The invariant on the write history: returns the problems, the tool's writes that broke
    a rule, and how many of them were compensated by its very next write."""
    problems: list[str] = []
    ours = [i for i, e in enumerate(history) if e["request_id"] not in adversary.ids]
    ours = [i for i in ours if history[i]["status"] < 300]
    states = [state_to_values(start)] + [state_to_values(e["state_after"]) for e in history]
    position = {r["request_id"]: i for i, r in enumerate(requests)}
    breaks = compensated = 0
    for index, entry in enumerate(history):
        added = [r for r in violations(states[index + 1]) if r not in violations(states[index])]
        if not added or index not in ours:
            continue
        breaks += 1
        later = [i for i in ours if i > index]
        end = later[0] if later else len(history)
        if not set(added) & set(violations(states[end])):
            compensated += 1  # the concurrent writer's next write repaired it first
            continue
        if not later:
            problems.append(f"write {entry['seq']} broke {added} and nothing undid it")
            continue
        fix = history[end]
        between = requests[position[entry["request_id"]] + 1 : position[fix["request_id"]]]
        own = [r for r in between if r["request_id"] not in adversary.ids]
        # One round trip of re-reads (the rule's other settings, side by side); an Associate
        # App write reads its document back inside the write, and its undo reads it first.
        documents = [r for r in own if "/associate-app/" in r["path"]]
        if any(r["method"] != "GET" for r in own) or len(own) - len(documents) > 2:
            sent = [(r["method"], r["path"].rsplit("/", 2)[-2:]) for r in own]
            problems.append(f"write {entry['seq']}: the tool sent {sent} before compensating")
        interfered = any(history[i]["request_id"] in adversary.ids for i in range(index, end))
        if set(added) & set(violations(states[end + 1])) and not interfered:
            problems.append(f"write {entry['seq']} broke {added}; write {fix['seq']} did not fix")
        else:
            compensated += 1
    mine = [history[i] for i in ours]
    if adversary.rotated_at:
        rotation = next(e for e in history if e["request_id"] == adversary.rotated_at)
        rewritten = False
        for entry in mine:
            if entry["seq"] < rotation["seq"]:
                continue
            rewritten |= entry["path"].endswith("/availability/webhook")
            after = state_to_values(entry["state_after"])
            turned_on = entry["path"].endswith("uses_external_atp") and after["external_atp"].get(
                "enabled"
            )  # type: ignore[union-attr]
            if turned_on and not rewritten:
                problems.append(f"write {entry['seq']}: ATP on after the key was rotated")
    return problems, breaks, compensated


def _judge_journal(journal: Path) -> list[str]:
    """After a probe the webhook failed, nothing is written but a compensation."""
    if not journal.exists():
        return []
    entries = read_journal(journal)
    failed = [i for i, e in enumerate(entries) if e["phase"] == "gate" and e["result"] == "failed"]
    if not failed:
        return []
    after = [e for e in entries[failed[0] + 1 :] if e["phase"] in ("intent", "compensate")]
    return [
        f"{e['phase']} {e['setting']} after a failed probe" for e in after if e["phase"] == "intent"
    ]


def _judge_report(
    stop: StopReport,
    history: list[dict[str, Any]],
    start: dict[str, Any],
    adversary: Adversary,
    tenant: str,
    compensated: bool,
) -> list[str]:
    """The stop report tells the truth about whose writes are whose."""
    problems = []
    written_by: dict[str, str] = {}  # setting -> "tool" | "adversary": who last changed it
    touched_by_adversary: set[str] = set()
    state = state_to_values(start)
    for entry in history:
        after = state_to_values(entry["state_after"])
        setting = setting_of_path(entry["path"].removeprefix(f"/{tenant}"))
        changed, state = after[setting] != state[setting], after
        if entry["status"] >= 300 or not changed:
            continue  # a write that changed nothing (a second delete) is nobody's value
        who = "adversary" if entry["request_id"] in adversary.ids else "tool"
        written_by[setting] = who
        if who == "adversary":
            touched_by_adversary.add(setting)
    if compensated and not any(
        c.broke and c.setting in touched_by_adversary for c in stop.concurrent
    ):
        problems.append(f"compensated, but the report names no concurrent change: {stop}")
    for found in stop.safety.breaks:
        for setting in found.own:
            if written_by.get(setting) != "tool":
                problems.append(f"{found.rule}: {setting} called this apply's, but it is not")
        for setting in found.others:
            if setting not in touched_by_adversary:
                problems.append(f"{found.rule}: {setting} called someone else's, but it is not")
        if not found.own and not found.others and not found.before:
            problems.append(f"{found.rule}: broken, and the report says by nobody")
    return problems


def _one(seed: int, root: Path) -> Outcome:
    rng = random.Random(50_000 + seed)
    case = scenario(seed)
    tenant = f"adversary-{seed}"
    directory = root / tenant
    directory.mkdir()
    env_file = directory / f"{tenant}.yaml"
    env_file.write_text(case.yaml(tenant, BASE))
    env = load_environment(env_file, environ=ENVIRON)
    app = SandboxApp(SandboxConfig())
    hook_url = f"{BASE}{WEBHOOK_PATH}"
    seed_live(app, tenant, case.live, hook_url)
    start = app.state(tenant)

    names = list(WEBHOOKS)
    webhook = rng.choices(names, weights=[WEBHOOKS[n] for n in names])[0]
    desired_hook = case.desired.get("availability_webhook")
    timeout = desired_hook.get("timeout", 5) if isinstance(desired_hook, dict) else 5
    if webhook == "slow past the timeout" and timeout > 5:
        webhook = "empty"  # a 30 s timeout would make the run wait 30 s
    _behave(app, webhook, timeout)
    # The apply makes 6-40 requests; one or two writes land at seeded points among them.
    triggers = set(rng.sample(range(1, 36), rng.choice([0, 1, 1, 2])))
    aimed = set(rng.sample(range(1, 5), rng.choice([0, 1, 1])))
    adversary = Adversary(app, tenant, rng, webhook, triggers, hook_url, aimed)
    app.before_request = adversary

    first, stop = _apply(env, app, directory / "first.jsonl")
    app.before_request = None
    history, requests = app.history(tenant), app.requests(tenant)
    problems, breaks, compensated = _judge(history, requests, start, adversary, tenant)
    problems += _judge_journal(directory / "first.jsonl")
    if stop is not None:
        undid = first.startswith("stopped: undid")
        problems += _judge_report(stop, history, start, adversary, tenant, undid)

    # The rerun, without the adversary and with a healthy webhook, from wherever it left.
    app.set_webhook_behaviour()
    state = app.state(tenant)
    rerun, _ = _apply(env, app, directory / "rerun.jsonl")
    problems += added_violations(app.history(tenant)[len(history) :], state)
    if rerun not in ("converged", "nothing to do"):
        problems.append(f"the rerun did not converge: {rerun}")
    elif violations(state_to_values(app.state(tenant))):
        problems.append("the rerun left a rule broken")
    return Outcome(
        seed, webhook, first, len(adversary.writes), breaks, compensated, problems, rerun
    )


def test_the_adversary_never_leaves_a_rule_broken_by_the_tool(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=min(RUNS, 60)) as pool:
        outcomes = list(pool.map(lambda seed: _one(seed, tmp_path), range(RUNS)))

    suite = "adversary"
    count(suite, "runs", len(outcomes))
    count(suite, "concurrent writes by the adversary", sum(o.adversary_writes for o in outcomes))
    for webhook, n in Counter(o.webhook for o in outcomes).items():
        count(suite, f"webhook: {webhook}", n)
    for first, n in Counter(o.first for o in outcomes).items():
        count(suite, f"first run: {first}", n)
    breaks = sum(o.tool_breaks for o in outcomes)
    count(suite, "tool writes after which a concurrent change left a rule broken", breaks)
    count(
        suite,
        "of those, undone by the tool's very next write",
        sum(o.compensated for o in outcomes),
    )
    count(
        suite, "reruns converged", sum(o.rerun in ("converged", "nothing to do") for o in outcomes)
    )
    count(suite, "problems (invariant, report or rerun)", sum(len(o.problems) for o in outcomes))

    assert [(o.seed, o.problems) for o in outcomes if o.problems] == []
    assert any(o.first.startswith("stopped: undid") for o in outcomes), "the adversary did bite"
    assert any(o.first.startswith("blocked: the webhook failed") for o in outcomes)
