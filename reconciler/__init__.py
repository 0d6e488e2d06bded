"""newstore-reconciler: a NewStore tenant's external-OMS integration, managed as code.

The Python API (see README, "Use from Python"): the functions `reconciler.load`, `.plan`,
`.apply`, `.drift`, and `reconciler.Reconciler(environments_dir)` with the same four as methods,
all documented in `reconciler.api`. It is loaded on first use, so that `import reconciler` (and
`reconciler --help`) stays fast. The core's modules live in `reconciler.core`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler._version import __version__

if TYPE_CHECKING:
    from reconciler.api import ApplyResult, Reconciler, apply, drift, load, plan

__all__ = ["ApplyResult", "Reconciler", "__version__", "apply", "drift", "load", "plan"]

_API = frozenset({"ApplyResult", "Reconciler", "apply", "drift", "load", "plan"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from reconciler import api  # lazy: start-up time (the API loads the whole core)

        return getattr(api, name)
    raise AttributeError(f"module 'reconciler' has no attribute {name!r}")
