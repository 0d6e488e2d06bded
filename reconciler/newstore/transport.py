"""What a failed exchange means: tables from transport errors and status codes to outcomes
(read in one place, like httpx's httpcore exception map), and the TLS contexts."""

from __future__ import annotations

import enum
import functools
import os
import ssl
import threading

import httpx

from reconciler.errors import ConfigError
from reconciler.newstore.problem import shorten

UNDECODABLE = "the answer's body could not be decoded (its Content-Encoding is broken)"


class Outcome(enum.Enum):
    """What to do after one failed attempt."""

    RETRY = "retry"  # transient: retry inside the budget
    UNREACHABLE = "unreachable"  # nothing answers at the address: one retry, then fail
    FAIL = "fail"  # retrying cannot help: fail now


# --------------------------------------------------------------------------------------------
# transport errors: no HTTP answer at all

# First matching row wins, so subclasses come before their bases (ConnectTimeout is a
# TimeoutException). Fixed phrases rather than str(exc): enough to act on, and nothing we did
# not write.
TRANSPORT_ERRORS: tuple[tuple[type[httpx.TransportError], str, Outcome], ...] = (
    (httpx.ConnectTimeout, "connecting timed out", Outcome.RETRY),
    (httpx.TimeoutException, "no answer within the timeout", Outcome.RETRY),
    (httpx.RemoteProtocolError, "the connection dropped before an answer arrived", Outcome.RETRY),
    (httpx.UnsupportedProtocol, "no answer (UnsupportedProtocol)", Outcome.FAIL),
)


# Connection failures where nothing answers at the address, by what the OS or TLS library
# said: (markers in the error text, the cause as we name it, the likely fix). First match wins.
UNREACHABLE_CAUSES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("CERTIFICATE_VERIFY_FAILED",),
        "TLS certificate verification failed",
        "Check connection.ca_bundle (or SSL_CERT_FILE) names the CA that signed the server's "
        "certificate, and that {setting} names the right host.",
    ),
    (
        ("SSL", "TLS", "EOF occurred in violation of protocol"),
        "the TLS handshake failed",
        "Check that {setting} uses the scheme and port the server speaks (https), and "
        "connection.ca_bundle.",
    ),
    (
        ("Connection refused", "Errno 111", "Errno 61", "WinError 10061"),
        "connection refused (nothing is listening there)",
        "Check {setting} (host and port) and that the server is running.",
    ),
    (
        (
            "Name or service not known",
            "nodename nor servname",
            "getaddrinfo failed",
            "Temporary failure in name resolution",
            "No address associated",
            "Errno -2",
            "Errno -3",
            "Errno -5",
            "Errno 8",
            "Errno 11001",
        ),
        "unknown host (the name does not resolve)",
        "Check the host name in {setting} (a typo, or a tenant that does not exist) and DNS.",
    ),
)


def unreachable_cause(exc: httpx.TransportError) -> tuple[str, str] | None:
    """(cause, fix with a `{setting}` placeholder) when `exc` says nothing answers at the
    address; None for other failures."""
    if not isinstance(exc, httpx.ConnectError) or isinstance(exc, httpx.ConnectTimeout):
        return None
    text = str(exc)
    for markers, cause, fix in UNREACHABLE_CAUSES:
        if any(marker in text for marker in markers):
            return cause, fix
    return None


def classify_transport_error(exc: httpx.TransportError) -> tuple[str, Outcome]:
    """A fixed phrase describing `exc`, and whether retrying may help."""
    for kind, phrase, outcome in TRANSPORT_ERRORS:
        if isinstance(exc, kind):
            return phrase, outcome
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            return "TLS certificate verification failed", Outcome.FAIL
        phrase = "could not connect" + (f" ({shorten(reason, 120)})" if reason else "")
        if "TLS" in phrase:
            return phrase, Outcome.FAIL
        if unreachable_cause(exc) is not None:
            return phrase, Outcome.UNREACHABLE
        return phrase, Outcome.RETRY
    return f"no answer ({type(exc).__name__})", Outcome.RETRY


def describe_transport_error(exc: httpx.TransportError) -> str:
    return classify_transport_error(exc)[0]


def address_of(exc: httpx.TransportError) -> str:
    """host:port the failed request was for ("" when httpx did not say)."""
    try:
        url = exc.request.url
    except RuntimeError:
        return ""
    port = url.port or {"https": 443, "http": 80}.get(url.scheme, 0)
    return f"{url.host}:{port}"


# --------------------------------------------------------------------------------------------
# status codes: an HTTP answer the caller did not accept


class StatusKind(enum.Enum):
    RETRYABLE = "retryable"  # 429, 502-504: retry inside the budget
    IP_BLOCKED = "ip_blocked"  # 403 with a non-JSON body: NewStore's per-IP block
    AUTH = "auth"  # 401, 403 with JSON: the token was refused
    REDIRECT = "redirect"  # 3xx: not followed, so the token never leaves the host
    CONFLICT = "conflict"  # 409: a concurrent update
    REJECTED = "rejected"  # anything else


RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

STATUS_KINDS: dict[int, StatusKind] = {
    **{status: StatusKind.RETRYABLE for status in RETRYABLE_STATUSES},
    401: StatusKind.AUTH,
    403: StatusKind.AUTH,
    409: StatusKind.CONFLICT,
}


def classify_status(status: int, json_object: bool) -> StatusKind:
    """What an unaccepted `status` means; `json_object`: its body is a JSON object."""
    if status == 403 and not json_object:
        return StatusKind.IP_BLOCKED
    if 300 <= status < 400:
        return StatusKind.REDIRECT
    return STATUS_KINDS.get(status, StatusKind.REJECTED)


# --------------------------------------------------------------------------------------------
# TLS


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    if ca_bundle is None:
        cert_file, cert_dir = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
        # The first environments of a run all get here at once; `functools.cache` does not
        # stop them each building a context before one is cached (16 CA bundle parses, ~0.4 s
        # of CPU at the default parallelism).
        with _default_ssl_context_lock:
            return _default_ssl_context(cert_file, cert_dir)
    try:
        stat = os.stat(ca_bundle)
        with _default_ssl_context_lock:
            return _bundle_ssl_context(os.path.realpath(ca_bundle), stat.st_mtime_ns, stat.st_size)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use CA bundle {ca_bundle}: {exc.strerror or exc}") from None


@functools.lru_cache(maxsize=64)
def _bundle_ssl_context(path: str, mtime_ns: int, size: int) -> ssl.SSLContext:
    """A context trusting the CA bundle at `path`, one per bundle (and per version of its file:
    a changed bundle is read again). Environments naming the same bundle share it, and with it
    the pool of connections to the hosts they share (`newstore.http.shared_transport`)."""
    return ssl.create_default_context(cafile=path)


_default_ssl_context_lock = threading.Lock()


@functools.cache
def _default_ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's default context (SSL_CERT_FILE, else SSL_CERT_DIR, else certifi), built once per
    value of those variables. Building one parses a whole CA bundle, ~15 ms of CPU under the
    GIL; one per environment made a 200-environment run CPU-bound. Contexts are safe to share."""
    return httpx.create_ssl_context(trust_env=True)
