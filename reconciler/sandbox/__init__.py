"""The sandbox: a local NewStore that speaks the published API, with faults on demand.

`SandboxApp` is a WSGI app (and an in-process httpx transport via `.transport()`); `serve` and
`running` put it on a socket. See `reconciler.sandbox.app` for the endpoints and
`reconciler.sandbox.faults` for the fault rules.
"""

from __future__ import annotations

from reconciler.sandbox.app import SandboxApp, SandboxConfig
from reconciler.sandbox.server import running, serve

__all__ = ["SandboxApp", "SandboxConfig", "running", "serve"]
