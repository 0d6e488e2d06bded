"""The connections under the client's transports: HTTP/1.1 over a socket, a stack of idle
connections per origin.

httpx's own transport goes through httpcore: a request is converted to httpcore's models and
its answer back, each step of an exchange runs under a trace and an exception-mapping context
manager, the request goes out in three writes, and its pool re-examined every connection it
held (a `select()` apiece, under one lock) for every request and again as each answer closed.
Over a thousand environments that was most of a GET's CPU. `Transport` does the exchange itself:
a request goes out in one write, the answer's body is read in full before the connection goes
back (the client reads every body anyway), and a request checks only the idle connection it
takes. The plain exchange (a request with a known length, an answer with a Content-Length) is
written and read by `wire`'s patterns; anything else by h11 (the parser httpcore uses), the
request replayed into its state and the bytes read so far handed to it, so h11 judges every
answer the patterns do not accept (`tests/test_client_wire_plain.py`).

Kept as httpcore did it: TCP_NODELAY; TLS with the request's host as SNI, ALPN http/1.1;
timeouts per phase (connect, the TLS handshake under the connect timeout, write, read); an
idle connection dropped once its keep-alive expires or the server closed it; a write error
left for the answer to explain (a server may close early and still answer); and every failure
raised as the httpx error httpx's transport raised for it, with the same text, since
`transport.classify_transport_error` reads both.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import time
from typing import Any

import h11
import httpx

from reconciler.newstore import wire

MAX_IDLE = 20
"""Idle connections kept per origin (httpx's own default for keep-alive connections)."""

KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle connection is kept (httpx's default)."""

READ_BYTES = 64 * 1024
MAX_INCOMPLETE_EVENT_SIZE = 100 * 1024
"""The largest status line and headers accepted (httpcore's limit)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BLANK_LINE = re.compile(rb"\n\r?\n")
"""The end of an answer's head, as h11 finds it."""
_PLAIN_START = b"HTTP/1.1 "
"""How every answer `wire.parse_head` reads begins."""

Origin = tuple[str, str, int]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes, bytes]
"""An answer read whole: (status, headers, reason, body)."""


class Connection:
    """One HTTP/1.1 connection: one exchange at a time, kept alive between them."""

    def __init__(self, origin: Origin, ssl_context: ssl.SSLContext | None) -> None:
        self.origin = origin
        self._ssl_context = ssl_context
        self._sock: socket.socket | None = None
        self._keep = True  # whether the last answer left the connection fit for another
        self.idle_since = 0.0

    def exchange(self, request: httpx.Request, timeouts: dict[str, float | None]) -> Answer:
        """Send `request`, read its answer whole: (status, headers, reason, body). Returns with
        the connection ready for the next exchange, or closed (`reusable` says which); closes
        it on any exception."""
        try:
            if self._sock is None:
                self._connect(timeouts.get("connect"))
            return self._exchange(request, timeouts)
        except BaseException:
            self.close()
            raise

    @property
    def reusable(self) -> bool:
        return self._sock is not None and self._keep

    def readable(self) -> bool:
        """Whether the idle socket has something to read: at rest that can only be the
        server's close (or garbage), so the connection cannot carry another request. `poll`,
        as httpcore: `select` refuses descriptors above 1023."""
        sock = self._sock
        fd = -1 if sock is None else sock.fileno()
        if fd < 0:
            return True
        try:
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                return bool(poller.poll(0))
            return bool(select.select([fd], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _connect(self, timeout: float | None) -> None:
        _, host, port = self.origin
        try:
            sock = socket.create_connection((host, port), timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock.settimeout(timeout)
                sock = self._ssl_context.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            sock.close()
            raise httpx.ConnectError(str(exc)) from exc
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def _exchange(self, request: httpx.Request, timeouts: dict[str, float | None]) -> Answer:
        sock = self._sock
        assert sock is not None
        method = request.method.encode("ascii")
        target = request.url.raw_path
        headers = request.headers.raw
        content = request.read()
        # The plain request in one pattern check per header (`wire`); anything else, h11.
        data = wire.encode_request(method, target, headers, content)
        state = None
        if data is None:
            state, data = self._h11_request(method, target, headers, content)
        try:
            sock.settimeout(timeouts.get("write"))
            sock.sendall(data)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc)) from exc
        except OSError:
            # A server may close the connection early and still send a well-formed answer
            # (httpcore reads on, too): the answer, or its absence, says what happened.
            pass
        sock.settimeout(timeouts.get("read"))
        received = b""
        if state is None:
            plain, received = self._plain_answer(sock, method)
            if plain is not None:
                return plain
            # Not plain: h11 reads it from the start, the request replayed into its state.
            state, _ = self._h11_request(method, target, headers, content)
        if received:  # (b"" would tell h11 the connection closed: its loop reads that itself)
            state.receive_data(received)
        return self._h11_answer(sock, state)

    def _plain_answer(self, sock: socket.socket, method: bytes) -> tuple[Answer | None, bytes]:
        """The answer read by `wire.parse_head` when it is plain, else (None, what was read).
        It steps aside as soon as the bytes cannot start a plain answer (h11 then fails at once
        where it would, not at the read timeout), and reads in linear time whatever the size
        a server announces."""
        buffer = bytearray()
        searched = 0
        while True:
            data = self._recv(sock)
            if not data:
                return None, bytes(buffer)
            buffer += data
            if buffer[: len(_PLAIN_START)] != _PLAIN_START[: len(buffer)]:
                return None, bytes(buffer)
            blank = _BLANK_LINE.search(buffer, max(0, searched - 2))
            if blank is not None:
                break
            searched = len(buffer)
            if searched > MAX_INCOMPLETE_EVENT_SIZE:
                return None, bytes(buffer)
        end = blank.end()
        if end > MAX_INCOMPLETE_EVENT_SIZE:
            return None, bytes(buffer)
        head = wire.parse_head(bytes(buffer[:end]), method)
        if head is None:
            return None, bytes(buffer)
        need = end + head.length
        while len(buffer) < need:
            data = self._recv(sock)
            if not data:
                return None, bytes(buffer)
            buffer += data
        # Bytes past the answer are no answer to anything we sent: the connection is spent.
        self._keep = head.keep_alive and len(buffer) == need
        if not self._keep:
            self.close()
        return (head.status, head.headers, head.reason, bytes(buffer[end:need])), b""

    @staticmethod
    def _h11_request(
        method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], content: bytes
    ) -> tuple[h11.Connection, bytes]:
        state = h11.Connection(
            our_role=h11.CLIENT, max_incomplete_event_size=MAX_INCOMPLETE_EVENT_SIZE
        )
        try:
            data = state.send(h11.Request(method=method, target=target, headers=headers))
            if content:
                data += state.send(h11.Data(data=content))
            data += state.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # h11's text quotes the refused value, which may be a token: say only what it is.
            raise httpx.LocalProtocolError(
                "the request is not valid HTTP/1.1 (a header, the target or its framing)"
            ) from None
        return state, data or b""

    def _h11_answer(self, sock: socket.socket, state: h11.Connection) -> Answer:
        while True:
            event = self._next_event(sock, state)
            if isinstance(event, h11.Response):
                break
            # InformationalResponse (100 Continue and the like): the answer is still to come.
        status, headers, reason = event.status_code, event.headers.raw_items(), event.reason
        body: list[bytes] = []
        while True:
            event = self._next_event(sock, state)
            if isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
        # Reusable when both sides are done and nothing past the answer arrived.
        self._keep = (
            state.our_state is h11.DONE
            and state.their_state is h11.DONE
            and not state.trailing_data[0]
        )
        if not self._keep:  # the server said it closes (or must, to end the body)
            self.close()
        return status, headers, reason, b"".join(body)

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(READ_BYTES)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc

    def _next_event(self, sock: socket.socket, state: h11.Connection) -> Any:
        while True:
            try:
                event = state.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if event is h11.PAUSED:
                # A protocol switch (101, a CONNECT tunnel): no request of ours asks for one.
                raise httpx.RemoteProtocolError("The server switched protocols.")
            if event is not h11.NEED_DATA:
                return event
            data = self._recv(sock)
            if not data and state.their_state is h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            state.receive_data(data)


class Transport(httpx.BaseTransport):
    """An httpx transport over a stack of idle connections per origin; a connection carries
    one request at a time, and a request checks only the idle connection it takes."""

    def __init__(self, verify: ssl.SSLContext | bool) -> None:
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self._idle: dict[Origin, list[Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'."
            )
        origin = (scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout", {})
        connection = self._take(origin)
        status, headers, reason, body = connection.exchange(request, timeouts)
        self._give_back(connection)
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            verify = self._verify
            context = (
                verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
            )
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context

    def _take(self, origin: Origin) -> Connection:
        """The most recently used idle connection to `origin` still usable, else a new one."""
        stale: list[Connection] = []
        found = None
        now = time.monotonic()
        with self._lock:
            stack = self._idle.get(origin)
            while stack:
                candidate = stack.pop()
                if now - candidate.idle_since <= KEEPALIVE_EXPIRY:
                    found = candidate
                    break
                stale.append(candidate)
        for connection in stale:
            connection.close()
        if found is not None:
            if not found.readable():
                return found
            found.close()
        context = self._context() if origin[0] == "https" else None
        return Connection(origin, context)

    def _give_back(self, connection: Connection) -> None:
        """After an exchange: keep its connection if it can carry another request."""
        stale: list[Connection] = []
        if connection.reusable:
            now = time.monotonic()
            connection.idle_since = now
            with self._lock:
                if self._closed:
                    stale.append(connection)
                else:
                    stack = self._idle.setdefault(connection.origin, [])
                    # The bottom of the stack is the longest idle: past the keep-alive expiry
                    # it would never be taken again (the top is taken first), so close it.
                    while stack and now - stack[0].idle_since > KEEPALIVE_EXPIRY:
                        stale.append(stack.pop(0))
                    if len(stack) < MAX_IDLE:
                        stack.append(connection)
                    else:
                        stale.append(connection)
        else:
            stale.append(connection)
        for old in stale:
            old.close()

    def idle(self, origin: Origin) -> int:
        """How many idle connections to `origin` the pool keeps (for tests)."""
        with self._lock:
            return len(self._idle.get(origin, ()))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [c for stack in self._idle.values() for c in stack]
            self._idle.clear()
        for connection in idle:
            connection.close()
