"""Formatting shared by the renderers."""

from __future__ import annotations

from reconciler.core.plan import PARTNER_NOT_WRITTEN, EnvPlan, Gate, RunPlan, Status

# The renderers' one way to show a value, shared with the core's messages.
from reconciler.model import show_value as show_value
from reconciler.policy import Decision, explain


def cell(text: str) -> str:
    """Markdown-table-cell safe: a pipe or newline would end the cell or the row (GFM honours
    the escaped pipe even inside a code span)."""
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    """A Markdown code span that survives backticks in `text`."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def gate_state(gate: Gate) -> str:
    if gate.satisfied is None:
        return "checked at apply"
    return "satisfied" if gate.satisfied else "NOT satisfied"


def env_summary(env: EnvPlan) -> str:
    if env.status is Status.ERROR:
        return "error"
    if env.status is Status.CONVERGED:
        return "no changes"
    changes = f"{len(env.steps)} to change"
    if env.policy is not None and not env.policy.allowed:
        changes += ", apply held by its change policy now"
    return f"{changes}, blocked" if env.status is Status.BLOCKED else changes


def run_summary(run: RunPlan) -> str:
    envs = run.environments
    changes = sum(len(e.steps) for e in envs if e.status is not Status.ERROR)
    blocked = sum(e.status is Status.BLOCKED for e in envs)
    errors = sum(e.status is Status.ERROR for e in envs)
    return (
        f"Plan: {plural(len(envs), 'environment')}, {plural(changes, 'change')}, "
        f"{blocked} blocked, {plural(errors, 'error')}"
    )


def policy_state(decision: Decision) -> str:
    """Whether an apply now may write, for the plan's reader: "apply now: allowed by the policy
    until …" or "apply now: BLOCKED by policy rule freeze: …; next allowed …"."""
    if decision.allowed:
        return f"apply now: {explain(decision)}"
    return (
        f"apply now: BLOCKED {explain(decision).removeprefix('blocked ')} "
        '(`apply --break-glass "REASON"` overrides it in an emergency)'
    )


def read_for_rules(env: EnvPlan) -> list[str]:
    """One line per setting read for a rule: "read for rule 1 (not managed here, never
    written): external_atp = {"enabled": true}"."""
    lines = []
    for key, numbers in env.read_for_rules.items():
        rules = ", ".join(str(n) for n in numbers)
        which = f"rule{'s' if len(numbers) != 1 else ''} {rules}"
        shown = show_value(env.live.get(key), sort_keys=True)
        lines.append(f"read for {which} ({PARTNER_NOT_WRITTEN}): {key} = {shown}")
    return lines
