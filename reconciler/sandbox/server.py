"""Serving the sandbox over HTTP with werkzeug's threaded server.

Threaded, so a hundred slow clients are served at once (latency is a sleep in the handler
thread). We bind the listening socket ourselves and hand werkzeug its descriptor: werkzeug
would print to stderr and `sys.exit(1)` on a busy port, and we want a one-line `ConfigError`.

Connections are kept alive (HTTP/1.1). werkzeug's own handler answers every request with
`Connection: close`, which made each of a run's requests a new TCP connection and a new server
thread, and hid whether the client reuses its connections. Our handler writes the answer
itself, always with a Content-Length, and first reads what is left of the request body so the
next request on the connection starts clean. Closing the server closes its open connections,
so an idle keep-alive connection neither delays Ctrl-C nor reaches a stopped server's app.

With a TLS context (`--tls-cert`, `--tls-key`: NewStore's hosts are all HTTPS, and the
benchmark measures the handshakes too) each accepted connection is wrapped, and its handshake
runs in the connection's own thread: wrapping the listening socket, as werkzeug does, would
make the accepting thread do every handshake one after the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import InternalServerError
from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

from reconciler.errors import ConfigError
from reconciler.net import is_loopback
from reconciler.sandbox.head import LeanHeadHandler
from reconciler.sandbox.workers import ReusedThreads

if TYPE_CHECKING:
    from types import FrameType

    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

    from reconciler.sandbox.app import SandboxApp

_BACKLOG = 256
# Bodies up to this size are read to the end to keep the connection; a larger one (the app
# refuses it with 413 unread) goes through werkzeug, which answers and closes.
_KEEP_ALIVE_MAX_BODY = 1024 * 1024
# An idle connection's thread ends after this long; clients reuse theirs within seconds
# (httpx keeps one for 5 s), so this only reaps connections a client forgot.
_IDLE_SECONDS = 60.0


class _Server(ReusedThreads, ThreadedWSGIServer):
    """werkzeug's threaded server that knows its open connections, to close them when it
    closes (its handler threads are daemons: nothing else would end an idle one), and keeps
    its handler threads for the next connection (`workers.py`)."""

    def __init__(self, *args: Any, tls: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        # Before werkzeug's constructor, which already calls server_close.
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)
        self._tls = tls
        # werkzeug reads it for the request's url scheme only (it was not given the context,
        # so it did not wrap the listening socket).
        self.ssl_context = tls

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self._tls is not None:
            connection = self._tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def server_close(self) -> None:
        super().server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(LeanHeadHandler, WSGIRequestHandler):
    """Serves keep-alive connections; logs each request like werkzeug's handler. Request heads
    are read without the email package (`head.py`)."""

    protocol_version = "HTTP/1.1"
    timeout = _IDLE_SECONDS
    # The head and the body of an answer are two writes: with Nagle's algorithm the body
    # waits for the client's delayed ACK of the head, up to 40 ms on a reused connection.
    disable_nagle_algorithm = True
    server: _Server
    _headers_buffer: list[bytes]  # http.server's: what send_header has queued

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        super().finish()

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError):
                return  # a client that does not trust the certificate, or went away
        super().handle()

    def run_wsgi(self) -> None:
        # The head was refused unless its framing is unambiguous (head.framing_problem): one
        # Content-Length of digits at most, and a Transfer-Encoding only when it ends in chunked.
        length = _content_length(self.headers.get("Content-Length"))
        chunked = "Transfer-Encoding" in self.headers
        if chunked or length is None or length > _KEEP_ALIVE_MAX_BODY:
            self.close_connection = True
            super().run_wsgi()
            return
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.environ = self.make_environ()
        body = LimitedStream(environ["wsgi.input"], length)
        environ["wsgi.input"] = body
        try:
            status, headers, payload = _call(self.server.app, environ)
        except ConnectionError as exc:  # the app dropped the connection (a fault rule)
            self.close_connection = True
            self.connection_dropped(exc, environ)
            return
        except Exception:
            self.close_connection = True
            self.server.log("error", f"Error on request:\n{traceback.format_exc()}")
            status, headers, payload = _call(InternalServerError(), environ)
        body.exhaust()
        self._answer(environ, status, headers, payload)

    def _answer(
        self, environ: WSGIEnvironment, status: str, headers: list[tuple[str, str]], payload: bytes
    ) -> None:
        code_text, _, phrase = status.partition(" ")
        code = int(code_text)
        self.send_response(code, phrase)
        names = set()
        for name, value in headers:
            if name.lower() != "connection":
                self.send_header(name, value)
                names.add(name.lower())
        bodiless = code in (204, 304) or 100 <= code < 200 or environ["REQUEST_METHOD"] == "HEAD"
        if "content-length" not in names and not bodiless:
            self.send_header("Content-Length", str(len(payload)))
        if bodiless:
            # Whatever the app produced: bytes after a bodiless answer's head would be read as
            # the start of the next answer on the connection.
            payload = b""
        if self.close_connection:
            self.send_header("Connection", "close")
        # The blank line and the body go out with the head, in one write: one send and one
        # wake-up of the client per answer, where end_headers would send the head alone.
        self._headers_buffer.append(b"\r\n" + payload)
        self.flush_headers()
        self.wfile.flush()


class _QuietHandler(_Handler):
    """No access log: tests run many servers, and pytest would collect every line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _content_length(value: str | None) -> int | None:
    """The request body's length (0 without the header); None when the header is unusable."""
    if value is None:
        return 0
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _call(
    app: WSGIApplication, environ: WSGIEnvironment
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to completion: its status line, headers and whole body (the sandbox's
    answers are small)."""
    started: list[tuple[str, list[tuple[str, str]]]] = []
    written: list[bytes] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        started[:] = [(status, headers)]
        return written.append

    chunks: Iterable[bytes] = app(environ, start_response)
    try:
        written.extend(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, headers = started[0]
    return status, headers, b"".join(written)


def _host_name(header: str) -> str:
    """The name in a Host header, lower case, without port, brackets or trailing dot."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0].rstrip(".") if header.count(":") <= 1 else header


class _ServedHosts:
    """A WSGI wrapper answering only requests addressed to a name this sandbox serves: every
    loopback name, the address it listens on and the names it was told to (`--allow-host`).
    A web page the user visits can point its own name at 127.0.0.1 (DNS rebinding) and then
    read the sandbox like its own site; its requests still carry its own name in Host."""

    def __init__(self, app: WSGIApplication, listen: str, allowed: Iterable[str]) -> None:
        self.app = app
        names = {_host_name(name) for name in (listen, *allowed)}
        self.names = {name for name in names if name and name not in ("0.0.0.0", "::")}

    def serves(self, header: str) -> bool:
        name = _host_name(header)
        return bool(name) and (is_loopback(name) or name in self.names)

    def __call__(self, environ: WSGIEnvironment, start_response: Any) -> Iterable[bytes]:
        if self.serves(environ.get("HTTP_HOST", "")):
            return self.app(environ, start_response)
        body = json.dumps(
            {
                "error_code": "misdirected_request",
                "message": "This sandbox does not serve that Host name. It answers loopback "
                "names (127.0.0.1, localhost, ::1), the address it listens on and the names "
                "given with `reconciler sandbox --allow-host NAME`.",
            }
        ).encode()
        start_response(
            "421 Misdirected Request",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


def base_url(host: str, port: int, *, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The server side of TLS from a PEM certificate (chain) and its key; ConfigError naming
    the file when either cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"cannot serve TLS with certificate {cert_file} and key {key_file}: {reason}."
        ) from None
    return context


def bind(
    app: SandboxApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    quiet: bool = True,
    allowed_hosts: Iterable[str] = (),
    tls: ssl.SSLContext | None = None,
) -> BaseWSGIServer:
    """A threaded werkzeug server listening on host:port (0 = a free port), not yet serving.
    It answers requests whose Host names this machine's loopback, `host` or one of
    `allowed_hosts` (`_ServedHosts`), others 421.

    With `tls`, it serves HTTPS. Its `.port` is the bound port. Raises ConfigError when the
    address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=_BACKLOG)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = " Is another sandbox running? Choose another --port." if port else ""
        raise ConfigError(f"cannot listen on {base_url(host, port)}: {reason}.{hint}") from exc
    try:
        served = _ServedHosts(app, host, allowed_hosts)
        server: BaseWSGIServer = _Server(
            host, port, served, _QuietHandler if quiet else _Handler, fd=listener.fileno(), tls=tls
        )
    finally:
        # werkzeug duplicated the descriptor; ours is no longer needed.
        listener.close()
    return server


def serve(
    app: SandboxApp,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Callable[[str], None] | None = None,
    allowed_hosts: Iterable[str] = (),
    tls: ssl.SSLContext | None = None,
    quiet: bool = False,
) -> None:
    """Serve until Ctrl-C (or SIGTERM), then return normally. `on_ready(url)` runs once the port
    is bound; each request is logged on stderr unless `quiet`. Call it from the main thread: it
    installs its own signal handlers meanwhile."""
    server = bind(app, host, port, quiet=quiet, allowed_hosts=allowed_hosts, tls=tls)
    with _stop_on_signals():
        try:
            if on_ready is not None:
                on_ready(base_url(host, server.port, tls=tls is not None))
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    # A process started in the background by a non-interactive shell inherits SIGINT ignored,
    # and Python then never raises KeyboardInterrupt: install the handler explicitly.
    handlers = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _interrupt}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def running(
    app: SandboxApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    allowed_hosts: Iterable[str] = (),
    tls: ssl.SSLContext | None = None,
) -> Iterator[str]:
    """Serve in a background thread; yields the base URL, e.g. "http://127.0.0.1:54321"
    ("https://..." with `tls`)."""
    server = bind(app, host, port, allowed_hosts=allowed_hosts, tls=tls)
    # A short poll interval keeps shutdown (and so every test using this) fast.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox", daemon=True
    )
    thread.start()
    try:
        yield base_url(host, server.port, tls=tls is not None)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
