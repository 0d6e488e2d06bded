"""The connection pool under the client's transports: a stack of idle connections per origin.

httpcore's `ConnectionPool` re-examines every connection it holds for every request, and
again when each answer is closed: it asks each idle one whether it has expired, a `select()`
system call apiece, under a lock every thread of the pool shares. A pool shared by many
environments (the token endpoint's) holds a dozen idle connections, so each request paid a
dozen system calls, and with them a dozen hand-overs of the GIL to another thread. This pool
takes the most recently used idle connection to the request's origin, checks that one only,
and puts it back when its answer is closed: the cost of a request no longer grows with the
connections the pool holds.

What stays httpcore's: each `HTTPConnection` (connecting, TLS, HTTP/1.1, keep-alive expiry,
noticing a connection the server closed), and the errors, which httpx's transport maps as
before. `Transport` is httpx's `HTTPTransport` over this pool (its `_pool`; httpx is pinned
below 0.29 in pyproject.toml, and the client tests fail if that attribute ever moves).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator

import httpcore
import httpx

MAX_IDLE = 20
"""Idle connections kept per origin (httpx's own default for keep-alive connections)."""

KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle connection is kept (httpx's default)."""


class StackPool:
    """httpcore's pool interface (`handle_request`, `close`) over a stack of idle connections
    per origin; a connection carries one request at a time."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        # Per origin, idle connections with the time each was given back, the most recent last.
        self._idle: dict[tuple[bytes, bytes, int], list[tuple[httpcore.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        origin = request.url.origin
        while True:
            connection, reused = self._take(origin)
            try:
                response = connection.handle_request(request)
            except httpcore.ConnectionNotAvailable:
                # An idle connection that could not take the request after all (the server
                # closed it as it was taken): httpcore's pool, too, tries a fresh one.
                connection.close()
                if reused:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            return httpcore.Response(
                status=response.status,
                headers=response.headers,
                content=_Answer(response, connection, origin, self),
                extensions=response.extensions,
            )

    def _take(self, origin: httpcore.Origin) -> tuple[httpcore.HTTPConnection, bool]:
        """The most recently used idle connection to `origin` still open, else a new one."""
        stale: list[httpcore.HTTPConnection] = []
        found = None
        with self._lock:
            stack = self._idle.get(_key(origin))
            while stack:
                candidate, _ = stack.pop()
                if candidate.is_idle() and not candidate.has_expired():
                    found = candidate
                    break
                stale.append(candidate)
        for connection in stale:
            connection.close()
        if found is not None:
            return found, True
        return (
            httpcore.HTTPConnection(
                origin=origin,
                ssl_context=self._ssl_context,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            False,
        )

    def _give_back(self, connection: httpcore.HTTPConnection, origin: httpcore.Origin) -> None:
        """After an answer is closed: keep its connection if it can carry another request."""
        stale: list[httpcore.HTTPConnection] = []
        kept = False
        if connection.is_idle():
            now = time.monotonic()
            with self._lock:
                if not self._closed:
                    stack = self._idle.setdefault(_key(origin), [])
                    # The bottom of the stack is the longest idle: past the keep-alive expiry
                    # it would never be taken again (the top is taken first), so close it.
                    while stack and now - stack[0][1] > KEEPALIVE_EXPIRY:
                        stale.append(stack.pop(0)[0])
                    if len(stack) < MAX_IDLE:
                        stack.append((connection, now))
                        kept = True
        if not kept:
            stale.append(connection)
        for old in stale:
            old.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [c for stack in self._idle.values() for c, _ in stack]
            self._idle.clear()
        for connection in idle:
            connection.close()

    def __enter__(self) -> StackPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _key(origin: httpcore.Origin) -> tuple[bytes, bytes, int]:
    return (origin.scheme, origin.host, origin.port)


class _Answer:
    """An answer's body, read through; closing it gives the connection back to the pool."""

    def __init__(
        self,
        response: httpcore.Response,
        connection: httpcore.HTTPConnection,
        origin: httpcore.Origin,
        pool: StackPool,
    ) -> None:
        self._response = response
        self._connection = connection
        self._origin = origin
        self._pool = pool
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        stream = self._response.stream
        assert isinstance(stream, Iterable)
        yield from stream

    def close(self) -> None:
        # Once only: a connection given back twice would be taken by two requests at once.
        if self._closed:
            return
        self._closed = True
        self._response.close()
        self._pool._give_back(self._connection, self._origin)


class Transport(httpx.HTTPTransport):
    """httpx's transport (its request and answer conversion, its error mapping) over a
    `StackPool`."""

    def __init__(self, verify: ssl.SSLContext | bool) -> None:
        super().__init__(verify=verify)
        self._pool.close()
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        self._pool = StackPool(context)  # type: ignore[assignment]
