"""How many environments one run reads at the same time (`--parallelism` of plan and drift).

A module of its own so that the CLI can show the default without importing the planner.

16, because:
- an environment costs two round trips (the token, then its four GETs side by side; see
  `reconciler.core.plan.read_live`), so at ~100 ms per request 16 environments at a
  time read 200 environments in about 2.5 s;
- past that a run is more and more CPU-bound on a small CI runner: `make bench` (200
  environments, 50 ms latency, 2 cores) takes 1.84 s at 16 (1.47x its ideal) and 1.48 s at 32
  (2.4x its ideal): doubling it saves a fifth of the time, not half;
- it keeps at most 64 requests in flight to one host, so a burst of 429s hits few requests
  before the shared `HostLimiter` pauses everyone; and 200 environments are ~1,000 requests,
  far below NewStore's 30,000 per 5 minutes per source IP even when runs follow each other.
"""

from __future__ import annotations

from typing import Final

DEFAULT_PARALLELISM: Final = 16
