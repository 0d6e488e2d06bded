"""The retry policy: the time budget is the bound, attempts only a backstop.

    run_with_retries(attempt, ...)   call `attempt` until it returns or a failure is final

A `Transient` failure is retried with exponential backoff and jitter (or after NewStore's
Retry-After) while the budget (`connection.retry.max_seconds`) lasts. It gives up, raising
`Exhausted` with the reason (`GiveUp`), when:

    ATTEMPTS     `connection.retry.attempts` were made (a backstop; the default rarely binds)
    BUDGET       the budget is spent
    RETRY_AFTER  NewStore asked to wait longer than the budget has left: waiting part of it and
                 asking again would be refused again (and counts against the rate limit)
    UNREACHABLE  nothing answers at the address (refused, unknown host, TLS handshake): one
                 retry covers a blip, more only delays the error
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from typing import TypeVar

BACKOFF_SECONDS = 0.5
"""First retry waits about this long (plus jitter), doubling per attempt; tests pass less."""

MAX_BACKOFF_SECONDS = 30.0
UNREACHABLE_ATTEMPTS = 2
"""Attempts at an address where nothing answers: the first and one retry."""
CONFIRM_READS = 3
"""Reads of an answer that contradicts the read before it, before it is believed."""

T = TypeVar("T")


class Transient(Exception):
    """One failed attempt that may be retried. Internal: never escapes the client."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        detail: str = "",
        retry_after: float | None = None,
        unreachable: str = "",
        cause: str = "",
        fix: str = "",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.request_id = request_id
        self.detail = detail
        self.retry_after = retry_after
        self.unreachable = unreachable  # "host:port" when nothing answered there
        self.cause = cause  # why nothing answered, as the error names it
        self.fix = fix  # the likely fix


class GiveUp(enum.Enum):
    ATTEMPTS = "attempts"
    BUDGET = "budget"
    RETRY_AFTER = "retry_after"
    UNREACHABLE = "unreachable"


class Exhausted(Exception):
    """Retrying stopped: the last failure, how many attempts, how long, and why."""

    def __init__(
        self, last: Transient, attempts: int, elapsed: float, why: GiveUp, left: float
    ) -> None:
        super().__init__(last.reason)
        self.last, self.attempts, self.elapsed, self.why, self.left = (
            last,
            attempts,
            elapsed,
            why,
            left,
        )


def backoff_delay(number: int, backoff: float) -> float:
    """The wait after failed attempt `number` (1-based): doubling, capped, with jitter so that
    environments that failed together do not retry in lockstep."""
    return float(min(backoff * 2 ** (number - 1), MAX_BACKOFF_SECONDS)) + random.uniform(0, backoff)


def run_with_retries(
    attempt: Callable[[], T],
    *,
    attempts: int,
    remaining: Callable[[], float],
    backoff: float,
    on_retry: Callable[[Transient, int, float], None],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`attempt()` until it returns; `Transient` failures are retried per the module's policy,
    anything else propagates. `remaining()` is the budget left, in seconds."""
    started = time.monotonic()
    number = 0
    while True:
        number += 1
        try:
            return attempt()
        except Transient as failure:
            left = remaining()
            why: GiveUp | None = None
            if failure.unreachable and number >= UNREACHABLE_ATTEMPTS:
                why = GiveUp.UNREACHABLE
            elif number >= max(1, attempts):
                why = GiveUp.ATTEMPTS
            elif failure.retry_after is not None and failure.retry_after > left:
                why = GiveUp.RETRY_AFTER
            elif left <= 0:
                why = GiveUp.BUDGET
            if why is not None:
                raise Exhausted(failure, number, time.monotonic() - started, why, left) from None
            if failure.retry_after is not None:
                delay = failure.retry_after
            else:
                delay = min(backoff_delay(number, backoff), left)
            on_retry(failure, number, delay)
            sleep(delay)


def confirm_read(
    read: Callable[[], T],
    agrees: Callable[[T], bool],
    *,
    budget: float,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """`read()`, and again while its answer contradicts what the caller read just before
    (`agrees` says False: a 404 where a document was, a replica behind another): at most
    CONFIRM_READS reads, with the retries' backoff in between, within `budget` seconds. Returns
    the last answer and how many reads it took; the caller decides what a contradiction that
    persists means (a change underneath)."""
    started = time.monotonic()
    value = read()
    reads = 1
    while not agrees(value) and reads < CONFIRM_READS:
        wait = backoff_delay(reads, backoff)
        if time.monotonic() - started + wait > budget:
            break
        sleep(wait)
        value = read()
        reads += 1
    return value, reads
