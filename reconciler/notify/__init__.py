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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from reconciler.core.drift import DriftReport
from reconciler.notify.deliver import Delivery, RetryPolicy, post
from reconciler.notify.message import Backend, Message, Request, message_for
from reconciler.notify.pushgateway import Gateway, parse_gateway, push
from reconciler.notify.slack import SlackBackend
from reconciler.notify.targets import Target, parse_target, parse_targets
from reconciler.notify.webhook import WebhookBackend

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Backend",
    "Delivery",
    "Gateway",
    "Message",
    "Request",
    "RetryPolicy",
    "Sent",
    "Target",
    "message_for",
    "notify",
    "parse_gateway",
    "parse_target",
    "parse_targets",
    "send",
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


@dataclass(frozen=True)
class Sent:
    """What `send` could not deliver, in words without a URL; `undelivered`: a notification
    (not the push) failed, so its changes must stay unsent in the state file."""

    failures: tuple[str, ...] = ()
    undelivered: bool = False


def send(
    report: DriftReport,
    *,
    targets: Sequence[Target] = (),
    gateway: Gateway | None = None,
    every_run: bool = False,
    secret: str | None = None,
    sleep: Callable[[float], None] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Sent:
    """Everything of a drift run that leaves the machine: the metrics to the Pushgateway, then
    the notification (if there is anything to tell) to every target. Never raises for a
    receiver's failure: the CLI reports them after every file is written."""
    failures: list[str] = []
    if gateway is not None:
        failed = push(report, gateway)
        if failed is not None:
            failures.append(failed)
    undelivered = False
    message = message_for(report, every_run=every_run) if targets else None
    if message is not None:
        deliveries = notify(message, targets, secret=secret, sleep=sleep, transport=transport)
        for delivery in deliveries:
            if not delivery.delivered:
                undelivered = True
                failures.append(str(delivery))
    return Sent(tuple(failures), undelivered)
