"""The drift report for people: terminal text, and markdown for a ticket, PR comment or job
summary; and the words every drift output shares (the dashboard, Slack). (The JSON form is
`reconciler.core.drift.drift_to_json`.)"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Final

import click

from reconciler._version import __version__
from reconciler.core.drift import DriftReport, DriftStatus, EnvDrift
from reconciler.render._format import cell, code, plural, show_value
from reconciler.rules import Harm

# The status in one word or two, and what it means, for outputs that show a status by colour:
# never by colour alone.
LABEL: Final = {
    DriftStatus.IN_SYNC: "in sync",
    DriftStatus.DRIFT: "drift",
    DriftStatus.BLOCKED: "blocked",
    DriftStatus.UNHEALTHY: "unhealthy",
    DriftStatus.ERROR: "error",
}
MEANING: Final = {
    DriftStatus.IN_SYNC: "the live state matches the file",
    DriftStatus.DRIFT: "the live state differs from the file",
    DriftStatus.BLOCKED: "the live state differs, and a gate or safety rule stops the fix",
    DriftStatus.UNHEALTHY: "the live webhook cannot serve availability: the retailer may not "
    "be selling",
    DriftStatus.ERROR: "could not be read",
}
HARM: Final = {
    Harm.STOPS_SELLING: "stops selling",
    Harm.MISROUTES: "misroutes orders or availability",
    Harm.MISLEADS_STAFF: "misleads staff",
}


_LINK: Final = re.compile(r"https?://[^\s()<>\[\]\"'`]+")


def run_link(report: DriftReport) -> str | None:
    """The CI run's URL where it is a plain http(s) URL, safe to put in a link; else None."""
    url = report.run_url
    return url if url is not None and _LINK.fullmatch(url) else None


def provenance_line(report: DriftReport, *, capital: bool = False) -> str:
    """When and from what the report was made, in words: "checked 2025-01-02 05:17 UTC from
    config commit 3f2c9a1b0d4e (dirty), reconciler 0.1.0"."""
    when = report.checked_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = (
        "outside git (no config commit)"
        if report.config_commit is None
        else f"from config commit {report.config_commit}"
    )
    return f"{'C' if capital else 'c'}hecked {when} {commit}, reconciler {__version__}"


_WORDS = {
    DriftStatus.IN_SYNC: "in sync",
    DriftStatus.DRIFT: "drift",
    DriftStatus.BLOCKED: "drift, fix blocked",
    DriftStatus.UNHEALTHY: "UNHEALTHY",
    DriftStatus.ERROR: "error",
}
_COLOR = {
    DriftStatus.IN_SYNC: "green",
    DriftStatus.DRIFT: "yellow",
    DriftStatus.BLOCKED: "red",
    DriftStatus.UNHEALTHY: "red",
    DriftStatus.ERROR: "red",
}
_BADGE = {
    DriftStatus.IN_SYNC: "✅ in sync",
    DriftStatus.DRIFT: "⚠️ drift",
    DriftStatus.BLOCKED: "⛔ drift, fix blocked",
    DriftStatus.UNHEALTHY: "🚨 unhealthy",
    DriftStatus.ERROR: "❌ error",
}


def drift_summary(report: DriftReport) -> str:
    unhealthy = report.count(DriftStatus.UNHEALTHY)
    first = f"{unhealthy} UNHEALTHY, " if unhealthy else ""
    return (
        f"Drift: {plural(len(report.environments), 'environment')}: {first}"
        f"{report.count(DriftStatus.IN_SYNC)} in sync, "
        f"{report.count(DriftStatus.DRIFT)} drifted, "
        f"{report.count(DriftStatus.BLOCKED)} blocked, "
        f"{plural(report.count(DriftStatus.ERROR), 'error')}"
    )


def uncompared(path: str) -> str:
    """The plain words for a secret whose held value could not be compared."""
    return (
        f"{path}: NewStore answers it masked: the key it holds could not be compared with the "
        "file's (in sync does not vouch for it; apply re-asserts it before external ATP or "
        "use_new_om_ui goes on, `--replace` rewrites it now)"
    )


def _drifted(env: EnvDrift) -> str:
    return ", ".join(s.setting for s in env.settings)


# --- text ----------------------------------------------------------------------------------------


def _env_lines(env: EnvDrift, color: bool) -> list[str]:
    def style(text: str, **kwargs: object) -> str:
        return click.style(text, **kwargs) if color else text  # type: ignore[arg-type]

    status = style(_WORDS[env.status], fg=_COLOR[env.status], bold=True)
    lines = [f"{style(env.name, bold=True)} (tenant {env.tenant}): {status}"]
    if env.status is DriftStatus.ERROR:
        return [*lines, style(f"  ❌ {env.error}", fg="red")]
    if env.unhealthy:
        lines.append(style("  The live webhook cannot serve availability:", fg="red", bold=True))
        lines += [style(f"    🚨 {reason}", fg="red") for reason in env.unhealthy]
    elif env.probe:
        lines.append(f"  probe: {env.probe}")
    lines += [f"  {uncompared(path)}" for path in env.uncompared_secrets]
    if env.live_violations:
        lines.append(style("  Live state breaks safety rules:", fg="yellow", bold=True))
        lines += [style(f"    ! {v}", fg="yellow") for v in env.live_violations]
    if env.settings:
        lines.append("  Differs from the file (live → desired):")
    for setting in env.settings:
        lines.append(f"    {setting.setting} (apply would {setting.fix}):")
        for change in setting.fields:
            name = change.path.split(".", 1)[1]
            lines.append(f"      {name}: {show_value(change.before)} → {show_value(change.after)}")
    if env.blocked_by:
        lines.append(style("  The fix is blocked:", fg="red", bold=True))
        lines += [style(f"    ⛔ {reason}", fg="red") for reason in env.blocked_by]
    lines += [f"  note: {note}" for note in env.notes]
    return lines


def render_drift_text(report: DriftReport, *, color: bool) -> str:
    blocks = ["\n".join(_env_lines(env, color)) for env in report.environments]
    footer = drift_summary(report)
    blocks.append(click.style(footer, bold=True) if color else footer)
    return "\n\n".join(blocks) + "\n"


# --- markdown ------------------------------------------------------------------------------------


def _env_section(env: EnvDrift) -> list[str]:
    lines = [f"### {env.name} (`{env.tenant}`): {_BADGE[env.status]}", ""]
    if env.status is DriftStatus.ERROR:
        return [*lines, f"Could not be read: {env.error}", ""]
    if env.unhealthy:
        lines.append("> [!CAUTION]")
        lines.append("> The live webhook cannot serve availability while external ATP is on:")
        lines += [f"> - {reason}" for reason in env.unhealthy]
        lines.append("")
    elif env.probe:
        lines += [f"Probe: {env.probe}", ""]
    if env.uncompared_secrets:
        lines += [f"- 🔒 {uncompared(path)}" for path in env.uncompared_secrets]
        lines.append("")
    if env.live_violations:
        lines.append("> [!WARNING]")
        lines.append("> The live state breaks safety rules:")
        lines += [f"> - {v}" for v in env.live_violations]
        lines.append("")
    if env.settings:
        lines += ["| setting | fix | field | live | desired |", "|---|---|---|---|---|"]
        for setting in env.settings:
            for change in setting.fields:
                lines.append(
                    f"| {setting.setting} | {setting.fix} | "
                    f"{cell(code(change.path.split('.', 1)[1]))} | "
                    f"{cell(code(show_value(change.before)))} | "
                    f"{cell(code(show_value(change.after)))} |"
                )
        lines.append("")
    if env.blocked_by:
        lines += ["**The fix is blocked:**", ""]
        lines += [f"- ⛔ {reason}" for reason in env.blocked_by]
        lines.append("")
    if env.notes:
        lines += [f"- ℹ️ {note}" for note in env.notes]
        lines.append("")
    return lines


def render_drift_markdown(report: DriftReport) -> str:
    lines = ["## NewStore drift report", "", drift_summary(report), ""]
    link = run_link(report)
    run = f" ([run]({link}))" if link else ""
    lines += [f"<sub>{provenance_line(report, capital=True)}{run}.</sub>", ""]
    lines += ["| environment | tenant | status | drifted settings |", "|---|---|---|---|"]
    lines += [
        f"| {cell(env.name)} | {cell(code(env.tenant))} | {_BADGE[env.status]} | "
        f"{cell(_drifted(env)) or '–'} |"
        for env in report.environments
    ]
    lines.append("")
    for env in report.environments:
        if (
            env.status is not DriftStatus.IN_SYNC
            or env.live_violations
            or env.notes
            or env.probe
            or env.uncompared_secrets
        ):
            lines += _env_section(env)
    return "\n".join(lines).rstrip("\n") + "\n"
