"""`rehearsal: true`: an environment that rehearses another against the local sandbox.

`reconciler init` writes rehearsal/staging.yaml, which extends the real staging file and points
its connection at `reconciler sandbox`. Whatever that file (or its base) names as secrets, a
rehearsal sends the sandbox's public demo values instead (`reconciler.demo_keys`), and never
reads the real ones' variables: the client credentials and every setting's api_key. Its
availability webhook is the sandbox's sample webhook (so the probe before external ATP goes on
can pass, and no real webhook ever sees the demo key), and its connection must be loopback:
a rehearsal talks to this machine only.

    rehearse_secrets(merged)  before `${NAME}` substitution: the variables it reads instead
    rehearse_urls(merged)     after: the problems of its connection; sets the webhook url
    is_rehearsal(data)        whether a merged document is a rehearsal
    sample_webhook_url(url)   the webhook url a rehearsal against the sandbox at url sends
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from reconciler.config.resolve import Merged
from reconciler.demo_keys import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_ORDER_WEBHOOK_API_KEY,
    DEMO_WEBHOOK_API_KEY,
    SAMPLE_WEBHOOK_PATH,
)
from reconciler.errors import Problem
from reconciler.net import is_loopback
from reconciler.newstore.settings import REGISTRY

KEY: Final = "rehearsal"
# The variables a rehearsal's secrets are read from instead, and what they hold.
_CLIENT_SECRET: Final = "RECONCILER_REHEARSAL_CLIENT_SECRET"
_DEMO_VALUES: Final = {
    _CLIENT_SECRET: DEMO_CLIENT_SECRET,
    "RECONCILER_REHEARSAL_AVAILABILITY_WEBHOOK_API_KEY": DEMO_WEBHOOK_API_KEY,
    "RECONCILER_REHEARSAL_EXTERNAL_ORDER_WEBHOOK_API_KEY": DEMO_ORDER_WEBHOOK_API_KEY,
}


def _is_rehearsal(merged: Merged) -> bool:
    return is_rehearsal(merged.data)


def _variable(setting: str, field: str) -> str:
    name = f"RECONCILER_REHEARSAL_{setting}_{field}".upper()
    return name if name in _DEMO_VALUES else "RECONCILER_REHEARSAL_AVAILABILITY_WEBHOOK_API_KEY"


def rehearse_secrets(merged: Merged) -> dict[str, str]:
    """For a rehearsal, point every secret of `merged` at a demo value: returns the variables
    substitution reads them from (nothing for an environment that is no rehearsal)."""
    if not _is_rehearsal(merged):
        return {}
    data = merged.data
    connection = data.get("connection")
    if isinstance(connection, dict):
        connection["client_id"] = DEMO_CLIENT_ID
        connection["client_secret"] = f"${{{_CLIENT_SECRET}}}"
    for setting in REGISTRY:
        section = data.get(setting.key)
        if not isinstance(section, dict):
            continue
        for field in setting.secret_fields & section.keys():
            section[field] = f"${{{_variable(setting.key, field)}}}"
    return dict(_DEMO_VALUES)


def rehearse_urls(merged: Merged) -> list[Problem]:
    """For a rehearsal (its `${NAME}`s replaced): a connection that is not this machine is a
    problem; the availability webhook url becomes the sandbox's sample webhook."""
    if not _is_rehearsal(merged):
        return []
    data = merged.data
    connection: Any = data.get("connection")
    urls = (
        [connection.get(k) for k in ("base_url", "token_url")]
        if isinstance(connection, dict)
        else []
    )
    hosts = [urlsplit(url).hostname if isinstance(url, str) else None for url in urls]
    if len(hosts) != 2 or not all(host is not None and is_loopback(host) for host in hosts):
        return [
            merged.problem(
                KEY,
                "a rehearsal talks to the local sandbox only: set connection.base_url and "
                "connection.token_url to loopback URLs, e.g. http://127.0.0.1:8765/<tenant> "
                "and http://127.0.0.1:8765/auth/realms/<tenant>/protocol/openid-connect/token",
            )
        ]
    webhook = data.get("availability_webhook")
    if isinstance(webhook, dict):
        webhook["url"] = sample_webhook_url(str(urls[0]))
    return []


def is_rehearsal(data: Any) -> bool:
    """Whether a merged document (after `extends`) says `rehearsal: true`."""
    return isinstance(data, dict) and data.get(KEY) is True


def sample_webhook_url(base_url: str) -> str:
    """The availability webhook a rehearsal against the sandbox at `base_url` sends."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}{SAMPLE_WEBHOOK_PATH}"
