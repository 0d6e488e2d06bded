"""The retry policy: exponential backoff with jitter, inside an attempt count and a time budget."""

from __future__ import annotations

from collections.abc import Callable

import tenacity

BACKOFF_SECONDS = 0.5
"""First retry waits about this long (plus jitter), doubling per attempt; tests pass less."""

MAX_BACKOFF_SECONDS = 30.0


class Transient(Exception):
    """One failed attempt that is worth retrying. Internal: never escapes the client."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.request_id = request_id
        self.detail = detail
        self.retry_after = retry_after


def retrying(
    *,
    attempts: int,
    budget: float,
    backoff: float,
    remaining: Callable[[], float],
    on_retry: Callable[[Transient | None, int, float], None],
) -> tenacity.Retrying:
    """A tenacity policy retrying `Transient` failures: at most `attempts`, within `budget`
    seconds; a Retry-After replaces the backoff. `on_retry(failure, attempt, sleep)` is called
    before each sleep."""
    # Jitter, so environments that failed together do not retry in lockstep.
    wait_backoff = tenacity.wait_exponential(
        multiplier=backoff, max=MAX_BACKOFF_SECONDS
    ) + tenacity.wait_random(0, backoff)

    def wait(state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        delay = wait_backoff(state)
        if isinstance(exc, Transient) and exc.retry_after is not None:
            delay = exc.retry_after
        return min(delay, remaining())

    def before_sleep(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        sleep = state.next_action.sleep if state.next_action is not None else 0.0
        on_retry(exc if isinstance(exc, Transient) else None, state.attempt_number, sleep)

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(budget),
        wait=wait,
        retry=tenacity.retry_if_exception_type(Transient),
        before_sleep=before_sleep,
    )
