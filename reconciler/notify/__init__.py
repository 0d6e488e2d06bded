"""Telling people: drift notifications (`drift --notify URL`) and pushed metrics
(`drift --pushgateway URL`), beside the renderers that write files.

A notification is about changes (`DriftReport.history.changes`: an environment starts
drifting, drifts differently, turns unhealthy, errors, or recovers); a repeat of the same
status sends nothing unless `every_run`. What goes out is rendered from the run's one report
value, by one backend per kind of receiver, behind one small interface (`Backend`):

    webhook   `https://...`        a JSON document (`format_version` 1), HMAC-SHA256 signed
    slack     `slack:https://...`  a Slack incoming webhook's Block Kit message

`targets` turns the `--notify` values into `Target`s (a `${VAR}` is read from the
environment; the URLs are secrets and are never shown, only their host); `deliver` posts with
bounded retries on 429 and 5xx; `notify` ties them together and returns what could not be
delivered, for the CLI to report after every other output is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from reconciler.notify.deliver import Delivery, RetryPolicy, post
from reconciler.notify.message import Backend, Message, Request, message_for
from reconciler.notify.slack import SlackBackend
from reconciler.notify.targets import Target, parse_target, parse_targets
from reconciler.notify.webhook import WebhookBackend

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Backend",
    "Delivery",
    "Message",
    "Request",
    "RetryPolicy",
    "Target",
    "message_for",
    "notify",
    "parse_target",
    "parse_targets",
]

SECRET_VARIABLE: Final = "RECONCILER_NOTIFY_SECRET"


def backend_for(target: Target) -> Backend:
    """The one place a target's kind picks its backend."""
    backends: dict[str, Backend] = {"webhook": WebhookBackend(), "slack": SlackBackend()}
    return backends[target.kind]


def notify(
    message: Message,
    targets: Sequence[Target],
    *,
    secret: str | None = None,
    policy: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] | None = None,
) -> list[Delivery]:
    """Send `message` to every target (each tried on its own: one that fails does not stop
    the others); the Delivery of each, in order. `secret` signs the generic webhook's body."""
    deliveries = []
    for target in targets:
        request = backend_for(target).request(message, secret=secret)
        deliveries.append(
            post(
                target,
                request.body,
                request.headers,
                policy=policy,
                transport=transport,
                sleep=sleep,
            )
        )
    return deliveries
