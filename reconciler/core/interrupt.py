"""Stopping on SIGINT (Ctrl-C) and SIGTERM (how CI systems cancel a job).

    install()          the CLI's handlers, in the real process only
    deferred_stops()   while apply writes: a first signal only asks it to stop (`StopRequest`),
                       which it does before its next write, with the usual stop report
    EXIT_CODES         130 / 143: 128 + the signal number, as shells report them

Outside `deferred_stops` a signal interrupts at once: SIGINT raises KeyboardInterrupt and
SIGTERM raises `Terminated` in the main thread, which the CLI turns into one line and its exit
code. A second signal while apply is stopping exits at once (the kernel drops the apply locks;
the journal has every record written so far).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

from reconciler.errors import ExitCode

EXIT_CODES: Final[dict[int, int]] = {
    signal.SIGINT: ExitCode.INTERRUPTED,
    signal.SIGTERM: ExitCode.TERMINATED,
}
NAMES: Final[dict[int, str]] = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Terminated(BaseException):
    """SIGTERM arrived outside apply's writes: raised like KeyboardInterrupt, and like it not an
    `Exception`, so that no `except Exception` swallows it."""


class StopRequest:
    """Whether a signal asked the run to stop, and which (thread-safe to read)."""

    def __init__(self) -> None:
        self._signum: int | None = None
        self._lock = threading.Lock()

    def request(self, signum: int) -> bool:
        """Ask to stop; False when a stop was already asked for."""
        with self._lock:
            if self._signum is not None:
                return False
            self._signum = signum
            return True

    @property
    def signal_name(self) -> str | None:
        """ "SIGINT" / "SIGTERM" once a stop was asked for, else None."""
        with self._lock:
            return None if self._signum is None else NAMES.get(self._signum, str(self._signum))


_deferring: StopRequest | None = None


@contextmanager
def deferred_stops(stop: StopRequest | None = None) -> Iterator[StopRequest]:
    """Inside, a first SIGINT/SIGTERM only sets the returned request."""
    global _deferring
    request = stop or StopRequest()
    previous, _deferring = _deferring, request
    try:
        yield request
    finally:
        _deferring = previous


def _handle(signum: int, frame: FrameType | None) -> None:
    stop = _deferring
    if stop is not None:
        if stop.request(signum):
            os.write(
                2,
                f"\n{NAMES.get(signum, signum)} received: stopping before the next write "
                "(again to exit at once)…\n".encode(),
            )
            return
        os.write(2, b"Error: interrupted again: exited at once, the step in flight unknown.\n")
        os._exit(EXIT_CODES.get(signum, ExitCode.INTERRUPTED))
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated


def install() -> None:
    """Route SIGINT and SIGTERM through `_handle` (main thread only, as Python requires)."""
    for signum in EXIT_CODES:
        signal.signal(signum, _handle)
