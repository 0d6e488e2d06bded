"""The HTTP client under every `NewStoreClient`: httpx's, lighter where NewStore needs nothing.

No cookie jar: NewStore's APIs authenticate with the bearer token, and a cookie one answer set
must not ride along on later calls (httpx's jar also parses every answer's headers into a
urllib request: a tenth of a request's CPU). The process environment is read for proxies only
when a proxy variable is set: httpx would otherwise walk every variable for each client.
"""

from __future__ import annotations

import os

import httpx

_PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
)
"""The variables httpx reads proxies from (NO_PROXY only matters beside one of them)."""


def proxies_configured() -> bool:
    """Whether the process names a proxy; only then does the client read the environment
    (`trust_env`). httpx would otherwise walk every environment variable for each client (a
    tenth of a run's CPU over a thousand environments) to find none; the TLS settings it also
    reads there (SSL_CERT_FILE, SSL_CERT_DIR) reach it through `ssl_context` either way."""
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: NewStore's APIs authenticate with the bearer token,
    and a cookie one response set must not ride along on later calls. (httpx's jar also
    parses every response's headers into a urllib request: a tenth of a request's CPU.)"""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


_NO_COOKIES = _NoCookies()


class HTTPClient(httpx.Client):
    """httpx's client without a cookie jar."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass  # httpx's constructor sets an empty jar; there is nothing to keep
