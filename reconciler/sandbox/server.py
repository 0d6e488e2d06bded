"""Serving the sandbox over HTTP with werkzeug's threaded server.

Threaded, so a hundred slow clients are served at once (latency is a sleep in the handler
thread). We bind the listening socket ourselves and hand werkzeug its descriptor: werkzeug
would print to stderr and `sys.exit(1)` on a busy port, and we want a one-line `ConfigError`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from reconciler.errors import ConfigError

if TYPE_CHECKING:
    from types import FrameType

    from reconciler.sandbox.app import SandboxApp

_BACKLOG = 256


class _QuietHandler(WSGIRequestHandler):
    """No access log: tests run many servers, and pytest would collect every line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(
    app: SandboxApp, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True
) -> BaseWSGIServer:
    """A threaded werkzeug server listening on host:port (0 = a free port), not yet serving.

    Its `.port` is the bound port. Raises ConfigError when the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=_BACKLOG)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = " Is another sandbox running? Choose another --port." if port else ""
        raise ConfigError(f"cannot listen on {base_url(host, port)}: {reason}.{hint}") from exc
    try:
        server: BaseWSGIServer = make_server(
            host,
            port,
            app,
            threaded=True,
            request_handler=_QuietHandler if quiet else WSGIRequestHandler,
            fd=listener.fileno(),
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
) -> None:
    """Serve until Ctrl-C (or SIGTERM), then return normally. `on_ready(url)` runs once the port
    is bound. Call it from the main thread: it installs its own signal handlers meanwhile."""
    server = bind(app, host, port, quiet=False)
    with _stop_on_signals():
        try:
            if on_ready is not None:
                on_ready(base_url(host, server.port))
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
def running(app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve in a background thread; yields the base URL, e.g. "http://127.0.0.1:54321"."""
    server = bind(app, host, port)
    # A short poll interval keeps shutdown (and so every test using this) fast.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox", daemon=True
    )
    thread.start()
    try:
        yield base_url(host, server.port)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
