"""`apply --plan`: refuse a plan file unless it still describes the world, then return the same
plan re-made from the live state (`check_plan_file`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.core.apply.planfile_moved import what_moved
from reconciler.core.plan import (
    Action,
    ClientFactory,
    EnvPlan,
    RunPlan,
    Status,
    Step,
    build_plan,
    default_client,
    fingerprint,
    fingerprint_key,
    policy_now,
    read_live,
    shown_value,
)
from reconciler.core.planfile import expires_at
from reconciler.diffing import changed_keys
from reconciler.errors import PlanFileError, ReconcilerError
from reconciler.model import Environment, Value, show_value
from reconciler.newstore.settings import BY_KEY, Setting

# A plan made up to this far ahead of this machine's clock is accepted (clocks drift a little);
# further ahead, its expiry cannot be trusted.
CLOCK_SKEW = timedelta(minutes=5)


def plan_file_environments(planned: RunPlan, selected: Sequence[str]) -> list[str]:
    """The environment names to apply from a plan file: all of them, or `selected` (each of
    which must be in the file)."""
    in_file = [env.name for env in planned.environments]
    missing = [name for name in selected if name not in in_file]
    if missing:
        raise PlanFileError(
            f"the plan file has no plan for {', '.join(missing)}; it plans "
            f"{', '.join(in_file) or 'nothing'}."
        )
    return [name for name in in_file if not selected or name in selected]


def _moved(
    setting: Setting, planned: Any, now: Value, secret: frozenset[str] = frozenset()
) -> list[str]:
    """What moved in one setting since the plan, field by field, masked (`secret`: the fields
    the environment makes secret beyond the setting's own)."""
    current = shown_value(setting, now, secret)
    if planned is None or current is None or not isinstance(planned, dict):
        shown_planned = show_value(planned, sort_keys=True)
        shown_now = show_value(current, sort_keys=True)
        return [f"{setting.key}: planned from {shown_planned}, now {shown_now}"]
    lines = []
    moved = changed_keys(planned, current)
    for name in [*planned, *(n for n in current if n not in planned)]:
        before, after = planned.get(name), current.get(name)
        if name in moved:
            lines.append(
                f"{setting.key}.{name}: planned from {show_value(before)}, now {show_value(after)}"
            )
    if not lines:
        # Equal once masked, different fingerprint: a secret changed.
        lines += [
            f"{setting.key}.{name}: planned from (sensitive), now (sensitive, changed)"
            for name in sorted(setting.secret_fields | secret)
        ]
    return lines


def _step_shape(step: Step) -> tuple[str, Action, str]:
    # The masked changes compared as JSON: a plan read from a file holds lists where a fresh
    # one may hold tuples.
    changes = [[c.path, c.before, c.after] for c in step.changes]
    return step.setting, step.action, json.dumps(changes, sort_keys=True)


def _same_steps(a: EnvPlan, b: EnvPlan) -> bool:
    """Same status and steps (setting, action, field changes) in two plans; gate
    descriptions may differ (a probe run at plan time reports its timing)."""
    return a.status is b.status and [_step_shape(s) for s in a.steps] == [
        _step_shape(s) for s in b.steps
    ]


def check_plan_file(
    planned_run: RunPlan,
    source: str,
    envs: Sequence[Environment],
    *,
    client_factory: ClientFactory | None = None,
    parallelism: int = 8,
    now: datetime | None = None,
) -> RunPlan:
    """Check that the plan of a verified plan file (`planfile.read_plan_file`) still holds for
    `envs`, and return its plan re-made from the live state.

    Refuses (PlanFileError, listing every problem of every environment) when an environment is
    blocked or errored in the file, the plan expired (`plan_valid_hours` after it was made, by
    `now`) or was made in the future, anything that decides a write moved (`what_moved`: the
    tenant, the hosts, the fingerprint key, the settings, gates or policy), any setting's live
    value moved since the plan, or re-planning gives other steps.
    """
    factory = client_factory or default_client
    by_name = {p.name: p for p in planned_run.environments}
    problems: list[str] = []
    # A blocked (or failed) plan is said to be that, first: it was never applicable.
    unready = [by_name[env.name] for env in envs]
    unready = [p for p in unready if p.status in (Status.BLOCKED, Status.ERROR)]
    if unready:
        for planned in unready:
            why = "; ".join(planned.blocked_by) or planned.error
            problems.append(
                f"{planned.name}: the plan is {planned.status}"
                + (f" ({why})" if why else "")
                + "; fix that and plan again"
            )
        statuses = {p.status for p in unready}
        what = "is blocked" if statuses == {Status.BLOCKED} else "cannot be applied"
        raise PlanFileError(_refusal(source, what, problems))
    moment = now if now is not None else datetime.now(UTC)
    for env in envs:
        problems += _expiry_problems(by_name[env.name], planned_run, moment)
    if problems:
        raise PlanFileError(_refusal(source, "cannot be applied any more", problems))
    for env in envs:
        problems += what_moved(by_name[env.name], env)
    if problems:
        raise PlanFileError(_refusal(source, "does not match the environments", problems))

    def recheck(env: Environment) -> tuple[EnvPlan | str, list[str]]:
        """The plan re-made from the live state (or why the live state could not be read),
        and what moved since the plan."""
        planned = by_name[env.name]
        try:
            with factory(env) as client:
                live = read_live(env, client)
        except ReconcilerError as exc:
            return str(exc), []
        key = fingerprint_key(env)
        moved = []
        if set(live) != set(planned.fingerprints):
            moved.append(f"{env.name}: the plan read other settings than the environment manages")
        for name, value in live.items():
            setting, secret = BY_KEY[name], env.secret_names(name)
            if fingerprint(setting, value, key, secret) != planned.fingerprints.get(name):
                moved += [
                    f"{env.name} {line}"
                    for line in _moved(setting, planned.live.get(name), value, secret)
                ]
        plan = build_plan(env, live, replace=planned.replaced)
        if now is not None:
            plan = replace(plan, policy=policy_now(env, plan, now))
        return plan, moved

    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(envs)))) as pool:
        rechecked = list(pool.map(recheck, envs))
    unread = [plan for plan, _ in rechecked if isinstance(plan, str)]
    if unread:
        raise PlanFileError(_refusal(source, "cannot be checked against the live state", unread))
    moved = [line for _, lines in rechecked for line in lines]
    if moved:
        raise PlanFileError(
            _refusal(source, "is stale: the live state changed since the plan", moved)
        )

    replanned = [plan for plan, _ in rechecked if isinstance(plan, EnvPlan)]
    for plan in replanned:
        if not _same_steps(plan, by_name[plan.name]):
            problems.append(
                f"{plan.name}: planning again from the same live state gives other steps than "
                "the file (was it written by another reconciler version?)"
            )
    if problems:
        raise PlanFileError(_refusal(source, "cannot be applied as written", problems))
    return RunPlan(replanned)


def _expiry_problems(planned: EnvPlan, run: RunPlan, now: datetime) -> list[str]:
    """Why the plan of `planned` may no longer be applied at `now`, if it may not."""
    created = run.created_at
    if created is None or planned.plan_valid_hours < 1 or not planned.identity:
        return [
            f"{planned.name}: the plan file does not say when it was made, how long it is "
            "valid or which host it read (it was written by an older reconciler); plan "
            "again with this version"
        ]
    made = created.astimezone(UTC).isoformat(timespec="seconds")
    if created > now + CLOCK_SKEW:
        return [
            f"{planned.name}: the plan was made {made}, after now "
            f"({now.astimezone(UTC).isoformat(timespec='seconds')}): the clock of the machine "
            "that made it is wrong, so its expiry cannot be trusted"
        ]
    ends = expires_at(created, planned)
    if now >= ends:
        ended = ends.astimezone(UTC).isoformat(timespec="seconds")
        return [
            f"{planned.name}: the plan expired at {ended}"
            f" (made {made}, plan_valid_hours: {planned.plan_valid_hours}); an old plan could "
            "replay a change that was reverted since"
        ]
    return []


def _refusal(source: str, what: str, problems: list[str]) -> str:
    listed = "\n".join(f"  {p}" for p in problems)
    return (
        f"{source} {what}; nothing was applied:\n{listed}\n"
        "Run `reconciler plan --out` again, review the new plan, and apply that."
    )
