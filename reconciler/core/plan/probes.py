"""The core's use of the webhook probe, in one place: what to probe, with which key, and what
the result means.

The HTTP request itself is the adapter's (`reconciler.newstore.probe.probe_webhook`). Here: the
gate's target and description (`probe_target`, `probe_description`), the apply-time gate
(`probe_for`, the desired webhook with the file's key; `run_gate`, its outcome as a value;
`refuses_write`, when a failure refuses a write), `with_probes` (plan `--probe`: the gate
outcomes now) and `check_health` (`drift --probe`: the live webhook with the key NewStore holds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from reconciler.core.plan.values import (
    ATP,
    WEBHOOK,
    WEBHOOK_PROBE,
    EnvPlan,
    status_of,
)
from reconciler.errors import BlockedError, ReconcilerError
from reconciler.model import (
    ABSENT,
    SENSITIVE,
    Environment,
    Fields,
    Masked,
    Value,
)
from reconciler.rules import is_enabled

if TYPE_CHECKING:
    import httpx


def probe_target(env: Environment) -> Fields | None:
    webhook = env.desired.get(WEBHOOK, ABSENT)
    return None if webhook is ABSENT else webhook


def shown_url(url: str, secret: bool) -> str:
    """A url as a plan may show it: whole, or (a url the environment makes secret, its query
    filled by a ${VAR}) without its query, fragment and userinfo."""
    if not secret:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}?{SENSITIVE}"


def probe_description(target: Fields, probe: Any, *, secret_url: bool = False) -> str:
    url = shown_url(str(target.get("url")), secret_url)
    minimum = getattr(probe, "min_available", None)
    stock = f", at least {minimum} requested pairs with atp > 0" if minimum else ""
    return (
        f"POST {url} with Authorization: {SENSITIVE}, "
        f"products {json.dumps(list(probe.products))}, "
        f"fulfillment_locations {json.dumps(list(probe.fulfillment_locations))}; "
        f"must answer 200 with a valid availabilities body within {target.get('timeout')}s, "
        f"an entry for every product at a requested location with an integer atp >= 0{stock}"
    )


def probe_for(env: Environment, *, transport: httpx.BaseTransport | None = None) -> str:
    """Run the webhook-probe gate of `env`: its gates.webhook_probe sample sent to its desired
    webhook. Returns the probe's summary; raises BlockedError saying why it failed, or why it
    cannot run."""
    # lazy: start-up time (httpx)
    from reconciler.newstore.probe import probe_webhook

    target, probe = probe_target(env), env.gates.webhook_probe
    if target is None or probe is None:
        raise BlockedError(
            "turning external ATP on needs gates.webhook_probe and a managed "
            f"availability_webhook in {env.file}"
        )
    return probe_webhook(
        str(target["url"]),
        str(target["api_key"]),
        probe,
        float(target["timeout"]),
        transport=transport,
        ca_bundle=env.connection.ca_bundle,
    )


def check_health(
    env: Environment,
    live: Mapping[str, Value],
    *,
    transport: httpx.BaseTransport | None = None,
) -> tuple[list[str], str]:
    """`drift --probe`: can the live webhook serve availability while external ATP is on?
    Returns why not (empty: healthy, or nothing to probe) and what the probe did, in words.

    It runs whenever live external ATP is on, whether or not the file manages external ATP or
    the webhook (`live` holds both: `plan_environments` reads them for it). It probes the
    *live* url and timeout, with the key NewStore holds where it reads back in clear and the
    file's key otherwise, and then says so: the probe cannot prove that NewStore's hidden key
    is the file's. A masked key whose visible part cannot be the file's is unhealthy without
    a probe (NewStore sends a key the webhook was not given)."""
    # lazy: start-up time (httpx)
    from reconciler.newstore.probe import probe_webhook

    if ATP not in live or WEBHOOK not in live:
        return [], "not probed: external ATP and the webhook config were not read"
    if not is_enabled(live[ATP]):
        return [], "not probed: external ATP is off"
    webhook = live[WEBHOOK]
    if webhook is ABSENT:
        return [
            "external ATP is on and no availability webhook config exists: NewStore treats "
            "every item as unavailable"
        ], "not probed: no webhook config"
    wanted = env.desired.get(WEBHOOK, ABSENT)
    file_key = None if wanted is ABSENT else wanted.get("api_key")
    held = webhook.get("api_key")
    if isinstance(held, Masked) and isinstance(file_key, str) and not held.could_be(file_key):
        return [
            "NewStore holds another webhook api_key than the file's (the part its mask shows "
            "cannot belong to the file's key): the webhook may refuse every availability call"
        ], "not probed: the key NewStore holds is not the file's"
    key = held if isinstance(held, str) else file_key
    probe = env.gates.webhook_probe
    if probe is None:
        return [], "not probed: needs gates.webhook_probe in the file"
    if not isinstance(key, str):
        return [], (
            "not probed: NewStore answers the webhook's api_key masked and the file does not "
            "manage availability_webhook, so there is no key to probe with"
        )
    caveat = (
        ""
        if isinstance(held, str)
        else " (with the file's key: NewStore answers its key masked, so the key it holds "
        "could not be compared with the file's)"
    )
    try:
        summary = probe_webhook(
            str(webhook.get("url")),
            key,
            probe,
            float(webhook.get("timeout") or 15),
            transport=transport,
            ca_bundle=env.connection.ca_bundle,
        )
    except ReconcilerError as exc:
        return [f"the live webhook failed the probe{caveat}: {exc}"], f"failed: {exc}"
    return [], f"passed{caveat}: {summary}"


@dataclass(frozen=True)
class ProbeOutcome:
    """One run of the webhook-probe gate, as plan `--probe` and apply record it: `result` is
    "passed", "failed" or "skipped", `detail` what the probe did (or why it failed) in words."""

    result: str
    detail: str

    @property
    def passed(self) -> bool:
        return self.result != "failed"


SKIPPED: Final = ProbeOutcome(
    "skipped", "not run: --skip-probe was given, the webhook is unchecked"
)


def run_gate(
    env: Environment, *, skip: bool = False, transport: httpx.BaseTransport | None = None
) -> ProbeOutcome:
    """The webhook-probe gate of `env` run now (`probe_for`), as an outcome, never raising for a
    failed or impossible probe; `skip` (apply `--skip-probe`) does not run it."""
    if skip:
        return SKIPPED
    try:
        summary = probe_for(env, transport=transport)
    except BlockedError as exc:
        return ProbeOutcome("failed", exc.message)
    return ProbeOutcome("passed", summary)


def refuses_write(setting: str) -> bool:
    """Does a failed probe refuse the write of `setting` itself (not just block the step)? The
    webhook config's own write: NewStore would point at a webhook that failed, at once."""
    return setting == WEBHOOK


def with_probes(env: Environment, plan: EnvPlan) -> EnvPlan:
    """The plan with the webhook probe of every step whose gate waits for it run now: a new
    plan, blocked by a failing probe. (A gate waits only when the probe and its webhook are
    configured: `_gates` blocks the plan otherwise.)"""
    blocked_by = list(plan.blocked_by)
    steps = []
    for step in plan.steps:
        gates = []
        for gate in step.gates:
            if gate.name == WEBHOOK_PROBE and gate.satisfied is None:
                outcome = run_gate(env)
                if not outcome.passed:
                    blocked_by.append(outcome.detail)
                gate = replace(
                    gate,
                    description=f"{gate.description}; {outcome.result}: {outcome.detail}",
                    satisfied=outcome.passed,
                )
            gates.append(gate)
        steps.append(replace(step, gates=tuple(gates)))
    return replace(plan, steps=steps, blocked_by=blocked_by, status=status_of(steps, blocked_by))
