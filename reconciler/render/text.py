"""The plan as terminal text: per environment, what is wrong first, then the steps in order."""

from __future__ import annotations

import click

from reconciler.core.plan import Action, EnvPlan, RunPlan, Status
from reconciler.render._format import (
    env_summary,
    gate_state,
    policy_state,
    read_for_rules,
    run_summary,
    show_value,
)

_ACTION_COLOR = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red"}
_STATUS_COLOR = {
    Status.CONVERGED: "green",
    Status.CHANGES: "yellow",
    Status.BLOCKED: "red",
    Status.ERROR: "red",
}


def _env_lines(env: EnvPlan, color: bool) -> list[str]:
    def style(text: str, **kwargs: object) -> str:
        return click.style(text, **kwargs) if color else text  # type: ignore[arg-type]

    # Where the plan read: a reviewer checks the host, not just the tenant's label.
    read_from = f", read from {env.identity}" if env.identity else ""
    lines = [style(f"{env.name} (tenant {env.tenant}{read_from})", bold=True)]
    if env.status is Status.ERROR:
        lines.append(style(f"  ❌ error: {env.error}", fg="red"))
    if env.live_violations:
        lines.append(style("  Live state already breaks safety rules:", fg="yellow", bold=True))
        lines += [style(f"    ! {v}", fg="yellow") for v in env.live_violations]
    if env.blocked_by:
        lines.append(style("  Blocked (apply refuses this environment):", fg="red", bold=True))
        lines += [style(f"    ⛔ {reason}", fg="red") for reason in env.blocked_by]
    lines += [f"  {line}" for line in read_for_rules(env)]
    if env.status is Status.CONVERGED:
        lines.append("  No changes: the live state matches the desired state.")
    for number, step in enumerate(env.steps, 1):
        action = style(str(step.action), fg=_ACTION_COLOR[step.action])
        lines.append(f"  {number}. {step.setting}: {action}")
        for change in step.changes:
            name = change.path.split(".", 1)[1]
            lines.append(f"       {name}: {show_value(change.before)} → {show_value(change.after)}")
        lines.append(f"       why: {step.why}")
        for gate in step.gates:
            lines.append(f"       gate {gate.name} ({gate_state(gate)}): {gate.description}")
    if env.policy is not None:
        shown = policy_state(env.policy)
        lines.append("  " + (shown if env.policy.allowed else style(shown, fg="red", bold=True)))
    lines += [f"  note: {note}" for note in env.notes]
    summary = f"{env.name}: {env_summary(env)}"
    lines.append(style(summary, fg=_STATUS_COLOR[env.status]))
    return lines


def render_text(run: RunPlan, *, color: bool) -> str:
    blocks = ["\n".join(_env_lines(env, color)) for env in run.environments]
    footer = run_summary(run)
    blocks.append(click.style(footer, bold=True) if color else footer)
    return "\n\n".join(blocks) + "\n"
