"""`reconciler vars` in words: one line per place a variable is used, names only, e.g.

NEWSTORE_CLIENT_ID  set      environments/_base.yaml:8  connection.client_id  (eu, staging)
ACME_ATP_API_KEY    not set  environments/eu.yaml:12  availability_webhook.api_key  (eu)
"""

from __future__ import annotations

from reconciler.config.variables import Use, VariableReport


def _where(use: Use) -> str:
    if use.default:
        return f"{use.file} (default of {use.path})"
    return f"{use.file}:{use.line}  {use.path}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _rehearsals(report: VariableReport) -> str:
    return "".join(
        f"{name} is a rehearsal: the sandbox's demo credentials and keys stand in for its "
        "secrets, so it needs none of their variables.\n"
        for name in report.rehearsals
    )


def render_variables(report: VariableReport) -> str:
    if not report.variables:
        shown = ", ".join(report.environments) or "none"
        return f"No ${{NAME}} variables are used (environments: {shown}).\n" + _rehearsals(report)
    width = max(len(v.name) for v in report.variables)
    lines: list[str] = []
    for variable in report.variables:
        places: dict[str, list[str]] = {}
        for use in variable.uses:
            places.setdefault(_where(use), []).append(use.environment)
        status = "set" if variable.set else "not set"
        for index, (where, envs) in enumerate(places.items()):
            head = f"{variable.name:<{width}}  {status:<7}" if index == 0 else " " * (width + 9)
            lines.append(f"{head}  {where}  ({', '.join(sorted(set(envs)))})")
    summary = (
        f"{_count(len(report.variables), 'variable')} for "
        f"{_count(len(report.environments), 'environment')}"
    )
    missing = report.missing
    summary += f"; {len(missing)} not set: {', '.join(missing)}" if missing else "; all set"
    return "\n".join(lines) + "\n\n" + summary + ".\n" + _rehearsals(report)
