"""newstore-reconciler: a NewStore tenant's external-OMS integration, managed as code.

The Python API (see README, "Use from Python"): `reconciler.Reconciler(environments_dir)` with
`.load()`, `.plan()`, `.apply()`, `.drift()`, documented in `reconciler.api` (which also has
them as functions: `reconciler.plan` and friends are the core's modules). It is loaded on first
use, so that `import reconciler` (and `reconciler --help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler._version import __version__

if TYPE_CHECKING:
    from reconciler.api import ApplyResult, Reconciler

__all__ = ["ApplyResult", "Reconciler", "__version__"]

_API = frozenset({"ApplyResult", "Reconciler"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from reconciler import api  # lazy: start-up time (the API loads the whole core)

        return getattr(api, name)
    raise AttributeError(f"module 'reconciler' has no attribute {name!r}")
