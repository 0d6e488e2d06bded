"""What validate says about a URL in an environment file, offline (no DNS, no request).

url_problem(url)              its shape: absolute, http(s), no credentials, https off loopback
spelling_problem(url)         a connection URL's path spelled plainly (one spelling a tenant)
unreachable_by_newstore(url)  a url NewStore must call that only this machine can reach
"""

from __future__ import annotations

import difflib
import ipaddress
from urllib.parse import urlsplit

from reconciler.net import is_loopback


def url_problem(url: str, *, allow_query: bool) -> str | None:
    """Why `url` is unacceptable, or None. Never quotes the URL (it could hold a password)."""
    if not url or any(c.isspace() for c in url):
        return "must be an absolute URL without spaces"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError:
        return "is not a valid URL (check the host and port)"
    if parts.scheme not in ("http", "https") and url.startswith(f"{parts.scheme}://"):
        # The scheme alone is safe to quote (what follows `://` could hold a password).
        match = difflib.get_close_matches(parts.scheme.lower(), ["https", "http"], n=1)
        hint = f"; did you mean `{match[0]}`?" if match else " (use https)"
        return f"unknown scheme `{parts.scheme}`{hint}"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an absolute URL such as `https://host/path`"
    if "@" in parts.netloc:
        return "must not embed credentials (user:password@); secrets only come from ${...}"
    if not allow_query and parts.query:
        return "must not have a query string (?...)"
    if not allow_query and parts.fragment:
        return "must not have a fragment (#...)"
    if parts.scheme == "http" and not is_loopback(host):
        return "must use https (plain http is only allowed for 127.0.0.0/8, ::1 and localhost)"
    return None


def spelling_problem(url: str) -> str | None:
    """Why a connection URL's path is not spelled plainly: a `.` or `..` segment (removed
    before the request is sent) or a %-escape (decoded by the server) reaches the same tenant
    as the plain spelling, while the tenant identity, the apply lock and the two-files check
    key on the path as written."""
    segments = urlsplit(url).path.split("/")
    if any(segment in (".", "..") for segment in segments):
        return (
            "must not contain `.` or `..` path segments: they are removed before the request "
            "is sent, so the URL names another tenant than it reads; write the path plainly"
        )
    if "%" in urlsplit(url).path:
        return (
            "must not contain %-escapes in its path: the server decodes them, so one tenant "
            "would have two spellings; write the path plainly"
        )
    return None


def unreachable_by_newstore(url: str) -> str | None:
    """Why NewStore, calling from its own network, can never reach `url`: a loopback name or
    a private, link-local or otherwise non-public address literal. (A host name that resolves
    to one is not looked up here: validate stays offline.)"""
    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if is_loopback(host) or (address is not None and not address.is_global):
        return (
            "points at an address NewStore cannot reach (loopback or private): NewStore calls "
            "this url from its own network, so every call would fail even if something "
            "answers here; use the webhook's public https url (a loopback url is for a "
            "sandbox tenant only)"
        )
    return None
