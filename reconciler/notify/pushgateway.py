"""Pushing the drift metrics to a Prometheus Pushgateway (`drift --pushgateway URL`), for
teams whose cron runs where no node_exporter reads a textfile.

The metrics are `reconciler.render.metrics`' registry, pushed with the official client
(`prometheus_client.push_to_gateway`: a PUT that replaces the group) under the job
`newstore_reconciler`. The URL may carry credentials and is never shown, only its host; a
`${VAR}` in it is read from the environment. Plain http is accepted here (a Pushgateway
usually sits inside the network, unlike a chat webhook).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from prometheus_client import push_to_gateway
from prometheus_client.exposition import default_handler

from reconciler.core.drift import DriftReport
from reconciler.errors import ConfigError
from reconciler.notify.targets import expand, host_of
from reconciler.render.metrics import metrics_registry

JOB: Final = "newstore_reconciler"
TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class Gateway:
    url: str = field(repr=False)
    shown: str

    def __str__(self) -> str:
        return self.shown


def parse_gateway(value: str, environ: Mapping[str, str]) -> Gateway:
    url, used = expand(value.strip(), environ, "--pushgateway")
    origin = f" (${{{used[0]}}})" if used else ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is no number
    except ValueError:
        raise ConfigError(f"--pushgateway{origin}: not a URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--pushgateway{origin}: expected an http:// or https:// URL.")
    return Gateway(url, f"Pushgateway at {host_of(url)}{origin}")


Handler = Callable[..., Callable[[], None]]


def push(report: DriftReport, gateway: Gateway, *, handler: Handler | None = None) -> str | None:
    """Push the report's metrics; None when the gateway took them, else why not (in words
    without the URL)."""
    registry = metrics_registry(report)
    try:
        push_to_gateway(
            gateway.url,
            job=JOB,
            registry=registry,
            timeout=TIMEOUT,
            handler=handler or default_handler,
        )
    except Exception as exc:
        return f"could not push the metrics to the {gateway}: {_why(exc)}"
    return None


def _why(exc: Any) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return f"answered {code}"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__
