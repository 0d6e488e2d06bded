"""What the Python API's calls share: the default directory, the callback that ignores what
it is told, checking `--replace`, and starting each run with fresh host limiters."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from reconciler.errors import ConfigError
from reconciler.newstore.settings import BY_KEY

PathLike = str | os.PathLike[str]
DEFAULT_ENVIRONMENTS = Path("environments")


def ignore(*_: object) -> None:
    """The default callback: told, it does nothing."""


def forget_hosts() -> None:
    """One call is one run: hosts blocked or paused by an earlier run in this process start
    afresh (a scheduler calls the API many times in one process)."""
    from reconciler.newstore.limiter import HostLimiter  # lazy: start-up time (httpx)

    HostLimiter.forget_all()


def check_replace(replace: Collection[str]) -> None:
    """Raise ConfigError naming the first of `replace` that is no setting."""
    unknown = [key for key in replace if key not in BY_KEY]
    if unknown:
        raise ConfigError(f"--replace {unknown[0]}: no such setting; one of {', '.join(BY_KEY)}.")
