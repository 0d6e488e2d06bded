"""The Slack backend: the notification as a Block Kit message for an incoming webhook.

Worst first, in the dashboard's words (`reconciler.render.drift`): a header, one section per
environment (its status in words with an emoji, what it was before, why: the unhealthy
webhook, the rules the live state breaks with their harm, the drifted settings, the error),
and a context line saying when, from which config commit, and a link to the run.

Everything from a file or from NewStore is escaped the way Slack asks (`&`, `<`, `>`), so a
name cannot ping `<!channel>` or forge a link. Slack's limits are kept: at most 50 blocks and
3,000 characters a section; beyond `MAX_ENVIRONMENTS`, a line says how many more there are.
"""

from __future__ import annotations

import json
from typing import Any, Final

from reconciler.core.drift import DriftStatus, EnvChange, EnvDrift
from reconciler.notify.message import Message, Request
from reconciler.render._format import plural
from reconciler.render.drift import HARM, LABEL, MEANING, provenance_line, run_link

MAX_ENVIRONMENTS: Final = 20
MAX_SECTION: Final = 2900  # Slack refuses a section text over 3,000 characters
MAX_LIST: Final = 3  # reasons, rules, settings shown per environment
_EMOJI: Final = {
    DriftStatus.IN_SYNC: ":white_check_mark:",
    DriftStatus.DRIFT: ":warning:",
    DriftStatus.BLOCKED: ":no_entry:",
    DriftStatus.UNHEALTHY: ":rotating_light:",
    DriftStatus.ERROR: ":x:",
}


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: the three characters that start entities, links, mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bullets(items: list[str]) -> list[str]:
    shown = [f"• {escape(_clip(item, 400))}" for item in items[:MAX_LIST]]
    if len(items) > MAX_LIST:
        shown.append(f"• …and {len(items) - MAX_LIST} more")
    return shown


def _section(env: EnvDrift, change: EnvChange | None) -> dict[str, Any]:
    was = ""
    if change is not None and change.previous is not None:
        was = f" (was {LABEL[change.previous]})"
    elif change is not None:
        was = " (new)"
    lines = [
        f"{_EMOJI[env.status]} *{escape(env.name)}* (tenant `{escape(env.tenant)}`): "
        f"*{LABEL[env.status]}*{was}",
        f"_{MEANING[env.status]}_",
    ]
    if env.status is DriftStatus.ERROR:
        lines += _bullets([env.error])
    lines += _bullets(list(env.unhealthy))
    lines += _bullets(
        [f"{HARM[r.harm]}: rule {r.number}: {r.consequence}" for r in env.broken_rules]
    )
    if env.settings:
        fields = sum(len(s.fields) for s in env.settings)
        settings = ", ".join(s.setting for s in env.settings)
        lines.append(f"Drifted: {escape(settings)} ({plural(fields, 'field')})")
    lines += _bullets(
        [f"{path}: the key NewStore holds could not be compared" for path in env.uncompared_secrets]
    )
    if env.blocked_by:
        lines.append("The fix is blocked:")
        lines += _bullets(list(env.blocked_by))
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _clip("\n".join(lines), MAX_SECTION)},
    }


def slack_message(message: Message) -> dict[str, Any]:
    report = message.report
    if message.every_run:
        title = f"NewStore drift: {plural(len(report.environments), 'environment')}"
    else:
        title = f"NewStore drift: {plural(message.changes, 'environment')} changed"
    counts = ", ".join(
        f"{report.count(status)} {LABEL[status]}" for status in DriftStatus if report.count(status)
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(title, 150)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": escape(counts or "no environments")},
        },
    ]
    entries = message.entries[:MAX_ENVIRONMENTS]
    blocks += [_section(env, change) for env, change in entries]
    if len(message.entries) > MAX_ENVIRONMENTS:
        more = len(message.entries) - MAX_ENVIRONMENTS
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"…and {more} more: see the dashboard."},
            }
        )
    context = escape(provenance_line(report, capital=True))
    link = run_link(report)
    if link:
        context += f" · <{link}|the run>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    fallback = "; ".join(
        f"{env.name}: {LABEL[env.status]}" for env, _ in message.entries[:MAX_ENVIRONMENTS]
    )
    return {"text": escape(_clip(f"{title}: {fallback}", 3000)), "blocks": blocks}


class SlackBackend:
    kind = "slack"

    def request(self, message: Message, *, secret: str | None) -> Request:
        # Slack's incoming webhooks check no signature of ours; the URL is the credential.
        body = json.dumps(slack_message(message), ensure_ascii=False).encode()
        return Request(body, {})
