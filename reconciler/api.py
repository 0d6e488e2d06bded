"""The Python API: what the CLI does, for platform teams that embed the tool (a scheduler, an
internal portal): `load`, `plan`, `apply`, `drift`, as functions here and as the methods of
`Reconciler`; the package exports all of them (`reconciler.plan(...)`,
`from reconciler import Reconciler`).

Every function returns a value (environments, a `RunPlan`, an `ApplyResult`, a
`DriftReport`) and raises the exception tree of `reconciler.errors` (each exception carries
its exit code); none prints. The CLI is a thin layer over exactly these functions: it parses
flags, calls one, renders what comes back (`reconciler.render`) and maps exceptions to exit
codes.

What a command line would take from the process is a parameter here, so that a caller (or a
test) can inject it: `clock` ("now" for the change policy), `today` (the stock confirmation's
date), `environ` (the `${...}` variables), `client_factory` (how an environment's NewStore
client is built, e.g. over an in-process transport), `on_event` and the other callbacks,
the journal path and the locks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.api_common import (
    DEFAULT_ENVIRONMENTS,
    PathLike,
    approve_all,
    check_replace,
    forget_hosts,
    ignore,
)
from reconciler.clock import Clock, system_clock
from reconciler.config import load_each, load_environments
from reconciler.core.interrupt import StopRequest
from reconciler.core.plan import ClientFactory, EnvPlan, RunPlan, plan_environments
from reconciler.model import Environment
from reconciler.parallelism import DEFAULT_PARALLELISM
from reconciler.provenance import config_commit, of_run, run_url

if TYPE_CHECKING:
    from reconciler.api_apply import ApplyResult, RunEvent, apply
    from reconciler.core.drift import DriftReport

__all__ = ["ApplyResult", "Reconciler", "apply", "check_replace", "drift", "load", "plan"]

_APPLY_NAMES = frozenset({"ApplyResult", "RunEvent", "apply"})


def __getattr__(name: str) -> Any:
    """`apply` and what it returns, loaded on first use: the writing path (locks, journal,
    webhook probes, git) is most of the core, and `plan` and `drift` never need it."""
    if name in _APPLY_NAMES:
        from reconciler import api_apply  # lazy: start-up time (see the docstring)

        return getattr(api_apply, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_APPLY_NAMES})


def load(
    environments_dir: PathLike = DEFAULT_ENVIRONMENTS,
    names: Sequence[str] = (),
    *,
    allow_missing_secrets: bool = False,
    environ: Mapping[str, str] | None = None,
    today: date | None = None,
) -> list[Environment]:
    """Load and validate environment files offline (what `reconciler validate` checks): all of
    `environments_dir`, or exactly `names`. Raises ValidationFailed listing every problem."""
    return load_environments(
        Path(environments_dir),
        names,
        environ=environ,
        allow_missing_secrets=allow_missing_secrets,
        today=today,
    )


def plan(
    environments_dir: PathLike = DEFAULT_ENVIRONMENTS,
    names: Sequence[str] = (),
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    probe: bool = False,
    replace: Collection[str] = (),
    clock: Clock = system_clock,
    today: date | None = None,
    environ: Mapping[str, str] | None = None,
    client_factory: ClientFactory | None = None,
    on_done: Callable[[EnvPlan], None] | None = None,
) -> RunPlan:
    """Read the live state and plan every environment (`reconciler plan`); never writes.

    An environment whose file cannot be loaded or whose live state cannot be read is a plan
    with status `error` (its `error` says why); the others are planned regardless. With
    `probe`, webhook probes run now and a failing one blocks its environment. `replace`:
    settings rewritten even where they compare equal. `on_done(plan)` is called (from worker
    threads) as each environment finishes. The plan records when it was made (`clock()`), the
    configuration's git commit, who made it and the CI run (`reconciler.provenance`)."""
    check_replace(replace)
    forget_hosts()
    environments = load_each(Path(environments_dir), names, environ=environ, today=today)
    now = clock()
    run = plan_environments(
        environments,
        parallelism=parallelism,
        client_factory=client_factory,
        probe=probe,
        on_done=on_done,
        now=now,
        replace=replace,
        today=today,
    )
    # Where the plan came from, for its file: it expires `plan_valid_hours` after `now`.
    origin = of_run(Path(environments_dir), environ)
    return dataclasses.replace(
        run,
        created_at=now,
        config_commit=origin.config_commit,
        created_by=origin.actor,
        run_url=origin.run_url,
    )


def drift(
    environments_dir: PathLike = DEFAULT_ENVIRONMENTS,
    names: Sequence[str] = (),
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    probe: bool = False,
    clock: Clock = system_clock,
    today: date | None = None,
    environ: Mapping[str, str] | None = None,
    client_factory: ClientFactory | None = None,
    on_done: Callable[[EnvPlan], None] | None = None,
) -> DriftReport:
    """Report where the live state differs from the files (`reconciler drift`); never writes.
    `report.worst` is the status to alert on; with `probe`, live webhooks are probed too. The
    report records when it ran (`clock`), the config commit of `environments_dir` and the CI
    run's URL (from `environ`)."""
    forget_hosts()
    now = clock().astimezone(UTC)
    environments = load_each(Path(environments_dir), names, environ=environ, today=today)
    from reconciler.core.drift import check_drift  # lazy: start-up time (of `plan`)

    return check_drift(
        environments,
        parallelism=parallelism,
        client_factory=client_factory,
        on_done=on_done,
        probe=probe,
        now=now,
        config_commit=config_commit(Path(environments_dir)),
        run_url=run_url(environ),
    )


@dataclass(frozen=True)
class Reconciler:
    """The API as one small object: a directory of environment files and what every call
    shares (`reconciler.Reconciler("environments").plan(["staging"])`). Each method is the
    function of the same name in this module, with these as its defaults."""

    environments_dir: PathLike = DEFAULT_ENVIRONMENTS
    clock: Clock = system_clock
    today: date | None = None
    environ: Mapping[str, str] | None = None
    client_factory: ClientFactory | None = None
    parallelism: int = DEFAULT_PARALLELISM

    def load(
        self, names: Sequence[str] = (), *, allow_missing_secrets: bool = False
    ) -> list[Environment]:
        return load(
            self.environments_dir,
            names,
            allow_missing_secrets=allow_missing_secrets,
            environ=self.environ,
            today=self.today,
        )

    def plan(
        self,
        names: Sequence[str] = (),
        *,
        probe: bool = False,
        replace: Collection[str] = (),
        on_done: Callable[[EnvPlan], None] | None = None,
    ) -> RunPlan:
        return plan(
            self.environments_dir,
            names,
            parallelism=self.parallelism,
            probe=probe,
            replace=replace,
            clock=self.clock,
            today=self.today,
            environ=self.environ,
            client_factory=self.client_factory,
            on_done=on_done,
        )

    def drift(
        self,
        names: Sequence[str] = (),
        *,
        probe: bool = False,
        on_done: Callable[[EnvPlan], None] | None = None,
    ) -> DriftReport:
        return drift(
            self.environments_dir,
            names,
            parallelism=self.parallelism,
            probe=probe,
            clock=self.clock,
            today=self.today,
            environ=self.environ,
            client_factory=self.client_factory,
            on_done=on_done,
        )

    def apply(
        self,
        names: Sequence[str] = (),
        *,
        plan_file: PathLike | None = None,
        confirm: Callable[[RunPlan], bool] = approve_all,
        journal: PathLike | None = None,
        keep_going: bool = False,
        skip_probe: bool = False,
        break_glass: str | None = None,
        replace: Collection[str] = (),
        lock: bool | str = True,
        lock_timeout: float = 0.0,
        lock_remote: str | None = None,
        lock_ttl: float | None = None,
        allow_older_commit: bool = False,
        stop: StopRequest | None = None,
        on_event: Callable[[RunEvent], None] = ignore,
        on_plan: Callable[[RunPlan], None] = ignore,
    ) -> ApplyResult:
        from reconciler.api_apply import apply  # lazy: start-up time (see __getattr__)

        return apply(
            self.environments_dir,
            names,
            plan_file=plan_file,
            confirm=confirm,
            journal=journal,
            keep_going=keep_going,
            skip_probe=skip_probe,
            break_glass=break_glass,
            replace=replace,
            parallelism=self.parallelism,
            lock=lock,
            lock_timeout=lock_timeout,
            lock_remote=lock_remote,
            lock_ttl=lock_ttl,
            allow_older_commit=allow_older_commit,
            clock=self.clock,
            today=self.today,
            environ=self.environ,
            client_factory=self.client_factory,
            stop=stop,
            on_event=on_event,
            on_plan=on_plan,
        )
