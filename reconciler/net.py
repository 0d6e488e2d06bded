"""Which hosts count as this machine: the only ones plain http is acceptable for (the sandbox).

Apart from the client so that `validate`, which checks URLs offline, never imports httpx."""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) and localhost (also as `localhost.`, the name with
    the DNS root's dot). Cached: a run asks about each environment's hosts about ten times
    (validation, identity, the client, the sandbox's Host check), and a name that is not an
    address costs a raised ValueError each time."""
    host = host.strip("[]").lower().removesuffix(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
