"""The errors a `NewStoreClient` raises, worded for the person who reads them: each names the
setting, method, path, status and NewStore's request id, says what to do, and never holds a
secret (NewStore's own words are scrubbed of every secret the client knows).

A mixin of `NewStoreClient` (`client.py`), which supplies the environment, the host's limiter
and the secrets known so far.
"""

from __future__ import annotations

from typing import TypeVar

import httpx

from reconciler.errors import (
    AuthError,
    ConflictError,
    HostBlockedError,
    IPBlockedError,
    NewStoreError,
    RejectedError,
    RetryBudgetExhausted,
    TransportError,
    UnreachableError,
)
from reconciler.identity import tenant_in_base_url, tenant_in_token_url
from reconciler.model import Environment
from reconciler.newstore.auth import IP_BLOCKED, IP_BLOCKED_HINT
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.problem import json_body, problem_detail, request_id_of, scrub
from reconciler.newstore.retries import Exhausted, GiveUp
from reconciler.newstore.transport import (
    StatusKind,
    address_of,
    classify_status,
    unreachable_cause,
)

E = TypeVar("E", bound=NewStoreError)

HOST_BLOCKED_HINT = (
    "Wait until the block ends (about 5 minutes after the last request) before running "
    "again; if it does not end, ask NewStore support to lift it for this IP."
)


class ClientErrors:
    """How a `NewStoreClient` words what went wrong (mixed into it)."""

    env: Environment
    _limiter: HostLimiter
    _base_path: str

    def _known_secrets(self) -> list[str]:
        raise NotImplementedError  # the client's: every secret it has seen

    def full_path(self, path: str) -> str:
        """The path as NewStore sees it (base path + relative path), for messages and logs."""
        return self._base_path + path

    def error(
        self,
        cls: type[E],
        setting: str,
        method: str,
        path: str,
        message: str,
        *,
        response: httpx.Response | None = None,
        detail: str = "",
        hint: str = "",
    ) -> E:
        """A `NewStoreError` of type `cls` for this environment, filled from `response`."""
        if response is not None and not detail:
            detail = problem_detail(response, self._known_secrets())
        return cls(
            message,
            setting=setting,
            method=method,
            path=self.full_path(path),
            status=response.status_code if response is not None else None,
            request_id=request_id_of(response) if response is not None else None,
            detail=scrub(detail, self._known_secrets()),
            environment=self.env.name,
            hint=hint,
        )

    def _gave_up(
        self, stop: Exhausted, setting: str, method: str, shown: str, budget: float
    ) -> NewStoreError:
        """The error for retries that stopped, worded by why they stopped."""
        last, count = stop.last, stop.attempts
        tried = f"{count} attempt{'s' if count != 1 else ''} in {stop.elapsed:.1f} s"
        cls: type[NewStoreError] = RetryBudgetExhausted
        if stop.why is GiveUp.UNREACHABLE:
            cls = UnreachableError
            message = (
                f"could not connect to {last.unreachable}: {last.cause} (gave up after {tried})"
            )
            hint = last.fix
        elif stop.why is GiveUp.RETRY_AFTER:
            message = (
                f"NewStore asked to wait {last.retry_after:.0f} s before retrying (Retry-After), "
                f"more than the {stop.left:.1f} s left of the {budget:g} s retry budget; gave up "
                f"after {tried} without waiting: {last.reason}"
            )
            hint = (
                "Run again later, or raise connection.retry.max_seconds to wait it out in the run."
            )
        else:
            spent = (
                f"; the {budget:g} s retry budget (connection.retry.max_seconds) ran out"
                if stop.why is GiveUp.BUDGET
                else ""
            )
            message = f"gave up after {tried}{spent}: {last.reason}"
            hint = (
                "NewStore or the network is struggling; run again later "
                "(or raise connection.retry.max_seconds / connection.retry.attempts)."
            )
        return cls(
            message,
            setting=setting,
            method=method,
            path=shown,
            status=last.status,
            request_id=last.request_id,
            detail=scrub(last.detail, self._known_secrets()),
            environment=self.env.name,
            hint=hint,
        )

    def _not_sent(
        self, setting: str, method: str, path: str, *, shown: str | None = None
    ) -> HostBlockedError:
        blocked_at = self._limiter.blocked_at
        assert blocked_at is not None
        return HostBlockedError(
            f"not sent: NewStore blocked this IP at {blocked_at:%H:%M:%S} UTC earlier in this "
            "run, and every request more would extend the block",
            setting=setting,
            method=method,
            path=shown if shown is not None else self.full_path(path),
            environment=self.env.name,
            hint=HOST_BLOCKED_HINT,
        )

    def _unreachable_now(
        self, exc: httpx.TransportError, setting: str, method: str, path: str, reason: str
    ) -> NewStoreError:
        """A failure at the address that retrying cannot fix (a TLS verification error)."""
        found = unreachable_cause(exc)
        if found is None:
            return self.error(TransportError, setting, method, path, reason)
        address = address_of(exc)
        cause, fix = found
        return self.error(
            UnreachableError,
            setting,
            method,
            path,
            f"could not connect to {address}: {cause}",
            hint=fix.format(setting=self._setting_for(exc)),
        )

    def _setting_for(self, exc: httpx.TransportError) -> str:
        """The setting naming the address that failed: the token endpoint's, or the API's."""
        try:
            url = exc.request.url
        except RuntimeError:
            return "connection.base_url"
        token_url = httpx.URL(self.env.connection.token_url)
        same = (url.host, url.port, url.path) == (token_url.host, token_url.port, token_url.path)
        return "connection.token_url" if same else "connection.base_url"

    def _classify(
        self, setting: str, method: str, path: str, response: httpx.Response
    ) -> NewStoreError:
        kind = classify_status(response.status_code, isinstance(json_body(response), dict))
        if kind is StatusKind.IP_BLOCKED:
            self._limiter.trip()
        cls, message, hint = _STATUS_ERRORS[kind]
        if kind is StatusKind.AUTH:
            hint = self._auth_hint()
        if kind is StatusKind.REDIRECT:
            location = httpx.URL(response.headers.get("location", ""))
            target = location.host or self.env.connection.base_url
            message = message.format(target=target)
        return self.error(cls, setting, method, path, message, response=response, hint=hint)

    def _auth_hint(self) -> str:
        """Why NewStore may refuse a token its own token endpoint just issued. A token is only
        good for its realm's tenant: a base_url naming another tenant (a typo) is the likelier
        cause, and the one that can be told from the URLs, so it comes first."""
        conn = self.env.connection
        api, realm = tenant_in_base_url(conn.base_url), tenant_in_token_url(conn.token_url)
        if api is not None and realm is not None and api != realm:
            return (
                f"connection.base_url is the API of tenant `{api}`, but the token comes from "
                f"realm `{realm}` (connection.token_url), and a token is only accepted by its "
                f"own tenant: make both name the same tenant (the file says `{self.env.tenant}`)."
            )
        return (
            "Either connection.base_url is not the API of the tenant whose realm issued the "
            "token (connection.token_url: both must name the same tenant), or the API client "
            "lacks access to this setting in NewStore."
        )


# What each kind of unaccepted answer becomes (RETRYABLE ones only once the budget is spent).
_STATUS_ERRORS: dict[StatusKind, tuple[type[NewStoreError], str, str]] = {
    StatusKind.IP_BLOCKED: (IPBlockedError, IP_BLOCKED, IP_BLOCKED_HINT),
    StatusKind.AUTH: (
        AuthError,
        "NewStore refused the access token, also after fetching a new one",
        "",  # worded from the connection: NewStoreClient._auth_hint
    ),
    StatusKind.REDIRECT: (
        RejectedError,
        "NewStore redirected to {target}; redirects are not followed, so the access "
        "token never leaves the configured host",
        "Check connection.base_url.",
    ),
    StatusKind.CONFLICT: (
        ConflictError,
        "another update of this setting happened at the same time (409)",
        "",
    ),
    StatusKind.RETRYABLE: (RejectedError, "NewStore rejected the call", ""),
    StatusKind.REJECTED: (RejectedError, "NewStore rejected the call", ""),
}
