"""The drift report as one self-contained HTML page (`drift --output html=PATH`): the dashboard
a person opens to see every environment at a glance.

Rendered by Jinja2 from `templates/dashboard.html.j2` with autoescaping on: environment names,
tenants and NewStore's messages are untrusted text, and a `<script>` in any of them must reach
the page as text. The page loads nothing (inline CSS, no script, no font or image from the
network; its Content-Security-Policy says so to the browser too) and reads the same with
JavaScript off. Every status is shown in words beside its colour.

The view handed to the template is the report itself, sorted worst first, plus the words of
`reconciler.render.drift`; nothing here reads or decides anything the report does not hold.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import jinja2

from reconciler._version import __version__
from reconciler.core.drift import SEVERITY, DriftReport, DriftStatus, EnvDrift
from reconciler.render._format import plural, show_value
from reconciler.render.drift import HARM, LABEL, MEANING, provenance_line, run_link, uncompared


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("reconciler.render", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _field_name(path: str) -> str:
    return path.split(".", 1)[1]


def _probe(env: EnvDrift) -> tuple[str, str]:
    """The probe column: a word and a CSS class."""
    if env.probe_ok is True:
        return "passed", "ok"
    if env.probe_ok is False:
        return "FAILED", "bad"
    return ("not probed", "none") if env.status is not DriftStatus.ERROR else ("–", "none")


def _row(index: int, env: EnvDrift, report: DriftReport) -> dict[str, Any]:
    probe_word, probe_class = _probe(env)
    since = report.history.since.get(env.name) if report.history is not None else None
    return {
        "anchor": f"env-{index}",
        "env": env,
        "status": str(env.status),
        "label": LABEL[env.status],
        "meaning": MEANING[env.status],
        "drifted": ", ".join(s.setting for s in env.settings),
        "fields": [
            {
                "setting": s.setting,
                "fix": str(s.fix),
                "name": _field_name(f.path),
                "live": show_value(f.before),
                "desired": show_value(f.after),
            }
            for s in env.settings
            for f in s.fields
        ],
        "rules": [
            {
                "rule": f"rule {rule.number}: {rule.text}",
                "harm": HARM[rule.harm],
                "harm_class": rule.harm.name.lower(),
                "consequence": rule.consequence,
            }
            for rule in env.broken_rules
        ],
        # Violations no rule object backs (a plan made before rule ids existed): words only.
        "other_violations": env.live_violations[len(env.broken_rules) :],
        "uncompared": [uncompared(path) for path in env.uncompared_secrets],
        "read_for_rules": [
            f"{key} (rule{'s' if len(numbers) != 1 else ''} {', '.join(map(str, numbers))})"
            for key, numbers in env.read_for_rules.items()
        ],
        "probe_word": probe_word,
        "probe_class": probe_class,
        "since": _when(since) if since is not None else "",
        "detailed": env.status is not DriftStatus.IN_SYNC
        or bool(env.live_violations or env.notes or env.probe or env.uncompared_secrets),
    }


def render_dashboard(report: DriftReport) -> str:
    """The whole page, as text."""
    rows = [_row(i, env, report) for i, env in enumerate(report.worst_first(), 1)]
    counts = [
        {"status": str(s), "label": LABEL[s], "count": report.count(s)}
        for s in SEVERITY
        if report.count(s)
    ]
    worst = rows[0]["env"].status if rows else DriftStatus.IN_SYNC
    changes = report.history.changes if report.history is not None else ()
    return (
        _templates()
        .get_template("dashboard.html.j2")
        .render(
            rows=rows,
            counts=counts,
            total=plural(len(report.environments), "environment"),
            worst=str(worst),
            worst_label=LABEL[worst],
            worst_meaning=MEANING[worst],
            provenance=provenance_line(report),
            checked_at=_when(report.checked_at),
            commit=report.config_commit,
            run_url=run_link(report),
            last_success=_when(report.last_success_at),
            changes=[
                {
                    "name": c.name,
                    "label": LABEL[c.status],
                    "status": str(c.status),
                    "previous": "new" if c.previous is None else LABEL[c.previous],
                }
                for c in changes
            ],
            history_known=report.history is not None and report.history.known,
            version=__version__,
        )
    )
