"""Per-host rate limiting shared by every client of a run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar


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
