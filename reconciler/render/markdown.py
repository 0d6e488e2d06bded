"""The plan as a pull-request comment: what needs a person first, then each environment's
ordered steps (a numbered list, and the same path as a Mermaid diagram that GitHub and GitLab
draw: `reconciler.render.mermaid`), with field-level detail folded away in <details>."""

from __future__ import annotations

from reconciler.core.plan import EnvPlan, RunPlan, Status
from reconciler.provenance import ConfigCommit
from reconciler.render._format import (
    cell,
    code,
    env_summary,
    gate_state,
    policy_state,
    read_for_rules,
    run_summary,
    show_value,
)
from reconciler.render.mermaid import plan_diagram

_BADGE = {
    Status.CONVERGED: "✅ converged",
    Status.CHANGES: "📝 changes",
    Status.BLOCKED: "⛔ blocked",
    Status.ERROR: "❌ error",
}


def _env_section(env: EnvPlan) -> list[str]:
    read_from = f", read from {code(env.identity)}" if env.identity else ""
    lines = [f"### {env.name} ({code(env.tenant)}{read_from}): {env_summary(env)}", ""]
    if env.status is Status.ERROR:
        return [*lines, f"❌ {env.error}", ""]
    if env.live_violations:
        lines.append("> [!WARNING]")
        lines.append("> The live state already breaks safety rules; the steps repair them first:")
        lines += [f"> - {v}" for v in env.live_violations]
        lines.append("")
    if env.read_for_rules:
        lines += [f"- 🔎 {cell(line)}" for line in read_for_rules(env)]
        lines.append("")
    if env.status is Status.BLOCKED:
        lines += ["⛔ **Blocked** (reasons above): apply refuses this environment.", ""]
    if env.status is Status.CONVERGED:
        return [*lines, "No changes: the live state matches the desired state.", ""]
    if env.policy is not None:
        icon = "🕒" if env.policy.allowed else "⏸️"
        lines += [f"{icon} **{policy_state(env.policy)}**", ""]
    for number, step in enumerate(env.steps, 1):
        lines.append(f"{number}. **{step.setting}**: {step.action}")
    lines.append("")
    diagram = plan_diagram(env)
    if diagram:
        lines += [*diagram, ""]
    for number, step in enumerate(env.steps, 1):
        lines.append(f"<details><summary>{number}. {step.setting}: {step.action}</summary>")
        lines.append("")
        if step.changes:
            lines += ["| field | before | after |", "|---|---|---|"]
            lines += [
                f"| {cell(code(c.path))} | {cell(code(show_value(c.before)))} "
                f"| {cell(code(show_value(c.after)))} |"
                for c in step.changes
            ]
            lines.append("")
        lines.append(f"**Why:** {step.why}")
        for gate in step.gates:
            lines.append("")
            lines.append(f"**Gate `{gate.name}`** ({gate_state(gate)}): {gate.description}")
        lines += ["", "</details>", ""]
    if env.notes:
        lines += [f"- ℹ️ {note}" for note in env.notes]
        lines.append("")
    return lines


def planned_from(commit: ConfigCommit | None, checksum: str) -> str:
    """The closing line: the configuration commit and the plan (its file's checksum) this
    comment shows, so that a reviewer can tell which push it belongs to and an apply job which
    plan file it is."""
    where = (
        f"config commit `{commit.sha[:12]}`{' with uncommitted changes' if commit.dirty else ''}"
        if commit is not None
        else "files outside a git repository (no config commit)"
    )
    return f"<sub>Planned from {where}; plan checksum `{checksum}`.</sub>"


def render_markdown(
    run: RunPlan, *, commit: ConfigCommit | None = None, checksum: str | None = None
) -> str:
    """The plan as Markdown; with `checksum`, it ends with the commit and checksum it was
    planned from (`planned_from`)."""
    lines = ["## NewStore reconciler plan", "", run_summary(run), ""]
    lines += ["| environment | status | changes |", "|---|---|---|"]
    lines += [
        f"| {cell(env.name)} | {_BADGE[env.status]} | "
        f"{'–' if env.status is Status.ERROR else len(env.steps)} |"
        for env in run.environments
    ]
    lines.append("")
    blocked = [env for env in run.environments if env.status is Status.BLOCKED]
    errors = [env for env in run.environments if env.status is Status.ERROR]
    if blocked:
        lines += ["### ⛔ Blocked: apply will refuse these until resolved", ""]
        lines += [f"- **{env.name}**: {reason}" for env in blocked for reason in env.blocked_by]
        lines.append("")
    held = [env for env in run.environments if env.policy and not env.policy.allowed]
    if held:
        lines += ["### ⏸️ Outside the change policy: an apply right now would be refused", ""]
        lines += [f"- **{env.name}**: {policy_state(env.policy)}" for env in held if env.policy]
        lines.append("")
    if errors:
        lines += ["### ❌ Errors: these environments could not be planned", ""]
        lines += [f"- **{env.name}**: {env.error}" for env in errors]
        lines.append("")
    for env in run.environments:
        lines += _env_section(env)
    if checksum is not None:
        lines += ["---", "", planned_from(commit, checksum)]
    return "\n".join(lines).rstrip("\n") + "\n"
