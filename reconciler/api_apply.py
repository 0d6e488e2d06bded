"""`apply`, the Python API's writing call (`reconciler.api.apply`): the locks, the plan (made
now, or a reviewed plan file checked against the live state), the refusals, the journal and
the run, and what it did (`ApplyResult`)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as replace_options
from datetime import date
from pathlib import Path
from typing import TypeAlias

from reconciler.api_common import (
    DEFAULT_ENVIRONMENTS,
    PathLike,
    approve_all,
    check_replace,
    forget_hosts,
    ignore,
)
from reconciler.api_lock import applied_tenants, lock_backend
from reconciler.clock import Clock, system_clock
from reconciler.config import discover, load_each, load_environments
from reconciler.core.apply import (
    ApplyOptions,
    EnvResult,
    Event,
    PlanAccepted,
    RunReport,
    apply_run,
    check_plan_file,
    plan_file_environments,
    refuse_held,
    refuse_unready,
)
from reconciler.core.interrupt import StopRequest, deferred_stops
from reconciler.core.journal import Journal, default_path
from reconciler.core.lock import (
    Held,
    Holder,
    LockEvent,
    LockRequest,
    LockWaiting,
    TenantLock,
    hold_locks,
)
from reconciler.core.plan import ClientFactory, RunPlan, Status, plan_environments
from reconciler.core.planfile import load_plan_file, plan_to_dict, run_plan_from_dict
from reconciler.errors import (
    ApplyError,
    ConfigError,
    JournalError,
    LockError,
    PlanFileError,
    ReportedError,
)
from reconciler.fsutil import check_output_file
from reconciler.model import Environment
from reconciler.parallelism import DEFAULT_PARALLELISM
from reconciler.provenance import Provenance, of_run

OnWait: TypeAlias = Callable[[str, Holder, float], None]
"""Called once per lock held by another apply while this one waits for it: (tenant, holder,
timeout in seconds)."""


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` did. `journal` is None, and `results` empty, when there was nothing to
    write (every environment already converged)."""

    run: RunPlan  # the plan that was applied (re-made from the live state for a plan file)
    results: tuple[EnvResult, ...]
    journal: Path | None
    locks: tuple[TenantLock, ...]
    provenance: Provenance | None = None
    plan_checksum: str = ""

    @property
    def applied(self) -> list[EnvResult]:
        return [r for r in self.results if r.status == "applied"]

    @property
    def steps(self) -> int:
        """Steps written, over every applied environment."""
        return sum(r.steps for r in self.applied)


RunEvent: TypeAlias = Event | PlanAccepted | LockEvent
"""Everything `apply` tells `on_event`, as it happens: the locks, the plan accepted, each
gate, step and convergence."""


def apply(
    environments_dir: PathLike = DEFAULT_ENVIRONMENTS,
    names: Sequence[str] = (),
    *,
    plan_file: PathLike | None = None,
    confirm: Callable[[RunPlan], bool] = approve_all,
    journal: PathLike | None = None,
    keep_going: bool = False,
    skip_probe: bool = False,
    break_glass: str | None = None,
    replace: Collection[str] = (),
    parallelism: int = DEFAULT_PARALLELISM,
    lock: bool | str = True,
    lock_timeout: float = 0.0,
    lock_remote: str | None = None,
    lock_ttl: float | None = None,
    allow_older_commit: bool = False,
    clock: Clock = system_clock,
    today: date | None = None,
    environ: Mapping[str, str] | None = None,
    client_factory: ClientFactory | None = None,
    stop: StopRequest | None = None,
    on_event: Callable[[RunEvent], None] = ignore,
    on_plan: Callable[[RunPlan], None] = ignore,
    on_locks: Callable[[Sequence[TenantLock]], None] = ignore,
    on_lock_wait: OnWait = ignore,
    on_start: Callable[[Path], None] = ignore,
    provenance: Provenance | None = None,
) -> ApplyResult:
    """Make the live state match the files (`reconciler apply`), one checked step at a time.

    In order: the environments are loaded and their tenants' apply locks taken (`lock`: True
    as the files' `apply_lock` say, else local; "local" or "git" to choose; False for none;
    waiting up to `lock_timeout` s, calling `on_lock_wait`; `on_locks` hears what was held;
    the git lock lives in `lock_remote` (default the files' or origin), may be broken by
    others after `lock_ttl` s, and refuses a config commit older than the one applied last
    unless `allow_older_commit`); the run is planned, or `plan_file` (from `plan --out`) is
    checked against the live state and applied exactly as written; `on_plan(run)` sees the
    plan before any check can refuse it. A run with an unplannable or blocked environment, or
    one held by its change policy, is refused (`keep_going` skips those; `break_glass`, a
    reason, overrides the policy only). With something to write, `confirm(run)` is asked
    (False: ApplyError, nothing written), the journal is opened (`journal`, default
    `.reconciler/journal/apply-<time>-<pid>.jsonl`) and `on_start(path)` told, and the steps
    run, each reported to `on_event`. `stop` (a `StopRequest`) is checked before every write;
    by default SIGINT/SIGTERM are deferred to it while the run writes. With the git lock, the
    tenants whose environments all ended applied or converged get the run's commit recorded.
    `provenance` (default: read now) is what the journal, the lock and the result record.

    Raises ConfigError, PlanFileError, ApplyError (and ChangedUnderneath, Interrupted,
    LockError) or BlockedError, each with the safe-state report when apply stopped part-way.
    """
    if break_glass is not None:
        break_glass = " ".join(break_glass.split())
        if not break_glass:
            raise ConfigError(
                '--break-glass needs a reason, e.g. --break-glass "external OMS down, INC-1234"'
            )
    check_replace(replace)
    if replace and plan_file is not None:
        raise ConfigError(
            "--replace applies to planning: give it to `plan --out`, whose file records it; "
            "`apply --plan` applies that file as written."
        )
    journal_path = Path(journal) if journal is not None else default_path()
    check_output_file(journal_path, "apply journal", makes_directories=True)
    forget_hosts()
    directory = Path(environments_dir)
    origin = provenance or of_run(directory, environ)
    options = ApplyOptions(
        keep_going=keep_going,
        skip_probe=skip_probe,
        break_glass=break_glass,
        clock=clock,
        stop=stop,
        on_event=on_event,
        client_factory=client_factory,
    )

    def told(event: LockEvent) -> None:
        if isinstance(event, LockWaiting):
            on_lock_wait(event.tenant, event.holder, event.timeout)
        on_event(event)

    with contextlib.ExitStack() as stack:

        def take_locks(environments: list[Environment], checksum: str | None) -> Held:
            backend, choice = lock_backend(environments, lock, lock_remote, lock_ttl)
            request = LockRequest(
                timeout=lock_timeout,
                environments_dir=directory,
                remote=choice.remote,
                ttl_seconds=choice.ttl_seconds,
                allow_older_commit=allow_older_commit,
                config_commit=origin.config_commit,
                plan_checksum=checksum,
                actor=origin.actor,
                run_url=origin.run_url,
            )
            taken = stack.enter_context(hold_locks(environments, backend, request, told))
            on_locks(taken.locks)
            return taken

        if plan_file is not None:
            document = load_plan_file(plan_file)
            checksum = str(document["checksum"])
            planned = run_plan_from_dict(document)
            selected = plan_file_environments(planned, names)
            # Said here, naming the plan file: the names come from it, not from the caller.
            known = {path.stem for path in discover(directory)} if selected else set()
            unknown = [name for name in selected if name not in known]
            if unknown:
                listed = ", ".join(f"`{name}`" for name in unknown)
                raise PlanFileError(
                    f"{plan_file} plans unknown environment {listed}: {directory} has no "
                    "file for it, so the plan was made from other environment files. Run "
                    "`reconciler plan --out` here and review that."
                )
            environments = (
                load_environments(directory, selected, environ=environ, today=today)
                if selected
                else []
            )
            # Locked before the plan file is checked against the live state, so that what is
            # checked is what is written to.
            held = take_locks(environments, checksum)
            run = check_plan_file(
                planned,
                str(plan_file),
                environments,
                client_factory=client_factory,
                parallelism=parallelism,
                now=clock(),
            )
        else:
            # A broken file makes its environment an error: apply refuses before any write
            # unless keep_going, which skips it.
            loaded = load_each(directory, names, environ=environ, today=today)
            environments = [env for env in loaded if isinstance(env, Environment)]
            held = take_locks(environments, None)
            now = clock()
            run = plan_environments(
                loaded,
                parallelism=parallelism,
                client_factory=client_factory,
                now=now,
                replace=replace,
                today=today,
            )
            # The plan file this plan would be, as `plan --out` would write it now (made now,
            # from this commit, by this actor: what `plan` records).
            run = dataclasses.replace(
                run,
                created_at=now,
                config_commit=origin.config_commit,
                created_by=origin.actor,
                run_url=origin.run_url,
            )
            checksum = str(plan_to_dict(run)["checksum"])
        on_plan(run)
        refuse_unready(run, keep_going=keep_going)
        refuse_held(run, keep_going=keep_going, break_glass=break_glass)
        locks = tuple(held.locks)
        on_event(PlanAccepted(run, checksum))
        recorded = {**origin.to_json(), "plan_checksum": checksum}
        result = ApplyResult(run, (), None, locks, origin, checksum)
        if not any(env.status is Status.CHANGES for env in run.environments):
            held.record_applied(applied_tenants(environments, [p.name for p in run.environments]))
        else:
            if not confirm(run):
                raise ApplyError("apply cancelled: nothing was written.")
            with Journal(journal_path) as opened, deferred_stops(stop) as stopping:
                on_start(opened.path)
                try:
                    results = apply_run(
                        environments,
                        run,
                        opened,
                        replace_options(options, stop=stopping),
                        locks=locks,
                        provenance=recorded,
                    )
                except ReportedError as exc:
                    fates = exc.stop.others if isinstance(exc.stop, RunReport) else ()
                    done = [f.name for f in fates if f.status in ("applied", "converged")]
                    held.record_applied(applied_tenants(environments, done))
                    raise _with_journal_failure(exc, opened) from None
                held.record_applied(applied_tenants(environments, [r.name for r in results]))
            if opened.failure is not None:
                # Every write landed and converged; the record of it did not: an error to fix.
                raise JournalError(
                    f"every environment was applied and converged, but {opened.failure}: the "
                    "journal lacks what came after (free the disk; `reconciler plan` shows the "
                    "live state)."
                )
            result = ApplyResult(run, tuple(results), opened.path, locks, origin, checksum)
    if held.release_problem:
        raise LockError(f"apply finished, but {held.release_problem}.")
    return result


def _with_journal_failure(exc: ReportedError, journal: Journal) -> ReportedError:
    """`exc` (the apply's own outcome, whose exit code stands), saying that the journal failed
    too unless it already does."""
    if journal.failure is None or journal.failure in exc.message:
        return exc
    return dataclasses.replace(
        exc,
        message=f"{exc.message}\nAlso, {journal.failure}: the journal lacks what came after "
        "(the report below is complete).",
    )
