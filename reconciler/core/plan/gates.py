"""The gates a step needs: the webhook probe (described, run later) and the stock confirmation.

`_gates` lists a step's gates and why it is blocked; the stock confirmation (a dated line a
person writes in the environment file) is checked here, with the exact line to write
(`stock_confirmation_line`, `stock_confirmation_problem`). Running the probe is in
`reconciler.core.plan.probes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from reconciler.core.plan.probes import (
    probe_description,
    probe_target,
)
from reconciler.core.plan.values import (
    ATP,
    STOCK_CONFIRMED,
    WEBHOOK,
    WEBHOOK_PROBE,
    Gate,
)
from reconciler.model import (
    Environment,
    Value,
)
from reconciler.rules import Rule, is_enabled


def stock_confirmation_line(env: Environment, today: date) -> str:
    """Where and what to write to confirm stock: always the environment's own file (a base
    would confirm stock for every environment that extends it), with the exact line."""
    line = f"newstore_stock_confirmed: {today.isoformat()}"
    own = env.locations.get("gates.newstore_stock_confirmed")
    if own is not None and own.file == env.file:
        return f"change line {own.line} of {env.file} to `{line}`"
    gates = env.locations.get("gates")
    if gates is not None and gates.file == env.file:
        return f"add the line `  {line}` under `gates:` ({env.file}:{gates.line}) in {env.file}"
    return f"add `gates:` with the line `  {line}` under it to {env.file}"


def stock_confirmation_problem(env: Environment, today: date) -> str | None:
    """Why the stock confirmation does not count today (missing or expired), or None."""
    confirmed = env.gates.newstore_stock_confirmed
    days = env.gates.stock_confirmation_valid_days
    what = (
        "turning external ATP off makes NewStore compute availability from its own stock; "
        "confirm that NewStore holds stock for the products (no API can prove it), then "
    )
    if confirmed is None:
        return what + stock_confirmation_line(env, today)
    expires = confirmed + timedelta(days=days)
    if today >= expires:
        return (
            f"the stock confirmation of {confirmed.isoformat()} "
            f"({env.where('gates.newstore_stock_confirmed')}) expired on {expires.isoformat()} "
            f"(it counts for {days} day{'s' if days != 1 else ''}, UTC); {what}"
            + stock_confirmation_line(env, today)
        )
    return None


def _gates(
    env: Environment,
    key: str,
    live: Value,
    desired: Value,
    probed: Sequence[Rule],
    today: date,
) -> tuple[list[Gate], list[str]]:
    """The gates a step needs and the reasons it is blocked (empty when it may run)."""
    gates: list[Gate] = []
    blocked: list[str] = []
    if probed:
        probe, target = env.gates.webhook_probe, probe_target(env)
        if key == ATP:
            doing = "turning external ATP on"
        else:
            doing = f"writing {key} while external ATP is on"
        if probe is None:
            blocked.append(
                f"{doing} needs gates.webhook_probe in {env.where('gates')}: "
                "a sample availability request (products and fulfillment_locations) sent to the "
                "webhook first, because NewStore treats every item as unavailable when the "
                "webhook fails"
            )
            gates.append(Gate(WEBHOOK_PROBE, "not configured", False))
        elif target is None:
            blocked.append(
                f"{doing} needs availability_webhook managed in {env.file}, "
                "so the webhook probe knows where to send its sample request"
            )
            gates.append(Gate(WEBHOOK_PROBE, "no webhook url to probe", False))
        else:
            secret_url = "url" in env.secret_names(WEBHOOK)
            description = probe_description(target, probe, secret_url=secret_url)
            gates.append(Gate(WEBHOOK_PROBE, description, None))
    if key == ATP and is_enabled(live) and not is_enabled(desired):
        problem = stock_confirmation_problem(env, today)
        description = (
            "a person confirmed that NewStore holds stock for the products "
            "(NewStore computes availability from its own stock once external ATP is off)"
        )
        gates.append(Gate(STOCK_CONFIRMED, description, problem is None))
        if problem is not None:
            blocked.append(problem)
    return gates, blocked
