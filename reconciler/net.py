"""Which hosts count as this machine: the only ones plain http is acceptable for (the sandbox).

Apart from the client so that `validate`, which checks URLs offline, never imports httpx."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) and localhost (also as `localhost.`, the name with
    the DNS root's dot)."""
    host = host.strip("[]").lower().removesuffix(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
