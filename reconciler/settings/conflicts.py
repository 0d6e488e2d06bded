"""The 409 `concurrent_update_on_tenant_setting` retry that NewStore's tenant settings share.

NewStore answers 409 when two writers set the same tenant setting at once. The loop: re-read; if
the other writer set what we want, we are done; otherwise send again, a few times at most.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from reconciler.errors import ConflictError

if TYPE_CHECKING:
    import httpx

CONFLICT_ATTEMPTS = 3


def send_with_conflict_retry(
    send: Callable[[], httpx.Response],
    settled: Callable[[], bool],
    request_id_of: Callable[[httpx.Response], str | None],
    *,
    attempts: int = CONFLICT_ATTEMPTS,
) -> str | None:
    """Call `send` until it succeeds; on a 409, `settled()` (a fresh read equals the desired
    value) ends the loop without another write. Returns the successful write's request id."""
    attempt = 1
    while True:
        try:
            return request_id_of(send())
        except ConflictError as err:
            if settled():
                return None
            if attempt >= attempts:
                raise replace(
                    err,
                    message=f"kept losing a concurrent update (409), {attempt} attempts "
                    "with a re-read before each retry",
                    hint="Someone else is changing this setting right now; run again "
                    "once they are done.",
                ) from None
            attempt += 1


__all__ = ["CONFLICT_ATTEMPTS", "send_with_conflict_retry"]
