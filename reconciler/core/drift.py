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

The report is the one value every output of a run renders (text, JSON, Markdown, the HTML
dashboard, the metrics, the notifications): it carries when the check ran, from which config
commit, and, once `reconciler.core.drift_state.with_history` has read a state file, what
changed since the last run.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from reconciler._version import __version__
from reconciler.core.plan import Action, EnvPlan, FieldChange, Status, plan_environments
from reconciler.model import Environment, Unresolved
from reconciler.newstore.settings import REGISTRY
from reconciler.parallelism import DEFAULT_PARALLELISM
from reconciler.provenance import ConfigCommit
from reconciler.rules import RULES, Rule

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


# Worst first, for the outputs people read (the dashboard, notifications): an unhealthy
# environment may be off sale now, an unreadable one may be anything, a blocked fix needs a
# person, plain drift can wait for the next apply.
SEVERITY: Final = (
    DriftStatus.UNHEALTHY,
    DriftStatus.ERROR,
    DriftStatus.BLOCKED,
    DriftStatus.DRIFT,
    DriftStatus.IN_SYNC,
)
_RULES_BY_ID: Final = {rule.id: rule for rule in RULES}

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
    # The rules behind `live_violations`, in the same order (worst harm first).
    broken_rules: list[Rule] = field(default_factory=list)

    @property
    def probe_ok(self) -> bool | None:
        """Whether the live webhook passed the probe: None when it was not probed (no
        `--probe`, external ATP off, or nothing to probe with) or could not be read."""
        if self.status is DriftStatus.ERROR:
            return None
        if self.unhealthy:
            return False
        return True if self.probe.startswith("passed") else None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DriftReport:
    """Every environment's drift, as `check_drift` read it; a value: a later step (the state
    file's history) returns a new report (`dataclasses.replace`)."""

    environments: list[EnvDrift]
    checked_at: datetime = field(default_factory=_now)  # when the reads started (UTC)
    config_commit: ConfigCommit | None = None  # of the environments directory, when in git
    run_url: str | None = None  # the CI run that made the report, when a known CI says
    # What the state file (`drift --state`) says about earlier runs; None before it was read.
    history: DriftHistory | None = None

    def worst_first(self) -> list[EnvDrift]:
        """The environments by SEVERITY, in the order given within a status."""
        return sorted(self.environments, key=lambda env: SEVERITY.index(env.status))

    @property
    def complete(self) -> bool:
        """Whether the run read every environment (no error): a successful run."""
        return all(env.status is not DriftStatus.ERROR for env in self.environments)

    @property
    def last_success_at(self) -> datetime | None:
        """The last run that read every environment: this one if it did, else the state
        file's (None without one)."""
        if self.complete:
            return self.checked_at
        return None if self.history is None else self.history.last_success_at

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
        broken_rules=[_RULES_BY_ID[rule_id] for rule_id in plan.live_rules],
    )


def check_drift(
    envs: Sequence[Environment | Unresolved],
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    client_factory: Callable[[Environment], AbstractContextManager[NewStoreClient]] | None = None,
    on_done: Callable[[EnvPlan], None] | None = None,
    probe: bool = False,
    now: datetime | None = None,
    config_commit: ConfigCommit | None = None,
    run_url: str | None = None,
) -> DriftReport:
    """Read every environment (`parallelism` at a time) and report its drift; never writes.
    An `Unresolved` environment (its file has problems) is reported with status error.
    With `probe`, every environment whose live external ATP is on has its live webhook probed;
    unhealthy ones are listed first (the cron's off-sale alarm). `now` (default: the real
    now, UTC) is the report's `checked_at`; `config_commit` and `run_url` say where it came
    from."""
    checked_at = now or _now()
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
    return DriftReport(drifts, checked_at, config_commit, run_url)


@dataclass(frozen=True)
class EnvChange:
    """One environment whose status (or how it drifts) differs from the last run's: what a
    notification is about. `previous` is None where no earlier status is known."""

    name: str
    tenant: str
    status: DriftStatus
    previous: DriftStatus | None

    @property
    def recovered(self) -> bool:
        return self.status is DriftStatus.IN_SYNC


@dataclass(frozen=True)
class DriftHistory:
    """What the state file adds to a report: the changes since the last run (worst first),
    the last run that read every environment (this one, if it did), and since when each
    environment has had its current status. `known` is False without a state file: then every
    environment that is not in sync counts as a change."""

    changes: tuple[EnvChange, ...]
    last_success_at: datetime | None
    since: Mapping[str, datetime]
    known: bool


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
        "broken_rules": [
            {
                "id": rule.id,
                "number": rule.number,
                "text": rule.text,
                "consequence": rule.consequence,
                "harm": rule.harm.name.lower(),
            }
            for rule in env.broken_rules
        ],
    }


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def change_to_dict(change: EnvChange) -> dict[str, Any]:
    return {
        "name": change.name,
        "tenant": change.tenant,
        "status": str(change.status),
        "previous_status": None if change.previous is None else str(change.previous),
    }


def drift_to_dict(report: DriftReport, *, checked_at: datetime | None = None) -> dict[str, Any]:
    """The JSON document (schemas/drift.schema.json). `checked_at` overrides the report's."""
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "checked_at": _when(checked_at or report.checked_at),
        "tool_version": __version__,
        "config_commit": None if report.config_commit is None else report.config_commit.to_json(),
        "run_url": report.run_url,
        "status": str(report.worst),
        "summary": {
            "environments": len(report.environments),
            **{str(status): report.count(status) for status in DriftStatus},
        },
        "environments": [env_drift_to_dict(env) for env in report.environments],
    }
    history = report.history
    if history is not None:
        doc["history"] = {
            "known": history.known,
            "last_success_at": None
            if history.last_success_at is None
            else _when(history.last_success_at),
            "changes": [change_to_dict(change) for change in history.changes],
            "since": {name: _when(moment) for name, moment in history.since.items()},
        }
    return doc


def drift_to_json(report: DriftReport, *, checked_at: datetime | None = None) -> str:
    doc = drift_to_dict(report, checked_at=checked_at)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
