"""Drift: does each environment's live state still match its file? Read-only, for a cron.

A drift check is a plan that is never applied: `check_drift` runs `plan_environments` (no
probes, no writes) and reads each environment's plan as one of

    in_sync   the plan converged
    drift     the live state differs: which settings and fields, live → desired (masked)
    blocked   drift whose fix a gate or safety rule stops; the drifted fields are still listed
    unhealthy (`--probe`) external ATP is on and the live webhook failed the probe, is missing,
              or holds a key that cannot be the file's: the retailer may not be selling
    error     the environment could not be read; `error` says why (with NewStore's request id)

Rules the live state already breaks are reported with any status but error. `drift_to_dict` is
the machine form, described by schemas/drift.schema.json.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from reconciler._version import __version__
from reconciler.core.plan import Action, EnvPlan, FieldChange, Status, plan_environments
from reconciler.model import Environment, Unresolved
from reconciler.newstore.settings import REGISTRY
from reconciler.parallelism import DEFAULT_PARALLELISM

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient

FORMAT_VERSION: Final = 1
_SETTING_ORDER: Final = {s.key: i for i, s in enumerate(REGISTRY)}


class DriftStatus(enum.StrEnum):
    IN_SYNC = "in_sync"
    DRIFT = "drift"
    BLOCKED = "blocked"
    UNHEALTHY = "unhealthy"
    ERROR = "error"


_FROM_PLAN: Final = {
    Status.CONVERGED: DriftStatus.IN_SYNC,
    Status.CHANGES: DriftStatus.DRIFT,
    Status.BLOCKED: DriftStatus.BLOCKED,
    Status.ERROR: DriftStatus.ERROR,
}


@dataclass(frozen=True)
class SettingDrift:
    """One drifted setting: what apply would do to it, and its fields' masked live → desired
    (`FieldChange.before` is the live value, `after` the desired one)."""

    setting: str
    fix: Action
    fields: tuple[FieldChange, ...]


@dataclass
class EnvDrift:
    name: str
    tenant: str
    status: DriftStatus
    settings: list[SettingDrift] = field(default_factory=list)  # in registry order
    live_violations: list[str] = field(default_factory=list)
    blocked_by: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    unhealthy: list[str] = field(default_factory=list)
    probe: str = ""  # what `--probe` did ("" when not asked)
    # Secrets NewStore answers masked: the one it holds could not be compared with the file's.
    uncompared_secrets: list[str] = field(default_factory=list)
    # Settings read for a rule (not managed, never written): key → rule numbers.
    read_for_rules: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class DriftReport:
    environments: list[EnvDrift]

    def count(self, status: DriftStatus) -> int:
        return sum(env.status is status for env in self.environments)

    @property
    def worst(self) -> DriftStatus:
        """error beats unhealthy, which beats drift (blocked counts as drift), which beats
        in_sync."""
        statuses = {env.status for env in self.environments}
        if DriftStatus.ERROR in statuses:
            return DriftStatus.ERROR
        if DriftStatus.UNHEALTHY in statuses:
            return DriftStatus.UNHEALTHY
        if statuses & {DriftStatus.DRIFT, DriftStatus.BLOCKED}:
            return DriftStatus.DRIFT
        return DriftStatus.IN_SYNC


def drift_of(plan: EnvPlan) -> EnvDrift:
    """Read one environment's plan as drift."""
    steps = sorted(plan.steps, key=lambda step: _SETTING_ORDER[step.setting])
    status = _FROM_PLAN[plan.status]
    if plan.unhealthy and status is not DriftStatus.ERROR:
        status = DriftStatus.UNHEALTHY
    return EnvDrift(
        name=plan.name,
        tenant=plan.tenant,
        status=status,
        unhealthy=list(plan.unhealthy),
        probe=plan.probe,
        settings=[SettingDrift(s.setting, s.action, s.changes) for s in steps],
        live_violations=list(plan.live_violations),
        blocked_by=list(plan.blocked_by),
        notes=list(plan.notes),
        error=plan.error,
        uncompared_secrets=list(plan.uncompared_secrets),
        read_for_rules={k: list(v) for k, v in plan.read_for_rules.items()},
    )


def check_drift(
    envs: Sequence[Environment | Unresolved],
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    client_factory: Callable[[Environment], AbstractContextManager[NewStoreClient]] | None = None,
    on_done: Callable[[EnvPlan], None] | None = None,
    probe: bool = False,
) -> DriftReport:
    """Read every environment (`parallelism` at a time) and report its drift; never writes.
    An `Unresolved` environment (its file has problems) is reported with status error.
    With `probe`, every environment whose live external ATP is on has its live webhook probed;
    unhealthy ones are listed first (the cron's off-sale alarm)."""
    run = plan_environments(
        envs,
        parallelism=parallelism,
        client_factory=client_factory,
        on_done=on_done,
        health=probe,
    )
    drifts = [drift_of(plan) for plan in run.environments]
    # Stable: unhealthy first, the rest in the order given.
    drifts.sort(key=lambda env: env.status is not DriftStatus.UNHEALTHY)
    return DriftReport(drifts)


# --- the machine form --------------------------------------------------------------------------


def env_drift_to_dict(env: EnvDrift) -> dict[str, Any]:
    """The one serializer of an environment's drift (`drift --format json`)."""
    return {
        "name": env.name,
        "tenant": env.tenant,
        "status": str(env.status),
        "settings": [
            {
                "setting": s.setting,
                "fix": str(s.fix),
                "fields": [
                    {"path": f.path, "live": f.before, "desired": f.after} for f in s.fields
                ],
            }
            for s in env.settings
        ],
        "live_violations": list(env.live_violations),
        "blocked_by": list(env.blocked_by),
        "notes": list(env.notes),
        "error": env.error,
        "unhealthy": list(env.unhealthy),
        "probe": env.probe,
        "uncompared_secrets": list(env.uncompared_secrets),
        # Only where a setting is read for a rule, so other reports keep their shape.
        **({"read_for_rules": dict(env.read_for_rules)} if env.read_for_rules else {}),
    }


def drift_to_dict(report: DriftReport, *, checked_at: datetime | None = None) -> dict[str, Any]:
    """The JSON document (schemas/drift.schema.json). `checked_at` defaults to now (UTC)."""
    when = checked_at or datetime.now(UTC)
    return {
        "format_version": FORMAT_VERSION,
        "checked_at": when.isoformat(timespec="seconds"),
        "tool_version": __version__,
        "status": str(report.worst),
        "summary": {
            "environments": len(report.environments),
            **{str(status): report.count(status) for status in DriftStatus},
        },
        "environments": [env_drift_to_dict(env) for env in report.environments],
    }


def drift_to_json(report: DriftReport, *, checked_at: datetime | None = None) -> str:
    doc = drift_to_dict(report, checked_at=checked_at)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
