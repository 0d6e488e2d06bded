"""OAuth2 client credentials: one bearer token per environment, fetched from NewStore's identity
service and reused until shortly before it expires. The token endpoint's response bodies are
never passed through."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Generator
from typing import TypeGuard

import httpx

from reconciler.errors import AuthError, IPBlockedError
from reconciler.model import Environment
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.problem import json_body, parse_retry_after
from reconciler.newstore.retries import Transient
from reconciler.newstore.transport import RETRYABLE_STATUSES

log = logging.getLogger("reconciler.http")

IP_BLOCKED = "NewStore blocked this IP for exceeding 30,000 requests per 5 minutes"
IP_BLOCKED_HINT = (
    "Wait 5 minutes before trying again; retrying sooner makes it worse (this run sends "
    "nothing more to the host). If the block does not end, ask NewStore support to lift it."
)


class ClientCredentials(httpx.Auth):
    """Bearer token from NewStore's identity service, cached per client.

    The token is attached only to requests for the environment's own API origin, and re-fetched
    once when the API answers 401 or 403-with-JSON (missing/expired token). A 403 with a
    non-JSON body is NewStore's per-IP block: a new token would not help, so it is passed on.
    """

    requires_response_body = True

    def __init__(
        self,
        env: Environment,
        api_origin: tuple[str, str, int | None],
        limiter: HostLimiter | None = None,
        not_sent: Callable[[], Exception] | None = None,
        token_url: httpx.URL | None = None,
    ) -> None:
        """`limiter`: the API host's; an IP block from the token endpoint trips it, and no
        token is fetched once it is tripped (`not_sent()` is raised instead). `token_url`:
        `connection.token_url` already parsed (parsing a URL is a good part of a request's
        CPU in httpx; the client has parsed it to check it)."""
        self._limiter = limiter
        self._not_sent = not_sent
        self._conn = env.connection
        self._token_url = token_url or httpx.URL(env.connection.token_url)
        self._env_name = env.name
        self._api_origin = api_origin
        self._token: str | None = None
        self._expires_at = 0.0
        # Guards the three fields above and below; a fetch in progress is the flag, which
        # the other threads wait on.
        self._changed = threading.Condition()
        self._fetching = False
        self.issued: list[str] = []  # every token fetched, so an echo of an old one is scrubbed
        self._when_fetched: list[Callable[[], object]] = []

    @property
    def fetched(self) -> int:
        return len(self.issued)

    def _fresh(self, token: str | None) -> TypeGuard[str]:
        """Whether `token` is one to use now (the caller holds `_changed`)."""
        return token is not None and time.monotonic() < self._expires_at

    def when_token(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback` once a token is in hand: now if one is, else right after the next
        fetch succeeds (in the fetching thread, before its own request goes out). Returns a
        function that withdraws the callback if it has not run."""
        with self._changed:
            ready = self._fresh(self._token)
            if not ready:
                self._when_fetched.append(callback)
        if ready:
            callback()

        def withdraw() -> None:
            with self._changed:
                if callback in self._when_fetched:
                    self._when_fetched.remove(callback)

        return withdraw

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if (request.url.scheme, request.url.host, request.url.port) != self._api_origin:
            yield request  # never hand our token to another host
            return
        token = yield from self._current_token(stale=None)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if is_token_refusal(response):
            log.info(
                "%s → %d: fetching a new access token once", request.method, response.status_code
            )
            token = yield from self._current_token(stale=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def _current_token(self, stale: str | None) -> Generator[httpx.Request, httpx.Response, str]:
        """The cached token, unless it is `stale` or about to expire; then one thread fetches a
        new one while the others wait for it (settings are read side by side on one client).

        No lock is held across the `yield` that sends the token request: httpx may suspend or
        abandon the flow there, and a held lock would then stall every other request."""
        with self._changed:
            while True:
                token = self._token
                if token != stale and self._fresh(token):
                    return token
                if not self._fetching:
                    # A waiter whose fetcher was answered with the IP block must not ask again.
                    if self._limiter is not None and self._limiter.blocked_at is not None:
                        assert self._not_sent is not None
                        raise self._not_sent()
                    self._fetching = True
                    break
                self._changed.wait()
        token, expires_at = None, 0.0
        try:
            started = time.monotonic()
            response = yield self._token_request()
            millis = int((time.monotonic() - started) * 1000)
            token, expires_at = self._parse_token(response, millis)
        finally:
            # On failure the waiters find no fresh token and try for themselves.
            callbacks: list[Callable[[], object]] = []
            with self._changed:
                if token is not None:
                    self._token, self._expires_at = token, expires_at
                    callbacks, self._when_fetched = self._when_fetched, []
                self._fetching = False
                self._changed.notify_all()
        for callback in callbacks:
            callback()
        return token

    def _token_request(self) -> httpx.Request:
        return httpx.Request(
            "POST",
            self._token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self._conn.client_id,
                "client_secret": self._conn.client_secret,
            },
            headers={"Accept": "application/json"},
            # httpx's client sends the requests an auth flow yields without its timeout.
            extensions={"timeout": httpx.Timeout(self._conn.timeout).as_dict()},
        )

    def _parse_token(self, response: httpx.Response, millis: int) -> tuple[str, float]:
        url = self._token_url
        request_id = response.headers.get("x-request-id")
        log.debug("token: POST %s → %d in %d ms", url.path, response.status_code, millis)
        if response.status_code in RETRYABLE_STATUSES:
            raise Transient(
                f"the token endpoint {url.host} answered {response.status_code}",
                status=response.status_code,
                request_id=request_id,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        body = json_body(response)
        if response.status_code == 403 and not isinstance(body, dict):
            if self._limiter is not None:
                self._limiter.trip()  # before the waiters wake
            raise IPBlockedError(
                IP_BLOCKED,
                method="POST",
                path=url.path,
                status=403,
                request_id=request_id,
                environment=self._env_name,
                hint=IP_BLOCKED_HINT,
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            # Only the OAuth `error` code is passed on: the rest of a token endpoint's body is
            # not ours to print.
            code = body.get("error") if isinstance(body, dict) else None
            detail = code if isinstance(code, str) and re.fullmatch(r"[a-z_]{1,64}", code) else ""
            message = f"the token endpoint {url.host} refused client id {self._conn.client_id!r}"
            if response.status_code == 200:
                detail = "the answer held no access_token"
            elif response.status_code == 404:
                message = f"there is no token endpoint at {url.host}{url.path}"
            raise AuthError(
                message,
                method="POST",
                path=url.path,
                status=response.status_code,
                request_id=request_id,
                detail=detail,
                environment=self._env_name,
                hint="Check connection.client_id, connection.client_secret and "
                "connection.token_url.",
            )
        self.issued.append(token)
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
        # Renew a little early so a token never expires between being attached and arriving.
        margin = min(30.0, lifetime * 0.1)
        return token, time.monotonic() + lifetime - margin


def is_token_refusal(response: httpx.Response) -> bool:
    if response.status_code == 401:
        return True
    return response.status_code == 403 and isinstance(json_body(response), dict)
