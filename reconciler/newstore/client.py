"""NewStoreClient: all HTTP traffic to one environment's NewStore tenant.

One `NewStoreClient` per environment. It owns an `HTTPClient` (`http.py`: pooled connections,
the environment's timeout and CA bundle, redirects *not* followed), fetches one access token and
reuses it until shortly before it expires, retries transient failures (429, 502-504, dropped
connections) with exponential backoff inside the environment's retry budget, and turns every
other failure into a `reconciler.errors.NewStoreError` subclass that names the setting, method,
path, status and NewStore's request id.

Secrets never leave this module in text: errors and log lines are built from the method, path,
status and NewStore's own message/request id only, with any known secret scrubbed out of the
latter. Which body keys hold secrets is the caller's knowledge (`secret_keys`): this layer
imports no setting.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import httpx

from reconciler import jsonexact
from reconciler.errors import (
    ConfigError,
    IPBlockedError,
    NewStoreError,
    RejectedError,
)
from reconciler.model import Environment
from reconciler.net import is_loopback
from reconciler.newstore.auth import ClientCredentials
from reconciler.newstore.client_errors import ClientErrors
from reconciler.newstore.http import HTTPClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.problem import (
    MIN_SCRUBBED_SECRET,
    parse_retry_after,
    problem_detail,
    request_id_of,
    secret_values,
)
from reconciler.newstore.retries import (
    BACKOFF_SECONDS,
    Exhausted,
    Transient,
    confirm_read,
    run_with_retries,
)
from reconciler.newstore.transport import (
    RETRYABLE_STATUSES,
    UNDECODABLE,
    Outcome,
    address_of,
    classify_transport_error,
    ssl_context,
    unreachable_cause,
)

log = logging.getLogger("reconciler.http")

E = TypeVar("E", bound=NewStoreError)
JSON = "application/json"
T = TypeVar("T")

TOKEN_KEYS = frozenset({"access_token"})
"""Body keys whose values are secrets whatever the caller says: the OAuth access token."""

GENERIC_SECRET_KEYS = frozenset({"api_key", "client_secret", "password", "secret", "token"})
"""Used when a caller passes no `secret_keys`: a safety net, not the list (the settings own it)."""


class NewStoreClient(ClientErrors):
    """All HTTP traffic to one environment's NewStore tenant."""

    def __init__(
        self,
        env: Environment,
        *,
        transport: httpx.BaseTransport | None = None,
        limiter: HostLimiter | None = None,
        backoff: float = BACKOFF_SECONDS,
        secret_keys: Collection[str] | None = None,
    ) -> None:
        """`secret_keys`: the body keys whose values are secrets (the caller's settings know
        them); without it, the names secrets have in NewStore's APIs."""
        self.env = env
        self._secret_keys = TOKEN_KEYS | frozenset(
            GENERIC_SECRET_KEYS if secret_keys is None else secret_keys
        )
        conn = env.connection
        base = httpx.URL(conn.base_url)
        token_url = httpx.URL(conn.token_url)
        if transport is None:
            # An injected transport (the in-process sandbox) never reaches the network; real
            # traffic must be encrypted unless it stays on this machine.
            for what, url in (("base_url", base), ("token_url", token_url)):
                if url.scheme != "https" and not (url.scheme == "http" and is_loopback(url.host)):
                    raise ConfigError(
                        f"{env.file}: connection.{what} must be https "
                        f"(plain http only for loopback hosts), got {url.scheme}://{url.host}"
                    )
        self._base_path = base.path.rstrip("/")
        self._base_url = conn.base_url.rstrip("/")
        # Absolute URLs per path, parsed once: httpx parses and merges a relative URL against
        # base_url on every request (the largest part of its per-request CPU).
        self._urls: dict[str, httpx.URL] = {}
        self._limiter = limiter or HostLimiter.for_host(base.netloc.decode("ascii"))
        self._backoff = backoff
        # Writes sent inside `writes_once()`: one attempt, no resend (see there).
        self._writes_once = False
        token_path = token_url.path
        self._auth = ClientCredentials(
            env,
            (base.scheme, base.host, base.port),
            self._limiter,
            lambda: self._not_sent("", "POST", token_path, shown=token_path),
            token_url=token_url,
        )
        try:
            # Every request is sent with its absolute URL (`_url`).
            self._http = HTTPClient(
                api_origin=(base.scheme, base.host, base.port),
                auth=self._auth,
                timeout=conn.timeout,
                verify=ssl_context(conn.ca_bundle),
                transport=transport,
            )
        except ValueError as exc:
            # httpx reads proxy settings from the environment here; their text may carry a
            # proxy password, so only the exception's type is named.
            raise ConfigError(
                f"{env.file}: cannot set up the HTTP client for {base.host} "
                f"({type(exc).__name__}): check the proxy variables (HTTPS_PROXY, HTTP_PROXY, "
                "ALL_PROXY, NO_PROXY) and connection.base_url"
            ) from None
        self.last_request_id: str | None = None
        # Secret values this client sent or read (a webhook api_key, the new one or the live
        # one): NewStore may echo either back in an error.
        self._seen_secrets: set[str] = set()
        self._secrets_lock = threading.Lock()
        # URLs the environment makes secret (a ${VAR} fills their query): scrubbed like keys.
        for path in env.secret_urls:
            setting, _, name = path.partition(".")
            value = env.desired.get(setting)
            if isinstance(value, dict) and isinstance(value.get(name), str):
                self._seen_secrets.add(value[name])

    def __enter__(self) -> NewStoreClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"NewStoreClient({self.env.name!r}, {self.env.connection.base_url!r})"

    @property
    def token_requests(self) -> int:
        """How many access tokens this client fetched."""
        return self._auth.fetched

    def when_token(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback` once the client holds an access token (now, or right after the
        fetch under way succeeds, before the request that fetched it goes out); returns a
        function that withdraws it if it has not run. `read_live` starts its other reads so:
        they go out beside the first one, none of them waiting on another for the token."""
        return self._auth.when_token(callback)

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._base_url + path)
        return url

    def body(self, setting: str, response: httpx.Response, *, exact: bool = False) -> Any:
        """The JSON body of a successful answer (None when empty); RejectedError if not JSON.
        `exact`: for a document to send back changed in place (`jsonexact`): numbers keep
        their text, and a repeated key is refused.

        Secrets in it (a live api_key NewStore answers in clear) are remembered, so that a
        later error echoing them is scrubbed like one echoing a secret we sent."""
        if not response.content:
            return None
        request = response.request
        try:
            body = jsonexact.loads(response.content) if exact else jsonlib.loads(response.content)
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, jsonexact.RepeatedKey):
                why = (
                    f"NewStore answered with a document that repeats the key {exc.path}: "
                    "which value NewStore uses is a guess, and it cannot be sent back as it came"
                )
            elif isinstance(exc, RecursionError):
                why = "NewStore answered with a document nested too deep to read"
            else:
                why = "NewStore answered with a body that is not JSON"
            raise self.error(
                RejectedError,
                setting,
                request.method,
                request.url.path.removeprefix(self._base_path),
                why,
                response=response,
            ) from None
        # A masked stub ("****", "ab••") is no secret, and scrubbing a short one would mangle
        # ordinary words in later messages.
        self._remember_secrets(
            value
            for value in secret_values(body, self._secret_keys)
            if len(value) >= MIN_SCRUBBED_SECRET
        )
        return body

    def _remember_secrets(self, values: Iterable[str]) -> None:
        # Settings are read side by side on one client: guard the set against a reader
        # iterating it in _known_secrets.
        with self._secrets_lock:
            self._seen_secrets.update(values)

    def _known_secrets(self) -> list[str]:
        with self._secrets_lock:
            seen = list(self._seen_secrets)
        return [self.env.connection.client_secret, *self._auth.issued, *seen]

    # ----------------------------------------------------------------------------------------

    def request(
        self,
        setting: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        ok: Collection[int] = (200,),
        exact_json: bool = False,
    ) -> httpx.Response:
        """Send one API call (retrying transient failures) and return the response whose
        status is in `ok`; any other outcome raises a `NewStoreError` subclass.

        Retrying writes is safe here: every setter NewStore offers for these settings is "set
        to this value" (POST/PUT of the full value; DELETE is idempotent), so repeating one is
        harmless. A connection dropped after NewStore committed a write just sets the same
        value again (harmless to the value, not to time: inside `writes_once()` a write is not
        resent). `exact_json`: `json` is a document read with `body(..., exact=True)`,
        sent with every number as it was read (`jsonexact.dumps`).
        """
        if not path.startswith("/"):
            raise ValueError(f"path must be relative to base_url and start with '/': {path!r}")
        self._remember_secrets(secret_values(json, self._secret_keys))
        started = time.monotonic()
        budget = self.env.connection.retry_max_seconds
        attempts = max(1, self.env.connection.retry_attempts)
        if self._writes_once and method != "GET":
            attempts = 1
        shown = self.full_path(path)

        def remaining() -> float:
            return max(0.0, budget - (time.monotonic() - started))

        content = jsonexact.dumps(json) if exact_json else None

        def attempt() -> httpx.Response:
            return self._attempt(setting, method, path, json, ok, remaining, content)

        def on_retry(failure: Transient, number: int, sleep: float) -> None:
            after = " (Retry-After)" if failure.retry_after is not None else ""
            log.info(
                "%s %s: %s; attempt %d of %d, retrying in %.2f s%s",
                method,
                shown,
                failure.reason,
                number,
                attempts,
                sleep,
                after,
            )

        try:
            return run_with_retries(
                attempt,
                attempts=attempts,
                remaining=remaining,
                backoff=self._backoff,
                on_retry=on_retry,
            )
        except Exhausted as stop:
            raise self._gave_up(stop, setting, method, shown, budget) from None

    @contextlib.contextmanager
    def writes_once(self) -> Iterator[None]:
        """Inside: every write (POST/PUT/DELETE) is one attempt; a transient failure raises at
        once instead of being retried. For writes a safety rule relies on: a resend after a lost
        answer would leave the write (had it landed) unjudged for the whole backoff; the caller
        reads it back instead, and resends only what did not land."""
        self._writes_once = True
        try:
            yield
        finally:
            self._writes_once = False

    @property
    def backoff(self) -> float:
        """The base wait between attempts (doubling), for callers that retry themselves."""
        return self._backoff

    def confirm(self, read: Callable[[], T], agrees: Callable[[T], bool]) -> tuple[T, int]:
        """`retries.confirm_read` within this environment's retry budget and backoff."""
        budget = self.env.connection.retry_max_seconds
        return confirm_read(read, agrees, budget=budget, backoff=self._backoff)

    @property
    def blocked_at(self) -> datetime | None:
        """When NewStore blocked this IP on this client's host during the run, if it did."""
        return self._limiter.blocked_at

    def _attempt(
        self,
        setting: str,
        method: str,
        path: str,
        body: Any,
        ok: Collection[int],
        remaining: Callable[[], float],
        content: bytes | None = None,
    ) -> httpx.Response:
        shown = self.full_path(path)
        if self._limiter.blocked_at is not None:
            raise self._not_sent(setting, method, path)
        with self._limiter.slot(remaining()) as waited:
            if waited:
                log.info("%s %s: host paused after a 429, waited %.2f s", method, shown, waited)
            if self._limiter.blocked_at is not None:  # blocked while this one waited
                raise self._not_sent(setting, method, path)
            started = time.monotonic()
            try:
                if content is not None:
                    response = self._http.request(
                        method, self._url(path), content=content, headers={"Content-Type": JSON}
                    )
                else:
                    response = self._http.request(method, self._url(path), json=body)
            except IPBlockedError:
                # The token endpoint answered the block (inside the auth flow).
                self._limiter.trip()
                raise
            except httpx.TransportError as exc:
                reason, outcome = classify_transport_error(exc)
                log.info("%s %s → %s", method, shown, reason)
                if outcome is Outcome.FAIL:
                    raise self._unreachable_now(exc, setting, method, path, reason) from None
                if outcome is Outcome.UNREACHABLE:
                    address = address_of(exc)
                    found = unreachable_cause(exc)
                    assert found is not None
                    cause, fix = found
                    raise Transient(
                        reason,
                        unreachable=address,
                        cause=cause,
                        fix=fix.format(setting=self._setting_for(exc)),
                    ) from None
                raise Transient(reason) from None
            except httpx.DecodingError:
                log.info("%s %s → %s", method, shown, UNDECODABLE)
                raise self.error(RejectedError, setting, method, path, UNDECODABLE) from None
        millis = int((time.monotonic() - started) * 1000)
        request_id = request_id_of(response)
        self.last_request_id = request_id
        status = response.status_code
        log.info(
            "%s %s → %d in %d ms%s",
            method,
            shown,
            status,
            millis,
            f" (request id {request_id})" if request_id else "",
        )
        if status in ok:
            return response
        if status in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if status == 429 and retry_after:
                self._limiter.pause(min(retry_after, remaining()))
            raise Transient(
                f"NewStore answered {status}",
                status=status,
                request_id=request_id,
                detail=problem_detail(response, self._known_secrets()),
                retry_after=retry_after,
            )
        raise self._classify(setting, method, path, response)
