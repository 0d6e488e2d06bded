"""Planning against NewStore: the only part of the planner that talks HTTP.

`read_live` reads an environment's managed settings side by side, `default_client` builds the
client every command uses, `policy_now` asks the change policy, and `plan_environments` reads
and plans many environments in parallel, each failure an ERROR plan of its own.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import TYPE_CHECKING, Final

from reconciler.core.plan.build import (
    build_plan,
)
from reconciler.core.plan.probes import (
    check_health,
    with_probes,
)
from reconciler.core.plan.values import (
    ATP,
    WEBHOOK,
    ClientFactory,
    EnvPlan,
    RunPlan,
    Status,
)
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.model import (
    ABSENT,
    Environment,
    Unresolved,
    Value,
)
from reconciler.newstore.settings import BY_KEY, REGISTRY, Setting
from reconciler.parallelism import DEFAULT_PARALLELISM
from reconciler.policy import ALWAYS, Decision, decide
from reconciler.rules import read_for_rules

if TYPE_CHECKING:
    # lazy: start-up time (httpx)
    from reconciler.newstore.client import NewStoreClient

HEALTH_READS: Final = (ATP, WEBHOOK)
"""What `drift --probe` reads whatever the file manages: is external ATP on, and where does
NewStore send its availability calls."""


def settings_read(env: Environment, extra: Collection[str] = ()) -> list[str]:
    """The settings a plan of `env` reads, in registry order: the managed ones, those read for
    a rule (`rules.read_for_rules`: the other side of a rule the file manages one side of),
    and `extra` (e.g. what `drift --probe` needs to judge the live webhook)."""
    wanted = {*env.desired, *read_for_rules(env.desired), *extra}
    return [s.key for s in REGISTRY if s.key in wanted]


def read_live(
    env: Environment,
    client: NewStoreClient,
    *,
    reads: Executor | None = None,
    extra: Collection[str] = (),
) -> dict[str, Value]:
    """The live value of every setting the environment manages, of every setting read for a
    rule, and of `extra` (`settings_read`); nothing else is read. A setting the file does not
    manage is read as NewStore's whole setting (the Associate App: its global document).

    The GETs run side by side (`_side_by_side`), so an environment costs two round trips (the
    token, then its GETs) instead of six; over hundreds of environments that is most of a run.
    The first failure in registry order is raised. `reads` runs them (a run's executor shared
    by its environments); without it, threads of their own.
    """
    settings = [BY_KEY[key] for key in settings_read(env, extra)]

    def read(setting: Setting) -> Value:
        return setting.read_managed(client, env.desired.get(setting.key, ABSENT))

    if len(settings) < 2:
        return {s.key: read(s) for s in settings}
    if reads is None:
        with ThreadPoolExecutor(max_workers=len(settings) - 1) as pool:
            return _side_by_side(client, settings, read, pool)
    return _side_by_side(client, settings, read, reads)


def _side_by_side(
    client: NewStoreClient,
    settings: Sequence[Setting],
    read: Callable[[Setting], Value],
    pool: Executor,
) -> dict[str, Value]:
    """The first setting is read in this thread; the others go to `pool` as soon as the client
    holds a token (right after the first read fetched it, before its own GET goes out), so all
    the GETs go out together and none of them waits on another for the token: each reading
    thread wakes once, for its answer. (Started all at once, four of five threads slept on the
    token and woke for it: wake-ups were the largest part of a many-environment run's CPU.)

    A first read that fails before a token is in hand raises at once: the others would only
    have failed the same way. Otherwise every read ends before any failure is raised (the
    caller closes the client then, and a read under way would find it closed), the first in
    registry order."""
    first, rest = settings[0], settings[1:]
    futures: list[Future[Value]] = []
    guard = threading.Lock()
    started = False

    def start_the_rest() -> None:
        # Once, whoever comes first: the fetch (in this thread, or in another environment's
        # when a caller shares one client between environments), or this thread afterwards.
        nonlocal started
        with guard:
            if not started:
                started = True
                futures.extend(pool.submit(read, s) for s in rest)

    withdraw = client.when_token(start_the_rest)
    try:
        value = read(first)
    except BaseException:
        withdraw()
        with guard:
            started = True  # a callback running late starts nothing now
            pending = list(futures)
        wait(pending)
        raise
    withdraw()
    start_the_rest()  # no request of the first read needed a token: read the others now
    wait(futures)
    return {first.key: value, **{s.key: f.result() for s, f in zip(rest, futures, strict=True)}}


def policy_now(env: Environment, plan: EnvPlan, now: datetime) -> Decision | None:
    """What `env`'s policy says of applying `plan` at `now`; None when there is nothing to
    write or no policy to ask."""
    if not plan.steps or env.policy == ALWAYS:
        return None
    return decide(env.policy, now)


def default_client(env: Environment) -> AbstractContextManager[NewStoreClient]:
    """The client of `env` as every command builds it (imported here, not at the top, so that
    commands that never talk HTTP start without loading httpx)."""
    # lazy: start-up time (httpx)
    from reconciler.newstore.client import NewStoreClient
    from reconciler.newstore.settings import SECRET_KEYS

    # The client picks its host's shared limiter, so a 429 slows every environment on it.
    return NewStoreClient(env, secret_keys=SECRET_KEYS)


def plan_environments(
    envs: Sequence[Environment | Unresolved],
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    client_factory: ClientFactory | None = None,
    probe: bool = False,
    on_done: Callable[[EnvPlan], None] | None = None,
    now: datetime | None = None,
    replace: Collection[str] = (),
    health: bool = False,
    today: date | None = None,
) -> RunPlan:
    """Read and plan every environment, `parallelism` at a time, in the order given.

    An environment whose read fails, or whose file could not be resolved (`Unresolved`),
    becomes an ERROR plan carrying the one-paragraph message; the others are planned
    regardless. With `probe`, webhook-probe gates run now (they
    otherwise run at apply) and a failing probe blocks its environment. `on_done(plan)` is
    called from the worker threads as each environment finishes (for progress reports).
    With `now`, each plan with steps says whether its policy lets an apply write at `now`.
    `replace`: settings every environment rewrites even when equal (`--replace`). With
    `health` (`drift --probe`), each plan also says whether its live webhook is healthy.
    `today` (UTC) dates the stock confirmation; it defaults to the real today.
    """
    if parallelism < 1:
        raise ConfigError(f"--parallelism must be at least 1, got {parallelism}.")
    factory = client_factory or default_client

    def plan_one(env: Environment | Unresolved) -> EnvPlan:
        if isinstance(env, Unresolved):
            return EnvPlan(name=env.name, tenant=env.tenant, status=Status.ERROR, error=env.error)
        try:
            with factory(env) as client:
                # `drift --probe` judges the live webhook whenever live external ATP is on,
                # whether or not the file manages either.
                live = read_live(env, client, reads=reads, extra=HEALTH_READS if health else ())
            plan = build_plan(env, live, replace=replace, today=today)
        except ReconcilerError as exc:
            return EnvPlan(name=env.name, tenant=env.tenant, status=Status.ERROR, error=str(exc))
        if health:
            unhealthy, probed = check_health(env, live)
            plan = dataclasses.replace(plan, unhealthy=unhealthy, probe=probed)
        if probe:
            plan = with_probes(env, plan)
        if now is not None:
            plan = dataclasses.replace(plan, policy=policy_now(env, plan, now))
        return plan

    def plan_and_report(env: Environment | Unresolved) -> EnvPlan:
        plan = plan_one(env)
        if on_done is not None:
            on_done(plan)
        return plan

    if not envs:
        return RunPlan([])
    workers = min(parallelism, len(envs))
    # One executor for every environment's setting reads, sized so that no read ever waits
    # for a thread: starting four threads per environment was a tenth of a run's CPU.
    with (
        ThreadPoolExecutor(max_workers=workers * (len(REGISTRY) - 1)) as reads,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        return RunPlan(list(pool.map(plan_and_report, envs)))
