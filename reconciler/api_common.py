"""What the Python API's calls share: the default directory, the callbacks that ignore what
they are told and approve every plan, checking `--replace`, and starting each run with fresh
host limiters."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import ConfigError
from reconciler.newstore.settings import BY_KEY

if TYPE_CHECKING:
    from reconciler.core.plan import RunPlan

PathLike = str | os.PathLike[str]
DEFAULT_ENVIRONMENTS = Path("environments")


def ignore(*_: object) -> None:
    """The default callback: told, it does nothing."""


def approve_all(run: RunPlan) -> bool:
    """The default `confirm`: the caller already decided (as `apply --auto-approve`)."""
    return True


def forget_hosts() -> None:
    """One call is one run: hosts blocked or paused by an earlier run in this process start
    afresh (a scheduler calls the API many times in one process), and the connections an
    earlier run left open to a shared host (the token endpoint) are closed."""
    from reconciler.newstore.http import close_shared  # lazy: start-up time (httpx)
    from reconciler.newstore.limiter import HostLimiter  # lazy: start-up time (httpx)

    HostLimiter.forget_all()
    close_shared()


def check_replace(replace: Collection[str]) -> None:
    """Raise ConfigError naming the first of `replace` that is no setting."""
    unknown = [key for key in replace if key not in BY_KEY]
    if unknown:
        raise ConfigError(f"--replace {unknown[0]}: no such setting; one of {', '.join(BY_KEY)}.")
