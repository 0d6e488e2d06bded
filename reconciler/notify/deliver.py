"""Posting one notification: bounded retries with backoff, a table from answer to outcome.

    2xx                  delivered
    429, 5xx, 408        retried (honouring Retry-After, capped), up to `attempts` in all
    a transport error    retried likewise (refused, reset, timed out: the receiver may be back)
    any other answer     undeliverable at once (404: the webhook was deleted; 400: refused)

Nothing here sleeps on its own: `sleep` is a parameter (tests pass one that records), and the
delays are bounded (`RetryPolicy`), so a drift run never hangs on a receiver. No message
quotes the URL: only the target's `shown` name.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from reconciler._version import __version__
from reconciler.notify.targets import Target


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff: float = 1.0  # seconds before the 2nd attempt; doubled before each next one
    max_delay: float = 30.0  # the longest wait, Retry-After included
    timeout: float = 10.0  # per attempt


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAIL = "fail"


_RETRIED_STATUSES: Final = frozenset({408, 429})


def outcome_of(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in _RETRIED_STATUSES or 500 <= status < 600:
        return Outcome.RETRY
    return Outcome.FAIL


@dataclass(frozen=True)
class Delivery:
    target: Target
    delivered: bool
    attempts: int
    detail: str  # "answered 200", or why it failed, in words without the URL

    def __str__(self) -> str:
        if self.delivered:
            return f"notified the {self.target}"
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"could not notify the {self.target}: {self.detail}{tries}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date, or nothing: the backoff decides


def post(
    target: Target,
    body: bytes,
    headers: Mapping[str, str],
    *,
    policy: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Delivery:
    """POST `body` to `target`, retrying what may pass later; never raises for the receiver's
    failure (the Delivery says it)."""
    policy = policy or RetryPolicy()
    sleep = sleep or time.sleep
    sent = {
        "Content-Type": "application/json",
        "User-Agent": f"newstore-reconciler/{__version__}",
        # The same id on every attempt, so a receiver can drop a retried duplicate.
        "X-Reconciler-Delivery": str(uuid.uuid4()),
        **headers,
    }
    delay = policy.backoff
    detail = "not attempted"
    with httpx.Client(
        transport=transport, timeout=policy.timeout, follow_redirects=False, trust_env=True
    ) as client:
        for attempt in range(1, policy.attempts + 1):
            wait = delay
            try:
                response = client.post(target.url, content=body, headers=sent)
            except httpx.TransportError as exc:
                # The exception's text may carry the URL: only its kind is told.
                detail = f"{_kind(exc)}"
            else:
                detail = f"answered {response.status_code}"
                outcome = outcome_of(response.status_code)
                if outcome is Outcome.DELIVERED:
                    return Delivery(target, True, attempt, detail)
                if outcome is Outcome.FAIL:
                    return Delivery(target, False, attempt, detail)
                wait = _retry_after(response) or delay
            if attempt < policy.attempts:
                sleep(min(wait, policy.max_delay))
                delay *= 2
    return Delivery(target, False, policy.attempts, detail)


_KINDS: Final = (
    (httpx.TimeoutException, "timed out"),
    (httpx.ConnectError, "could not connect"),
    (httpx.RemoteProtocolError, "the connection broke"),
    (httpx.ReadError, "the connection broke"),
    (httpx.WriteError, "the connection broke"),
)


def _kind(exc: httpx.TransportError) -> str:
    for kind, words in _KINDS:
        if isinstance(exc, kind):
            return words
    return f"a transport error ({type(exc).__name__})"
