"""Which NewStore tenant a connection really talks to, whatever the file calls it.

A file's `tenant:` is a label; the requests go to `connection.base_url`. Everything that must
not be fooled by a label or a spelling (the apply lock, the shared git lock, the plan file's
fingerprint, "two files for one tenant") keys on the identity computed here from the URL:

    canonical_host("https://ACME.p.newstore.net.:443/")   -> "acme.p.newstore.net"
    canonical_host("http://localhost:8765/acme")          -> "loopback:8765"
    str(tenant_identity("https://acme.p.newstore.net"))   -> "acme.p.newstore.net"
    str(tenant_identity("http://127.0.0.1:8765/acme/"))   -> "loopback:8765/acme"

Host names are case-insensitive and may end in a dot (the DNS root); a default port (443 for
https, 80 for http) says nothing; every loopback name (localhost, 127.0.0.0/8, ::1) is this
machine. Paths are case-sensitive (the sandbox routes tenants by path) and lose their trailing
slash.

`tenant_in_base_url` / `tenant_in_token_url` read the tenant name out of URLs of NewStore's form
(`https://<tenant>.p.newstore.net`, realm `<tenant>` in the token URL) or the sandbox's (a
loopback host with the `/<tenant>` prefix), and say None for any other form (a proxy), where
only the file's `tenant:` names it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from reconciler.net import is_loopback

NEWSTORE_API_SUFFIX = ".p.newstore.net"
"""NewStore's API hosts are `<tenant>.p.newstore.net`."""

_DEFAULT_PORTS = {"https": 443, "http": 80}
_REALM_PATH = re.compile(r"^/auth/realms/([^/]+)/protocol/openid-connect/token/?$")
_TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_REF_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@functools.lru_cache(maxsize=4096)
def canonical_host(url: str) -> str:
    """`host[:port]` of a URL: lower case, no trailing dot, no default port, every loopback
    name spelled `loopback`; IPv6 literals in brackets. "" when the URL has no host. (Cached:
    a plan asks it of the same few URLs a dozen times per environment.)"""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        return ""
    if is_loopback(host):
        host = "loopback"
    elif ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: leave it to validation, key on the text
        port = None
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host += f":{port}"
    return host


def _path(url: str) -> str:
    return urlsplit(url.strip()).path.rstrip("/")


@dataclass(frozen=True, order=True)
class TenantIdentity:
    """One NewStore tenant API: its canonical host and the path under it."""

    host: str
    path: str = ""

    def __str__(self) -> str:
        return f"{self.host}{self.path}"

    @property
    def ref_name(self) -> str:
        """A name safe for a file name and a git ref component (no `:`, `/`, spaces), readable
        and collision-free: the identity's characters folded to `-`, plus a short hash of the
        exact identity."""
        text = str(self)
        readable = _REF_UNSAFE.sub("-", text).strip("-.") or "tenant"
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        return f"{readable}-{digest}"


def tenant_identity(base_url: str) -> TenantIdentity:
    """The identity of the tenant API `base_url` points at."""
    return TenantIdentity(canonical_host(base_url), _path(base_url))


def tenant_in_base_url(base_url: str) -> str | None:
    """The tenant a base URL of NewStore's form or the sandbox's names; None for any other."""
    host = canonical_host(base_url)
    path = _path(base_url)
    if host.endswith(NEWSTORE_API_SUFFIX) and not path:
        name = host[: -len(NEWSTORE_API_SUFFIX)]
        return name if _TENANT_NAME.match(name) else None
    if host.startswith("loopback"):
        segments = [s for s in path.split("/") if s]
        if len(segments) == 1 and _TENANT_NAME.match(segments[0]):
            return segments[0]
    return None


def tenant_in_token_url(token_url: str) -> str | None:
    """The realm of a Keycloak-form token URL (NewStore's and the sandbox's:
    `/auth/realms/<tenant>/protocol/openid-connect/token`); None for any other."""
    match = _REALM_PATH.match(urlsplit(token_url.strip()).path)
    if match is None or not _TENANT_NAME.match(match.group(1)):
        return None
    return match.group(1)
