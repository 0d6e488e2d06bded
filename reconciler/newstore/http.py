"""The HTTP layer under every `NewStoreClient`: httpx's transports and models, a lean send.

`httpx.Client` does a good deal per request that NewStore's APIs never need: it merges each
request's URL, headers, cookies and parameters with the client's, keeps a cookie jar (which
parses every answer's headers into a urllib request), keeps redirect history and event hooks,
and logs a line. Over a thousand environments that was about a third of a GET's CPU.
`HTTPClient` sends through transports (`pool.Transport`, or one a test injects) with
requests built from a fixed set of headers, drives the auth flow itself, and:

- sets `connection.timeout` on every request, the token request too (httpx's client sends the
  requests an auth flow yields without the client's timeout: a token endpoint that never
  answered held the run for ever);
- keeps no cookies: NewStore authenticates with the bearer token, and a cookie one answer set
  must not ride along on later calls;
- shares one connection pool per CA context for every host other than the environment's API
  host, for the whole process: the token endpoint is one identity host for every tenant
  (NewStore's `id.p.newstore.net`), so a run of many environments opens (and, over TLS,
  handshakes) its connections there once, not once per environment. Connections carry no
  credentials; each token request carries its own environment's.

When a proxy variable is set (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY), requests go through a full
`httpx.Client` reading the environment (`trust_env`), which picks the proxy per URL and honours
NO_PROXY. Without one the environment is not read for proxies at all: httpx would otherwise walk
every environment variable for each client to find none.
"""

from __future__ import annotations

import atexit
import os
import ssl
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from reconciler._version import __version__
from reconciler.newstore.pool import Transport

_PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
)
"""The variables httpx reads proxies from (NO_PROXY only matters beside one of them)."""

HEADERS = {
    "Accept": "application/json",
    # What httpx's client sends: the encodings it decodes without optional packages.
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": f"newstore-reconciler/{__version__}",
}
"""Every request's headers (before its own: Authorization, Content-Type)."""


def proxies_configured() -> bool:
    """Whether the process names a proxy; only then is the environment read (`trust_env`).
    The TLS settings httpx would also read there (SSL_CERT_FILE, SSL_CERT_DIR) reach it through
    the CA context either way."""
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing (for the proxied path's `httpx.Client`)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


class _ProxiedClient(httpx.Client):
    """httpx's client without a cookie jar: the path requests take through a proxy."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass  # httpx's constructor sets an empty jar; there is nothing to keep


_shared_lock = threading.Lock()
_shared: dict[ssl.SSLContext | bool, Transport] = {}
"""Keyed by the context itself (contexts compare by identity; `transport.ssl_context` builds
one per CA bundle), which the map keeps alive while its pool lives."""


def shared_transport(verify: ssl.SSLContext | bool) -> Transport:
    """The process's pool for the hosts environments share (the token endpoint), one per CA
    context."""
    with _shared_lock:
        transport = _shared.get(verify)
        if transport is None:
            transport = _shared[verify] = Transport(verify)
        return transport


def close_shared() -> None:
    """Close the shared pools' idle connections (a new run opens its own): a run's connections
    do not outlive it, and none is left for the interpreter to find open at exit."""
    with _shared_lock:
        transports = list(_shared.values())
        _shared.clear()
    for transport in transports:
        transport.close()


atexit.register(close_shared)


class HTTPClient:
    """Sends one environment's requests: to its API host over a pool of its own, to any other
    host (the token endpoint) over the process's shared pool; through `transport` when one is
    given (the in-process sandbox), or a full `httpx.Client` when a proxy is named."""

    def __init__(
        self,
        *,
        api_origin: tuple[str, str, int | None],
        auth: httpx.Auth,
        timeout: float,
        verify: ssl.SSLContext | bool,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`api_origin`: (scheme, host, port) of the environment's API. Raises ValueError when
        the proxy variables cannot be read (their text may hold a proxy password: say only
        which kind of error)."""
        self._api_origin = api_origin
        self._auth = auth
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._proxied: httpx.Client | None = None
        self._own: httpx.BaseTransport
        self._others: httpx.BaseTransport
        if transport is not None:
            self._own = self._others = transport
        elif proxies_configured():
            self._proxied = _ProxiedClient(
                auth=auth,
                timeout=timeout,
                verify=verify,
                follow_redirects=False,
                trust_env=True,
                headers=HEADERS,
            )
            self._own = self._others = _UNUSED
        else:
            self._own = Transport(verify)
            self._others = shared_transport(verify)

    def close(self) -> None:
        """Closes the environment's own connections (the shared pool stays for the others)."""
        if self._proxied is not None:
            self._proxied.close()
        elif self._own is not self._others:
            self._own.close()

    def request(
        self,
        method: str,
        url: httpx.URL,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request (and the ones its auth flow adds) and return the answer, read."""
        request = httpx.Request(
            method,
            url,
            headers=HEADERS if headers is None else {**HEADERS, **headers},
            content=content,
            json=json,
            extensions=self._extensions,
        )
        if self._proxied is not None:
            return self._proxied.send(request)
        flow = self._auth.sync_auth_flow(request)
        try:
            request = next(flow)
            while True:
                response = self._send(request)
                try:
                    request = flow.send(response)
                except StopIteration:
                    return response
                except BaseException:
                    response.close()
                    raise
        finally:
            flow.close()

    def _send(self, request: httpx.Request) -> httpx.Response:
        """One request, its answer read; a failure names the request (`exc.request`), as the
        errors' wording needs the host it was for."""
        url = request.url
        origin = (url.scheme, url.host, url.port)
        transport = self._own if origin == self._api_origin else self._others
        try:
            response = transport.handle_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        try:
            response.read()
        except BaseException as exc:
            response.close()
            if isinstance(exc, httpx.RequestError):
                exc.request = request
            raise
        return response


class _Unused(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError("requests go through the proxied client")


_UNUSED = _Unused()
