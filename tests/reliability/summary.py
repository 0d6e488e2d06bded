"""The reliability suites' counts: each suite adds what it observed, the session writes them out.

`count("chaos", "converged first time")` from any thread; at the end of the session the
conftest writes every count to `.reconciler/reliability/summary.json` (and prints it), so the
numbers quoted in RELIABILITY.md come from a real run rather than from the suites' parameters.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

_lock = threading.Lock()
COUNTS: dict[str, Counter[str]] = {}

SCALE = max(1, int(os.environ.get("RELIABILITY_SCALE", "1")))
"""Multiplies every suite's run count; CI uses 1, a long local soak e.g. RELIABILITY_SCALE=10."""


def count(suite: str, what: str, n: int = 1) -> None:
    with _lock:
        COUNTS.setdefault(suite, Counter())[what] += n


def counts(suite: str) -> Counter[str]:
    with _lock:
        return Counter(COUNTS.get(suite, Counter()))
