"""Apply a run: every environment of a RunPlan, one after another, after checking the whole run
may be applied (`refuse_unready`, `refuse_held`); a failure stops the run (unless
`keep_going`), and the error raised carries every environment's fate (`report.RunReport`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from reconciler.core.apply.environment import apply_environment
from reconciler.core.apply.events import StepFinished
from reconciler.core.apply.options import DEFAULT_OPTIONS, ApplyOptions
from reconciler.core.apply.report import EnvFate, NothingWritten, RunReport
from reconciler.core.plan import RunPlan, Status, default_client
from reconciler.errors import (
    ApplyError,
    BlockedError,
    Interrupted,
    IPBlockedError,
    ReconcilerError,
    ReportedError,
)
from reconciler.model import Environment
from reconciler.policy import Decision, decide, decision_dict, explain

if TYPE_CHECKING:
    from datetime import datetime

    from reconciler.core.journal import Journal
    from reconciler.core.lock import TenantLock
    from reconciler.newstore.client import NewStoreClient


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvResult:
    name: str
    # "applied" | "converged" | "blocked" | "error" (could not be planned; --keep-going
    # skipped it) | "failed" | "interrupted" (a signal stopped it between steps; nothing
    # failed) | "not attempted"
    status: str
    steps: int = 0
    error: ReportedError | None = None
    why: str = ""  # for "not attempted": why not
    finished: tuple[StepFinished, ...] = ()  # for "applied": what each step came to


def refuse_unready(run: RunPlan, *, keep_going: bool) -> None:
    """Raise before anything is written unless `run` may be applied: ApplyError when an
    environment could not be planned; BlockedError when one is blocked, unless `keep_going`
    (the blocked ones are then skipped) and another one has changes to apply."""
    errored = [p.name for p in run.environments if p.status is Status.ERROR]
    if errored and not (keep_going and any(p.status is Status.CHANGES for p in run.environments)):
        names = ", ".join(errored)
        them = "it" if len(errored) == 1 else "them"
        raise ApplyError(
            f"nothing applied: {names} could not be planned; fix that first, leave {them} out "
            "by naming the others (`reconciler apply ENV...`), or pass --keep-going to apply "
            f"the others and skip {them}."
        )
    blocked = [p.name for p in run.environments if p.status is Status.BLOCKED]
    if not blocked:
        return
    names = f"{', '.join(blocked)} {'is' if len(blocked) == 1 else 'are'} blocked"
    if not any(p.status is Status.CHANGES for p in run.environments):
        raise BlockedError(f"nothing applied: {names} (see the plan above for why).")
    if not keep_going:
        # A run is checked whole before its first write (an environment half-migrated
        # because its neighbour was blocked is the worse surprise).
        raise BlockedError(
            f"nothing applied: {names} (see the plan above for why), and apply writes "
            "nothing until every environment in the run can be applied. Fix the blocked "
            "ones, leave them out by naming the others (`reconciler apply ENV...`), or pass "
            "--keep-going to apply the others and skip them."
        )


def refuse_held(run: RunPlan, *, keep_going: bool, break_glass: str | None) -> None:
    """Like `refuse_unready`, for the change policy as the plan saw it (`EnvPlan.policy`), so
    that nobody is asked to confirm an apply that would be refused: raise BlockedError unless
    `break_glass`, or `keep_going` and another environment may be written. `apply_run` asks the
    policy again, with its clock, before the first write."""
    if break_glass is not None:
        return
    held = {
        p.name: p.policy
        for p in run.environments
        if p.status is Status.CHANGES and p.policy is not None and not p.policy.allowed
    }
    if not held:
        return
    free = [p for p in run.environments if p.status is Status.CHANGES and p.name not in held]
    if not (keep_going and free):
        raise BlockedError(_held_message("nothing applied", held))


def apply_run(
    envs: Sequence[Environment],
    run: RunPlan,
    journal: Journal,
    options: ApplyOptions = DEFAULT_OPTIONS,
    *,
    locks: Sequence[TenantLock] = (),
    provenance: Mapping[str, Any] | None = None,
) -> list[EnvResult]:
    """Apply every environment of `run` with changes, one after another, in order.

    Converged environments need nothing. Refuses before writing anything when an environment
    could not be planned, or is blocked (`refuse_unready`); with `options.keep_going`, blocked
    ones are skipped instead (BlockedError at the end), and one failing does not stop the rest
    (which are otherwise reported "not attempted"). `locks` (held by the caller,
    `lock.tenant_locks`) and `provenance` (where the run came from) are recorded in the
    journal's start line.

    Every environment with changes is checked against its policy at `options.clock()` before
    the first write of the run (`held_by_policy`), and again before each of its steps; a
    blocked one is refused like a gate-blocked one. `options.break_glass` (the reason)
    overrides the policy, never a gate or safety rule, and is recorded in the journal.
    """
    keep_going, skip_probe = options.keep_going, options.skip_probe
    break_glass, stop = options.break_glass, options.stop
    by_name = {env.name: env for env in envs}
    refuse_unready(run, keep_going=keep_going)
    factory = options.client_factory or default_client
    journal.record(
        "start",
        environments=[p.name for p in run.environments],
        skip_probe=skip_probe,
        keep_going=keep_going,
        locks=[lock.journal_fields() for lock in locks],
        **({"break_glass": break_glass} if break_glass is not None else {}),
        **({"provenance": dict(provenance)} if provenance is not None else {}),
    )
    held = held_by_policy(envs, run, options.clock(), journal, break_glass=break_glass)
    if held and not keep_going:
        journal.record("end", result="blocked", environments=dict.fromkeys(held, "blocked"))
        raise BlockedError(_held_message("nothing applied", held))
    results: list[EnvResult] = []
    # Why the rest of the run is not attempted: an earlier failure (unless keep_going), an IP
    # block (whatever keep_going says: every request would extend it), or a signal.
    halted = ""
    for plan in run.environments:
        if plan.status is Status.CONVERGED:
            results.append(EnvResult(plan.name, "converged"))
            continue
        if plan.status is Status.BLOCKED or plan.name in held:
            results.append(EnvResult(plan.name, "blocked"))
            continue
        if plan.status is Status.ERROR:
            results.append(EnvResult(plan.name, "error", why=plan.error))
            continue
        if not halted and stop is not None and stop.signal_name is not None:
            halted = f"{stop.signal_name} received before it started"
        if halted:
            results.append(EnvResult(plan.name, "not attempted", len(plan.steps), why=halted))
            continue
        env = by_name[plan.name]
        client: NewStoreClient | None = None
        try:
            with factory(env) as client:
                finished = apply_environment(env, plan, client, journal, options)
        except ReportedError as exc:
            stopped = "interrupted" if isinstance(exc, Interrupted) else "failed"
            results.append(EnvResult(plan.name, stopped, len(plan.steps), exc))
            halted = _halted_by(exc, client, keep_going)
        except ReconcilerError as exc:  # e.g. the client could not be built
            error = ApplyError(str(exc), RunReport((NothingWritten(plan.name),)))
            results.append(EnvResult(plan.name, "failed", len(plan.steps), error))
            halted = _halted_by(exc, client, keep_going)
        else:
            results.append(
                EnvResult(plan.name, "applied", len(plan.steps), finished=tuple(finished))
            )
    failed = [r for r in results if r.error is not None]
    blocked = [r.name for r in results if r.status == "blocked"]
    errored = [r.name for r in results if r.status == "error"]
    interrupted = stop.signal_name if stop is not None else None
    if interrupted is not None and not (
        any(r.status == "not attempted" for r in results)
        or any(isinstance(r.error, Interrupted) for r in failed)
    ):
        interrupted = None  # the signal came after the last write: nothing was cut short
    fates = {r.name: r.status for r in results}
    if interrupted is not None:
        # The closing record of a run a signal stopped (instead of "end").
        journal.record("interrupted", signal=interrupted, environments=fates)
    else:
        journal.record(
            "end",
            result="failed" if failed or errored else "blocked" if blocked else "ok",
            environments=fates,
        )
    if failed or interrupted is not None:
        raise _combined(failed, results, interrupted)
    if errored:
        raise ApplyError(
            f"not applied: {', '.join(errored)} could not be planned (--keep-going skipped "
            f"{'it' if len(errored) == 1 else 'them'}); every other environment was applied.",
            RunReport(others=_others(results)),
        )
    if held:
        raise BlockedError(
            _held_message("not applied", held) + " (--keep-going: the others ran, see above.)"
        )
    if blocked:
        raise BlockedError(
            f"not applied: {', '.join(blocked)} {'is' if len(blocked) == 1 else 'are'} blocked "
            "(see the plan above for why); every other environment was applied."
        )
    return results


def held_by_policy(
    envs: Sequence[Environment],
    run: RunPlan,
    now: datetime,
    journal: Journal,
    *,
    break_glass: str | None,
) -> dict[str, Decision]:
    """The environments with changes whose policy forbids writing at `now`, each with its
    decision; none with `break_glass`. Journals every refusal or override."""
    by_name = {env.name: env for env in envs}
    held: dict[str, Decision] = {}
    for plan in run.environments:
        if plan.status is not Status.CHANGES:
            continue  # a converged environment has nothing to write: never blocked
        env = by_name[plan.name]
        decision = decide(env.policy, now)
        if decision.allowed:
            continue
        journal.record(
            "policy",
            environment=env.name,
            tenant=env.tenant,
            result="blocked" if break_glass is None else "overridden",
            **({"break_glass": break_glass} if break_glass is not None else {}),
            **decision_dict(decision),
        )
        if break_glass is None:
            held[env.name] = decision
    return held


def _held_message(what: str, held: Mapping[str, Decision]) -> str:
    listed = "\n".join(f"  {name}: {explain(decision)}" for name, decision in held.items())
    names = ", ".join(held)
    return (
        f"{what}: {names} {'is' if len(held) == 1 else 'are'} blocked by "
        f"{'its' if len(held) == 1 else 'their'} change policy:\n{listed}\n"
        "Apply again once writes are allowed. In an emergency, apply with --break-glass "
        '"REASON": it overrides windows and freezes only (never a gate or a safety rule) '
        "and the reason is recorded in the output and the journal."
    )


def _halted_by(exc: ReconcilerError, client: NewStoreClient | None, keep_going: bool) -> str:
    """Why the environments after a failed one are not attempted ("" when they are)."""
    blocked_at = client.blocked_at if client is not None else None
    if blocked_at is not None or isinstance(exc, IPBlockedError):
        when = f" at {blocked_at:%H:%M:%S} UTC" if blocked_at is not None else ""
        return (
            f"NewStore blocked this IP{when}, and every request would extend the block; wait "
            "for it to end (about 5 minutes), or ask NewStore support to lift it, then run "
            "apply again"
        )
    if isinstance(exc, Interrupted):
        return f"{exc.signal_name} received"
    if keep_going:
        return ""
    return "an earlier environment failed; --keep-going applies the others anyway"


def _others(results: list[EnvResult]) -> tuple[EnvFate, ...]:
    """The fate of every environment that did not fail."""
    return tuple(EnvFate(r.name, r.status, r.why) for r in results if r.error is None)


def _combined(
    failed: list[EnvResult], results: list[EnvResult], interrupted: str | None = None
) -> ReportedError:
    stops = tuple(
        stop
        for r in failed
        if r.error is not None and isinstance(r.error.stop, RunReport)
        for stop in r.error.stop.stops
    )
    report = RunReport(stops, _others(results))

    if not failed:
        assert interrupted is not None
        return Interrupted(
            f"{interrupted} received between environments: nothing more was written",
            report,
            interrupted,
        )
    first = failed[0].error
    assert first is not None
    if len(failed) == 1:
        if interrupted is not None and not isinstance(first, Interrupted):
            # The failure came first; the signal still decides the exit code.
            return Interrupted(first.message, report, interrupted)
        return replace(first, stop=report)
    names = ", ".join(r.name for r in failed)
    messages = "\n".join(f"  {r.error.message}" for r in failed if r.error is not None)
    message = f"apply failed in {len(failed)} environments ({names}):\n{messages}"
    if interrupted is not None:
        return Interrupted(message, report, interrupted)
    if all(isinstance(r.error, BlockedError) for r in failed):
        return BlockedError(message, report)
    return ApplyError(message, report)
