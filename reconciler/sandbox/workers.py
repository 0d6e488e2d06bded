"""Handler threads that serve one connection after another, for the sandbox's threaded server.

socketserver's ThreadingMixIn starts a thread per connection, and the accepting thread waits
until it runs: a run of 1,000 environments opens 5,000 connections, and starting their threads
was about a tenth of the sandbox's CPU. Here a connection goes to a handler thread that has
finished its previous one, when there is one; a new thread otherwise, so as many connections are
served at once as before. A thread idle for `idle_seconds` ends, and closing the server ends the
idle ones at once.
"""

from __future__ import annotations

import queue
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any

_Connection = tuple[socket.socket, Any]  # the accepted socket and the client's address


class ReusedThreads(ThreadingMixIn):
    """ThreadingMixIn whose threads are kept for the next connection."""

    idle_seconds = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before the server's constructor, which may already call server_close.
        self._handoff: queue.SimpleQueue[_Connection | None] = queue.SimpleQueue()
        # Threads waiting for a connection, less the connections handed to them and not yet
        # taken: a connection is handed over only while this is above zero.
        self._idle = 0
        self._idle_lock = threading.Lock()
        super().__init__(*args, **kwargs)
        # After it: werkzeug's constructor closes the socket it was given (a server_close).
        self._closed = False

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle_lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1
        if reuse:
            self._handoff.put((request, client_address))
        else:
            super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        connection: _Connection | None = (request, client_address)
        while connection is not None:
            super().process_request_thread(*connection)  # handles the errors, closes the socket
            with self._idle_lock:
                if self._closed:
                    return
                self._idle += 1
            connection = self._next()

    def _next(self) -> _Connection | None:
        """The next connection handed to this thread, or None: the server closed, or nothing
        came for `idle_seconds`."""
        while True:
            try:
                return self._handoff.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._idle_lock:
                    if self._idle > 0:  # no connection is on its way to this thread
                        self._idle -= 1
                        return None
                # One was handed over as the wait ended: take it.

    def server_close(self) -> None:
        super().server_close()
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._handoff.put(None)
