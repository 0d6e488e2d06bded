"""The drift state file (`drift --state FILE`): each environment's last known status, so that a
run can tell what changed since the one before it, and the last run that read every environment.

    state = read_state(path)                  # an empty state when the file does not exist yet
    report = with_history(report, state)      # the report, now knowing its changes
    write_state(path, next_state(report, state, undelivered=False))

A change is an environment that starts drifting, drifts differently (other fields or values,
other broken rules, another reason its fix is blocked), turns unhealthy, errors, or recovers.
How an environment drifts is kept as a digest of its masked drift (`drift_shape`), so the file
holds no value at all, masked or not. An error's message is left out of its digest: it carries
NewStore's request id, new on every run, and a repeated error is no news.

The file is written whole or not at all (temporary file, then rename), like every file the tool
writes; environments a run did not check (`drift ENV`) keep their entries.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from reconciler.core.drift import (
    DriftHistory,
    DriftReport,
    DriftStatus,
    EnvChange,
    EnvDrift,
    env_drift_to_dict,
)
from reconciler.errors import ConfigError
from reconciler.fsutil import atomic_write_text, make_parents

FORMAT_VERSION: Final = 1
_MAX_BYTES: Final = 16 * 1024 * 1024  # a state of thousands of environments is far smaller
_RESTART: Final = (
    "delete it to start afresh (the next run then reports every environment that is not in "
    "sync as changed)"
)


@dataclass(frozen=True)
class EnvState:
    status: DriftStatus
    shape: str  # drift_shape(): how it drifts
    since: datetime  # when it got this status


@dataclass(frozen=True)
class DriftState:
    environments: Mapping[str, EnvState] = field(default_factory=dict)
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None


def drift_shape(env: EnvDrift) -> str:
    """A digest of how `env` drifts: its status, drifted fields with their masked values,
    broken rules and blockers. Equal digests: nothing worth telling anyone changed."""
    if env.status is DriftStatus.ERROR:
        return "error"
    doc = env_drift_to_dict(env)
    shape = {
        "status": doc["status"],
        "settings": doc["settings"],
        "broken_rules": [rule["id"] for rule in doc["broken_rules"]],
        "blocked_by": doc["blocked_by"],
    }
    canonical = json.dumps(shape, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# --- the file --------------------------------------------------------------------------------


def _moment(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{where} is not a date-time string")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{where} has no time zone")
    return moment


def _optional_moment(value: Any, where: str) -> datetime | None:
    return None if value is None else _moment(value, where)


def _parse(doc: Any) -> DriftState:
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"not a drift state file of format_version {FORMAT_VERSION}")
    environments = doc.get("environments")
    if not isinstance(environments, dict):
        raise ValueError("`environments` is not a mapping")
    parsed = {}
    for name, entry in environments.items():
        where = f"environments.{name}"
        if not isinstance(entry, dict) or not isinstance(entry.get("shape"), str):
            raise ValueError(f"{where} is not an environment's state")
        parsed[name] = EnvState(
            status=DriftStatus(str(entry.get("status"))),
            shape=entry["shape"],
            since=_moment(entry.get("since"), f"{where}.since"),
        )
    return DriftState(
        environments=parsed,
        last_run_at=_optional_moment(doc.get("last_run_at"), "last_run_at"),
        last_success_at=_optional_moment(doc.get("last_success_at"), "last_success_at"),
    )


def read_state(path: str | os.PathLike[str]) -> DriftState:
    """The state in `path`; an empty one when there is no file there yet (the first run).
    A file that cannot be read or is not a state file is a ConfigError saying how to recover."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return DriftState()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the drift state file {path}: {exc.strerror or exc}."
        ) from None
    try:
        if len(raw) > _MAX_BYTES:
            raise ValueError(f"larger than {_MAX_BYTES} bytes")
        return _parse(json.loads(raw.decode("utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:
        # json.JSONDecodeError is a ValueError; its message names line and column.
        raise ConfigError(
            f"the drift state file {path} is not usable ({exc}); {_RESTART}."
        ) from None


def state_to_dict(state: DriftState) -> dict[str, Any]:
    def when(moment: datetime | None) -> str | None:
        return None if moment is None else moment.isoformat(timespec="seconds")

    return {
        "format_version": FORMAT_VERSION,
        "last_run_at": when(state.last_run_at),
        "last_success_at": when(state.last_success_at),
        "environments": {
            name: {"status": str(entry.status), "shape": entry.shape, "since": when(entry.since)}
            for name, entry in sorted(state.environments.items())
        },
    }


def write_state(path: str | os.PathLike[str], state: DriftState) -> None:
    """Write atomically, creating missing directories (a CI cache restores none on its first
    run)."""
    make_parents(path, "drift state file")
    text = json.dumps(state_to_dict(state), indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(path, text, what="drift state file")


# --- a run against the state -----------------------------------------------------------------


def with_history(report: DriftReport, state: DriftState | None) -> DriftReport:
    """The report with its `history`: the changes since `state` (None: no state file, so every
    environment not in sync is a change), since when each status holds, and the last
    successful run."""
    known = state or DriftState()
    changes = []
    since = {}
    for env in report.worst_first():
        before = known.environments.get(env.name)
        if before is None:
            if env.status is not DriftStatus.IN_SYNC:
                changes.append(EnvChange(env.name, env.tenant, env.status, None))
        elif before.status is not env.status or before.shape != drift_shape(env):
            changes.append(EnvChange(env.name, env.tenant, env.status, before.status))
        same = before is not None and before.status is env.status
        since[env.name] = before.since if before is not None and same else report.checked_at
    last_success = report.checked_at if report.complete else known.last_success_at
    history = DriftHistory(tuple(changes), last_success, since, known=state is not None)
    return replace(report, history=history)


def next_state(report: DriftReport, state: DriftState | None, *, undelivered: bool) -> DriftState:
    """The state to keep after `report` (which has its history). With `undelivered` (a
    notification about the changes could not be sent), the changed environments keep their
    previous entries, so that the next run finds the same changes and tells them again."""
    history = report.history or with_history(report, state).history
    assert history is not None
    previous = state or DriftState()
    environments = dict(previous.environments)
    held = {change.name for change in history.changes} if undelivered else set()
    for env in report.environments:
        if env.name in held:
            continue
        environments[env.name] = EnvState(
            env.status, drift_shape(env), history.since.get(env.name, report.checked_at)
        )
    return DriftState(
        environments=environments,
        last_run_at=report.checked_at,
        last_success_at=history.last_success_at,
    )
