"""The NewStore HTTP client: OAuth2 client credentials, retries, rate limits, readable errors.

One `NewStoreClient` per environment. It owns an `httpx.Client` (pooled connections, the
environment's timeout and CA bundle, redirects *not* followed), fetches one access token and
reuses it until shortly before it expires, retries transient failures (429, 502-504, dropped
connections) with exponential backoff inside the environment's retry budget, and turns every
other failure into a `reconciler.errors.NewStoreError` subclass that names the setting, method,
path, status and NewStore's request id.

Secrets never leave this module in text: errors and log lines are built from the method, path,
status and NewStore's own message/request id only, with any known secret scrubbed out of the
latter. Response bodies of the token endpoint are never passed through.

`probe_webhook` is the webhook-probe gate: one sample availability request to the retailer's
webhook, no NewStore token involved.
"""

from __future__ import annotations

import email.utils
import functools
import json as jsonlib
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

import httpx
import tenacity

from reconciler.errors import (
    AuthError,
    BlockedError,
    ConfigError,
    ConflictError,
    IPBlockedError,
    NewStoreError,
    RejectedError,
    RetryBudgetExhausted,
    TransportError,
)
from reconciler.model import SENSITIVE, Environment, WebhookProbe
from reconciler.net import is_loopback
from reconciler.settings import SECRET_PATHS

log = logging.getLogger("reconciler.http")

BACKOFF_SECONDS = 0.5
"""First retry waits about this long (plus jitter), doubling per attempt; tests pass less."""

MAX_BACKOFF_SECONDS = 30.0
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Body keys whose string values are secrets wherever they appear in a request.
SECRET_KEYS = frozenset({path.rsplit(".", 1)[1] for path in SECRET_PATHS} | {"access_token"})
MIN_SCRUBBED_SECRET = 8
IP_BLOCKED = "NewStore blocked this IP for exceeding 30,000 requests per 5 minutes"
IP_BLOCKED_HINT = "Wait 5 minutes before trying again; retrying sooner makes it worse."
UNDECODABLE = "the answer's body could not be decoded (its Content-Encoding is broken)"

E = TypeVar("E", bound=NewStoreError)


# --------------------------------------------------------------------------------------------
# helpers


def request_id_of(response: httpx.Response) -> str | None:
    """NewStore's request id: the X-Request-ID header, else `request_id` in the JSON body."""
    header: str | None = response.headers.get("x-request-id")
    if header:
        return header
    body = _json_body(response)
    if isinstance(body, dict) and isinstance(body.get("request_id"), str):
        return str(body["request_id"])
    return None


def _json_body(response: httpx.Response) -> Any:
    """The parsed JSON body, or None when there is none or it is not JSON."""
    if not response.content:
        return None
    try:
        return jsonlib.loads(response.content)
    except ValueError:
        return None


def _problem_detail(response: httpx.Response) -> str:
    """NewStore's own explanation, from any of its four problem+json shapes."""
    body = _json_body(response)
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    message = body.get("message")
    if isinstance(message, str) and message:
        parts.append(message)
    messages = body.get("messages")
    if isinstance(messages, list):
        parts.extend(str(m) for m in messages if m)
    # The error message adds its own full stop after NewStore's words.
    parts = [p.rstrip(". ") for p in parts]
    code = body.get("error_code")
    if isinstance(code, str) and code:
        parts = [f"{p} ({code})" for p in parts] if parts else [code]
    data = body.get("data")
    if data:
        parts.append("data: " + _shorten(jsonlib.dumps(data, sort_keys=True), 200))
    return "; ".join(parts)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scrub(text: str, secrets: Collection[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, SENSITIVE)
    return text


def _secret_values(body: Any) -> Iterator[str]:
    """String values under secret-named keys anywhere in a request or response body."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key in SECRET_KEYS and isinstance(value, str):
                yield value
            else:
                yield from _secret_values(value)
    elif isinstance(body, list):
        for item in body:
            yield from _secret_values(item)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe_transport_error(exc: httpx.TransportError) -> str:
    # Fixed phrases rather than str(exc): enough to act on, and nothing we did not write.
    if isinstance(exc, httpx.ConnectTimeout):
        return "connecting timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer within the timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection dropped before an answer arrived"
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            return "TLS certificate verification failed"
        return "could not connect" + (f" ({_shorten(reason, 120)})" if reason else "")
    return f"no answer ({type(exc).__name__})"


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    if ca_bundle is None:
        cert_file, cert_dir = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
        # The first environments of a run all get here at once; `functools.cache` does not
        # stop them each building a context before one is cached (16 CA bundle parses, ~0.4 s
        # of CPU at the default parallelism).
        with _default_ssl_context_lock:
            return _default_ssl_context(cert_file, cert_dir)
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use CA bundle {ca_bundle}: {exc.strerror or exc}") from None


_default_ssl_context_lock = threading.Lock()


@functools.cache
def _default_ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's default context (SSL_CERT_FILE, else SSL_CERT_DIR, else certifi), built once per
    value of those variables. Building one parses a whole CA bundle, ~15 ms of CPU under the
    GIL; one per environment made a 200-environment run CPU-bound. Contexts are safe to share."""
    return httpx.create_ssl_context(trust_env=True)


class _Transient(Exception):
    """One failed attempt that is worth retrying. Internal: never escapes `request`."""

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


# --------------------------------------------------------------------------------------------
# per-host rate limiting


class HostLimiter:
    """Shared by every client talking to one API host (thread-safe).

    A 429 with Retry-After pauses *all* requests to the host until then, so a burst of 429s
    slows the whole run down instead of failing every environment one after another. An
    optional `max_concurrency` caps requests in flight to the host.
    """

    _registry: ClassVar[dict[str, HostLimiter]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, max_concurrency: int | None = None) -> None:
        self._lock = threading.Lock()
        self._paused_until = 0.0  # time.monotonic() value
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None

    @classmethod
    def for_host(cls, host: str) -> HostLimiter:
        """The process-wide limiter for `host` (an authority such as "acme.p.newstore.net")."""
        with cls._registry_lock:
            limiter = cls._registry.get(host)
            if limiter is None:
                limiter = cls._registry[host] = cls()
            return limiter

    def pause(self, seconds: float) -> None:
        """Hold every request to this host for `seconds` from now (never shortens a pause)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def paused_for(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        with self._lock:
            return max(0.0, self._paused_until - time.monotonic())

    def wait(self, max_seconds: float) -> float:
        """Sleep until the host is no longer paused, at most `max_seconds`; returns the wait."""
        waited = 0.0
        while True:
            step = min(self.paused_for(), max_seconds - waited)
            if step <= 0:
                return waited
            time.sleep(step)
            waited += step

    @contextmanager
    def slot(self, max_wait: float) -> Iterator[float]:
        """Wait out any pause, then hold one of the host's concurrency slots; yields the wait."""
        waited = self.wait(max_wait)
        if self._slots is None:
            yield waited
            return
        with self._slots:
            yield waited


# --------------------------------------------------------------------------------------------
# OAuth2 client credentials


class _ClientCredentials(httpx.Auth):
    """Bearer token from NewStore's identity service, cached per client.

    The token is attached only to requests for the environment's own API origin, and re-fetched
    once when the API answers 401 or 403-with-JSON (missing/expired token). A 403 with a
    non-JSON body is NewStore's per-IP block: a new token would not help, so it is passed on.
    """

    requires_response_body = True

    def __init__(self, env: Environment, api_origin: tuple[str, str, int | None]) -> None:
        self._conn = env.connection
        self._env_name = env.name
        self._api_origin = api_origin
        self._token: str | None = None
        self._expires_at = 0.0
        # Guards the three fields above and below; a fetch in progress is the flag, which
        # the other threads wait on.
        self._changed = threading.Condition()
        self._fetching = False
        self.issued: list[str] = []  # every token fetched, so an echo of an old one is scrubbed

    @property
    def fetched(self) -> int:
        return len(self.issued)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if (request.url.scheme, request.url.host, request.url.port) != self._api_origin:
            yield request  # never hand our token to another host
            return
        token = yield from self._current_token(stale=None)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if _is_token_refusal(response):
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
                if token is not None and token != stale and time.monotonic() < self._expires_at:
                    return token
                if not self._fetching:
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
            with self._changed:
                if token is not None:
                    self._token, self._expires_at = token, expires_at
                self._fetching = False
                self._changed.notify_all()
        return token

    def _token_request(self) -> httpx.Request:
        return httpx.Request(
            "POST",
            self._conn.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self._conn.client_id,
                "client_secret": self._conn.client_secret,
            },
            headers={"Accept": "application/json"},
        )

    def _parse_token(self, response: httpx.Response, millis: int) -> tuple[str, float]:
        url = httpx.URL(self._conn.token_url)
        request_id = response.headers.get("x-request-id")
        log.debug("token: POST %s → %d in %d ms", url.path, response.status_code, millis)
        if response.status_code in RETRYABLE_STATUSES:
            raise _Transient(
                f"the token endpoint {url.host} answered {response.status_code}",
                status=response.status_code,
                request_id=request_id,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        body = _json_body(response)
        if response.status_code == 403 and not isinstance(body, dict):
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


def _is_token_refusal(response: httpx.Response) -> bool:
    if response.status_code == 401:
        return True
    return response.status_code == 403 and isinstance(_json_body(response), dict)


# --------------------------------------------------------------------------------------------
# the client


class NewStoreClient:
    """All HTTP traffic to one environment's NewStore tenant."""

    def __init__(
        self,
        env: Environment,
        *,
        transport: httpx.BaseTransport | None = None,
        limiter: HostLimiter | None = None,
        backoff: float = BACKOFF_SECONDS,
    ) -> None:
        self.env = env
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
        self._limiter = limiter or HostLimiter.for_host(base.netloc.decode("ascii"))
        self._backoff = backoff
        self._auth = _ClientCredentials(env, (base.scheme, base.host, base.port))
        try:
            self._http = httpx.Client(
                base_url=conn.base_url,
                auth=self._auth,
                timeout=conn.timeout,
                verify=_ssl_context(conn.ca_bundle),
                follow_redirects=False,
                transport=transport,
                trust_env=True,
                headers={"Accept": "application/json"},
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
            detail = _problem_detail(response)
        return cls(
            message,
            setting=setting,
            method=method,
            path=self.full_path(path),
            status=response.status_code if response is not None else None,
            request_id=request_id_of(response) if response is not None else None,
            detail=_scrub(detail, self._known_secrets()),
            environment=self.env.name,
            hint=hint,
        )

    def body(self, setting: str, response: httpx.Response) -> Any:
        """The JSON body of a successful answer (None when empty); RejectedError if not JSON.

        Secrets in it (a live api_key NewStore answers in clear) are remembered, so that a
        later error echoing them is scrubbed like one echoing a secret we sent."""
        if not response.content:
            return None
        try:
            body = jsonlib.loads(response.content)
        except ValueError:
            request = response.request
            raise self.error(
                RejectedError,
                setting,
                request.method,
                request.url.path.removeprefix(self._base_path),
                "NewStore answered with a body that is not JSON",
                response=response,
            ) from None
        # A masked stub ("****", "ab••") is no secret, and scrubbing a short one would mangle
        # ordinary words in later messages.
        self._remember_secrets(
            value for value in _secret_values(body) if len(value) >= MIN_SCRUBBED_SECRET
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
    ) -> httpx.Response:
        """Send one API call (retrying transient failures) and return the response whose
        status is in `ok`; any other outcome raises a `NewStoreError` subclass.

        Retrying writes is safe here: every setter NewStore offers for these settings is "set
        to this value" (POST/PUT of the full value; DELETE is idempotent), so repeating one is
        harmless. A connection dropped after NewStore committed a write just sets the same
        value again.
        """
        if not path.startswith("/"):
            raise ValueError(f"path must be relative to base_url and start with '/': {path!r}")
        self._remember_secrets(_secret_values(json))
        started = time.monotonic()
        budget = self.env.connection.retry_max_seconds
        attempts = max(1, self.env.connection.retry_attempts)
        shown = self.full_path(path)

        def remaining() -> float:
            return max(0.0, budget - (time.monotonic() - started))

        def attempt() -> httpx.Response:
            return self._attempt(setting, method, path, json, ok, remaining)

        # Jitter, so environments that failed together do not retry in lockstep.
        backoff = tenacity.wait_exponential(
            multiplier=self._backoff, max=MAX_BACKOFF_SECONDS
        ) + tenacity.wait_random(0, self._backoff)

        def wait(state: tenacity.RetryCallState) -> float:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            delay = backoff(state)
            if isinstance(exc, _Transient) and exc.retry_after is not None:
                delay = exc.retry_after
            return min(delay, remaining())

        def before_sleep(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            reason = exc.reason if isinstance(exc, _Transient) else "failed"
            sleep = state.next_action.sleep if state.next_action is not None else 0.0
            after = " (Retry-After)" if isinstance(exc, _Transient) and exc.retry_after else ""
            log.info(
                "%s %s: %s; attempt %d of %d, retrying in %.2f s%s",
                method,
                shown,
                reason,
                state.attempt_number,
                attempts,
                sleep,
                after,
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(budget),
            wait=wait,
            retry=tenacity.retry_if_exception_type(_Transient),
            before_sleep=before_sleep,
        )
        try:
            return retrying(attempt)
        except tenacity.RetryError as err:
            last = err.last_attempt.exception()
            assert isinstance(last, _Transient)
            count = err.last_attempt.attempt_number
            elapsed = time.monotonic() - started
            raise RetryBudgetExhausted(
                f"gave up after {count} attempt{'s' if count != 1 else ''} in {elapsed:.1f} s: "
                f"{last.reason}",
                setting=setting,
                method=method,
                path=shown,
                status=last.status,
                request_id=last.request_id,
                detail=_scrub(last.detail, self._known_secrets()),
                environment=self.env.name,
                hint="NewStore or the network is struggling; run again later "
                "(or raise connection.retry.attempts / connection.retry.max_seconds).",
            ) from None

    def _attempt(
        self,
        setting: str,
        method: str,
        path: str,
        body: Any,
        ok: Collection[int],
        remaining: Callable[[], float],
    ) -> httpx.Response:
        shown = self.full_path(path)
        with self._limiter.slot(remaining()) as waited:
            if waited:
                log.info("%s %s: host paused after a 429, waited %.2f s", method, shown, waited)
            started = time.monotonic()
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                reason = _describe_transport_error(exc)
                log.info("%s %s → %s", method, shown, reason)
                if isinstance(exc, httpx.UnsupportedProtocol) or "TLS" in reason:
                    raise self.error(TransportError, setting, method, path, reason) from None
                raise _Transient(reason) from None
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
            raise _Transient(
                f"NewStore answered {status}",
                status=status,
                request_id=request_id,
                detail=_scrub(_problem_detail(response), self._known_secrets()),
                retry_after=retry_after,
            )
        raise self._classify(setting, method, path, response)

    def _classify(
        self, setting: str, method: str, path: str, response: httpx.Response
    ) -> NewStoreError:
        status = response.status_code
        if status == 403 and not isinstance(_json_body(response), dict):
            return self.error(
                IPBlockedError,
                setting,
                method,
                path,
                IP_BLOCKED,
                response=response,
                hint=IP_BLOCKED_HINT,
            )
        if status in (401, 403):
            return self.error(
                AuthError,
                setting,
                method,
                path,
                "NewStore refused the access token, also after fetching a new one",
                response=response,
                hint="Check that the API client has permission for this setting.",
            )
        if 300 <= status < 400:
            location = httpx.URL(response.headers.get("location", ""))
            target = location.host or self.env.connection.base_url
            return self.error(
                RejectedError,
                setting,
                method,
                path,
                f"NewStore redirected to {target}; redirects are not followed, so the access "
                "token never leaves the configured host",
                response=response,
                hint="Check connection.base_url.",
            )
        if status == 409:
            return self.error(
                ConflictError,
                setting,
                method,
                path,
                "another update of this setting happened at the same time (409)",
                response=response,
            )
        return self.error(
            RejectedError, setting, method, path, "NewStore rejected the call", response=response
        )


# --------------------------------------------------------------------------------------------
# the webhook-probe gate


def probe_webhook(
    url: str,
    api_key: str,
    probe: WebhookProbe,
    timeout: float,
    *,
    transport: httpx.BaseTransport | None = None,
    ca_bundle: str | None = None,
) -> str:
    """POST a sample availability request to the retailer's webhook, as NewStore would.

    Returns a short summary ("200 in 12 ms, 2 availabilities"); raises `BlockedError` unless the
    webhook answers 200 with a valid `availabilities` body within `timeout` seconds. One attempt
    only: it is a health check, and NewStore itself will not retry either.
    """
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        # The environment file checks the url's shape; httpx is stricter about host names.
        raise BlockedError(
            "webhook probe: the webhook url is not one an HTTP client can send to "
            "(check its host name)"
        ) from None
    shown = f"{target.scheme}://{target.netloc.decode('ascii')}{target.path}"
    prefix = f"webhook probe to {shown}"
    body = {
        "products": [{"product_id": p, "external_identifier": p} for p in probe.products],
        "fulfillment_locations": list(probe.fulfillment_locations),
    }
    started = time.monotonic()
    try:
        with httpx.Client(
            timeout=timeout,
            verify=_ssl_context(ca_bundle),
            follow_redirects=False,
            transport=transport,
            trust_env=True,
        ) as http:
            response = http.post(url, json=body, headers={"Authorization": api_key})
    except httpx.TimeoutException:
        raise BlockedError(
            f"{prefix}: no answer within {timeout:g} s; NewStore would treat every item as "
            "unavailable"
        ) from None
    except httpx.TransportError as exc:
        raise BlockedError(f"{prefix}: {_describe_transport_error(exc)}") from None
    except httpx.DecodingError:
        raise BlockedError(f"{prefix}: {UNDECODABLE}") from None
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
        # Raised before any answer: a host name IDNA cannot encode, a proxy variable httpx
        # cannot use. Only the type is named: the text of such errors may quote a header.
        raise BlockedError(
            f"{prefix}: the request could not be sent ({type(exc).__name__}); check the url's "
            "host name and any proxy variables (HTTPS_PROXY, ALL_PROXY)"
        ) from None
    millis = int((time.monotonic() - started) * 1000)
    log.info("POST %s → %d in %d ms (webhook probe)", shown, response.status_code, millis)
    if millis > timeout * 1000:
        raise BlockedError(
            f"{prefix}: answered after {millis} ms, beyond the {timeout:g} s timeout NewStore uses"
        )
    if response.status_code != 200:
        why = {
            401: " (the webhook refused the api_key)",
            403: " (the webhook refused the api_key)",
        }.get(response.status_code, "")
        if 300 <= response.status_code < 400:
            why = " (a redirect; NewStore does not follow it)"
        raise BlockedError(f"{prefix}: answered {response.status_code}, expected 200{why}")
    problem = _availabilities_problem(_json_body(response))
    if problem:
        raise BlockedError(f"{prefix}: invalid answer body: {problem}")
    count = len(_json_body(response)["availabilities"])
    return f"200 in {millis} ms, {count} availabilit{'y' if count == 1 else 'ies'}"


def _availabilities_problem(body: Any) -> str:
    """What is wrong with a webhook answer per webhooks-availability_hook.yaml; "" if valid."""
    if not isinstance(body, dict):
        return "not a JSON object"
    items = body.get("availabilities")
    if not isinstance(items, list):
        return "missing the `availabilities` list"
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            return f"availabilities[{index}] is not an object"
        for name in ("product_id", "external_identifier", "fulfillment_location"):
            if not isinstance(item.get(name), str) or not item[name]:
                return f"availabilities[{index}].{name} must be a non-empty string"
        atp = item.get("atp")
        if not isinstance(atp, int) or isinstance(atp, bool):
            return f"availabilities[{index}].atp must be an integer"
    return ""
