"""Where notifications go: the `--notify` values as `Target`s.

    https://hooks.example/reconciler        a generic JSON webhook
    slack:https://hooks.slack.com/...       a Slack incoming webhook
    ${RECONCILER_SLACK_URL}                 either, read from the environment (the value may
                                            carry the `slack:` prefix itself)

A webhook URL is a secret (whoever has it can post to the channel), so it is never shown:
messages name a target by its kind, its host and the variable it came from. Only https is
accepted, but for this machine's loopback addresses (a local receiver, the tests'), where
plain http cannot be overheard.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from reconciler.errors import ConfigError
from reconciler.net import is_loopback

SLACK_PREFIX: Final = "slack:"
_VARIABLE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Target:
    kind: str  # "webhook" or "slack"
    url: str = field(repr=False)  # a secret: never in a message, a repr or a log
    shown: str  # how messages name it: 'slack webhook at hooks.slack.com (${SLACK_URL})'

    def __str__(self) -> str:
        return self.shown


def expand(value: str, environ: Mapping[str, str], option: str) -> tuple[str, list[str]]:
    """`value` with every `${VAR}` replaced from `environ`, and the variables it used; an
    unset or empty variable is a ConfigError naming it (not its value)."""
    used: list[str] = []

    def one(match: re.Match[str]) -> str:
        name = match[1]
        if not environ.get(name):
            raise ConfigError(f"{option} ${{{name}}}: the variable {name} is not set.")
        used.append(name)
        return environ[name]

    return _VARIABLE.sub(one, value), used


def host_of(url: str) -> str:
    """The host (and a non-default port) of `url`, the one part of it safe to show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "an unparsable URL"
    return f"{host}:{port}" if port else host or "an unparsable URL"


def parse_target(value: str, environ: Mapping[str, str], *, number: int = 1) -> Target:
    """One `--notify` value as a Target; a ConfigError says what is wrong without quoting
    the URL (beyond its host)."""
    expanded, used = expand(value.strip(), environ, "--notify")
    kind = "webhook"
    url = expanded.strip()
    if url.startswith(SLACK_PREFIX):
        kind, url = "slack", url[len(SLACK_PREFIX) :].strip()
    origin = f" (${{{used[0]}}})" if used else ""
    name = f"--notify #{number}{origin}"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is no number
    except ValueError:
        raise ConfigError(f"{name}: not a URL.") from None
    if not host or parts.scheme not in ("https", "http"):
        raise ConfigError(
            f"{name}: expected an https:// URL, or slack:https://... for a Slack incoming webhook."
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"{name}: refusing plain http to {host}: a webhook URL is a secret and the "
            "notification names your tenants; use https (http only to this machine's "
            "loopback address)."
        )
    if parts.username or parts.password:
        raise ConfigError(f"{name}: a URL with a user or password is not accepted.")
    return Target(kind, url, f"{kind} webhook at {host_of(url)}{origin}")


def parse_targets(values: Sequence[str], environ: Mapping[str, str]) -> list[Target]:
    return [parse_target(value, environ, number=i) for i, value in enumerate(values, 1)]
