"""Per-host rate limiting shared by every client of a run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import ClassVar


class HostLimiter:
    """Shared by every client talking to one API host (thread-safe).

    A 429 with Retry-After pauses *all* requests to the host until then, so a burst of 429s
    slows the whole run down instead of failing every environment one after another. An
    optional `max_concurrency` caps requests in flight to the host.

    It is also the run-wide circuit breaker of the host: once NewStore answers an IP block
    (403, non-JSON body) the limiter is tripped, and no client sends another request to the
    host for the rest of the run (requests already in flight finish): each would extend the
    block.
    """

    _registry: ClassVar[dict[str, HostLimiter]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, max_concurrency: int | None = None) -> None:
        self._lock = threading.Lock()
        self._paused_until = 0.0  # time.monotonic() value
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self._blocked_at: datetime | None = None

    @classmethod
    def for_host(cls, host: str) -> HostLimiter:
        """The process-wide limiter for `host` (an authority such as "acme.p.newstore.net")."""
        with cls._registry_lock:
            limiter = cls._registry.get(host)
            if limiter is None:
                limiter = cls._registry[host] = cls()
            return limiter

    @classmethod
    def forget_all(cls) -> None:
        """Drop every host's limiter: a new run starts with closed breakers and no pauses (the
        CLI calls it per command; tests run many commands in one process)."""
        with cls._registry_lock:
            cls._registry.clear()

    def trip(self) -> None:
        """NewStore blocked this IP: stop every further request to the host."""
        with self._lock:
            if self._blocked_at is None:
                self._blocked_at = datetime.now(UTC)

    @property
    def blocked_at(self) -> datetime | None:
        """When the breaker tripped (UTC), or None."""
        with self._lock:
            return self._blocked_at

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
