"""The plan file: a RunPlan as JSON (`plan --out`, `plan --format json`), checksummed.

The file holds no secret: field changes and live values are already masked in the plan, and
fingerprints carry secrets only as HMACs keyed with the environment's client secret. The
checksum covers every other key of the document, so an edit between review and `apply --plan`
is refused rather than applied.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from reconciler._version import __version__
from reconciler.core.plan import Action, EnvPlan, FieldChange, Gate, RunPlan, Status, Step
from reconciler.errors import PlanFileError
from reconciler.fsutil import atomic_write_text
from reconciler.model import ABSENT
from reconciler.policy import decision_dict, decision_from_dict
from reconciler.provenance import ConfigCommit

FORMAT_VERSION: Final = 1
# A real plan nests about ten levels deep; a hostile one could nest deep enough to exhaust the
# interpreter's stack in the JSON parser, the checksum or the schema validator.
MAX_DEPTH: Final = 32
# An edited plan can put megabytes where the schema wants a word: quote only this much of it.
MAX_SCHEMA_ERRORS: Final = 5
MAX_SCHEMA_ERROR_CHARS: Final = 200


def step_to_dict(step: Step) -> dict[str, Any]:
    return {
        "setting": step.setting,
        "action": str(step.action),
        "changes": [{"path": c.path, "from": c.before, "to": c.after} for c in step.changes],
        "why": step.why,
        "gates": [
            {"name": g.name, "description": g.description, "satisfied": g.satisfied}
            for g in step.gates
        ],
    }


def expires_at(created_at: datetime, env: EnvPlan) -> datetime:
    """When a plan file made at `created_at` stops being applicable to `env`."""
    return created_at + timedelta(hours=env.plan_valid_hours)


def env_plan_to_dict(env: EnvPlan, created_at: datetime | None = None) -> dict[str, Any]:
    """The one serializer of an environment's plan: plan files and `plan --format json`.
    `created_at`, the plan's, dates its expiry."""
    return {
        "name": env.name,
        "tenant": env.tenant,
        "identity": env.identity,
        "api_host": env.api_host,
        "token_host": env.token_host,
        "token_endpoint": env.token_endpoint,
        "status": str(env.status),
        "steps": [step_to_dict(step) for step in env.steps],
        "fingerprints": dict(env.fingerprints),
        "live": dict(env.live),
        "desired_fingerprint": env.desired_fingerprint,
        "blocked_by": list(env.blocked_by),
        "live_violations": list(env.live_violations),
        "notes": list(env.notes),
        "error": env.error,
        "replaced": list(env.replaced),
        "decision": dict(env.decision),
        "fingerprint_key": dict(env.fingerprint_key),
        "plan_valid_hours": env.plan_valid_hours,
        **(
            {"expires_at": _timestamp(expires_at(created_at, env))}
            if created_at is not None
            else {}
        ),
        # Only where a setting is read for a rule, so other plans keep their shape.
        **(
            {"read_for_rules": {k: list(v) for k, v in env.read_for_rules.items()}}
            if env.read_for_rules
            else {}
        ),
        # Only where a policy has something to say, so plans of tenants without one keep
        # their shape.
        **({"policy": decision_dict(env.policy)} if env.policy is not None else {}),
    }


def step_from_dict(doc: Mapping[str, Any]) -> Step:
    """A step as `step_to_dict` wrote it. The file holds no unmasked value, so `before` and
    `after` are ABSENT: a step read from a file is compared, never written (`apply --plan`
    re-plans from the live state and applies that)."""
    return Step(
        setting=str(doc["setting"]),
        action=Action(doc["action"]),
        before=ABSENT,
        after=ABSENT,
        changes=tuple(FieldChange(str(c["path"]), c["from"], c["to"]) for c in doc["changes"]),
        why=str(doc["why"]),
        gates=tuple(
            Gate(str(g["name"]), str(g["description"]), g["satisfied"]) for g in doc["gates"]
        ),
    )


def env_plan_from_dict(doc: Mapping[str, Any]) -> EnvPlan:
    """An environment's plan as `env_plan_to_dict` wrote it (a verified plan file's)."""
    policy = doc.get("policy")
    return EnvPlan(
        name=str(doc["name"]),
        tenant=str(doc["tenant"]),
        status=Status(doc["status"]),
        steps=[step_from_dict(step) for step in doc["steps"]],
        fingerprints={str(k): str(v) for k, v in doc["fingerprints"].items()},
        live=dict(doc["live"]),
        desired_fingerprint=str(doc["desired_fingerprint"]),
        blocked_by=[str(b) for b in doc["blocked_by"]],
        live_violations=[str(v) for v in doc["live_violations"]],
        notes=[str(n) for n in doc["notes"]],
        error=str(doc["error"]),
        replaced=[str(k) for k in doc.get("replaced", [])],
        read_for_rules={
            str(k): tuple(int(n) for n in v) for k, v in doc.get("read_for_rules", {}).items()
        },
        policy=decision_from_dict(policy) if policy is not None else None,
        # Absent from the files of reconciler versions before 0.2: the check refuses those.
        identity=str(doc.get("identity", "")),
        api_host=str(doc.get("api_host", "")),
        token_host=str(doc.get("token_host", "")),
        token_endpoint=str(doc.get("token_endpoint", "")),
        decision={str(k): str(v) for k, v in doc.get("decision", {}).items()},
        fingerprint_key={str(k): str(v) for k, v in doc.get("fingerprint_key", {}).items()},
        plan_valid_hours=int(doc.get("plan_valid_hours", 0)),
    )


def run_plan_from_dict(doc: Mapping[str, Any]) -> RunPlan:
    """The RunPlan of a verified plan document (`validate_plan_dict`)."""
    commit = doc.get("config_commit")
    created = doc.get("created_at")
    return RunPlan(
        [env_plan_from_dict(env) for env in doc["environments"]],
        created_at=datetime.fromisoformat(created) if isinstance(created, str) else None,
        config_commit=ConfigCommit(str(commit["sha"]), bool(commit["dirty"]))
        if isinstance(commit, dict)
        else None,
        created_by=str(doc.get("created_by", "")),
        run_url=doc.get("run_url"),
    )


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def checksum(doc: dict[str, Any]) -> str:
    """The document's "sha256:<hex>" over the canonical JSON of every key but "checksum"."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def plan_to_dict(run: RunPlan, *, generated_at: datetime | None = None) -> dict[str, Any]:
    """The plan file document. Made at `generated_at`, else the plan's `created_at`, else now
    (UTC); tests pin it. `generated_at` is the same moment as `created_at`, kept for readers
    of plan files written before `created_at` existed."""
    when = (generated_at or run.created_at or datetime.now(UTC)).astimezone(UTC)
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generated_at": _timestamp(when),
        "created_at": _timestamp(when),
        "config_commit": run.config_commit.to_json() if run.config_commit is not None else None,
        "created_by": run.created_by,
        "run_url": run.run_url,
        "tool_version": __version__,
        "environments": [env_plan_to_dict(env, when) for env in run.environments],
    }
    doc["checksum"] = checksum(doc)
    return doc


def plan_to_json(run: RunPlan, *, generated_at: datetime | None = None) -> str:
    """The JSON rendering: exactly the plan file's text."""
    doc = plan_to_dict(run, generated_at=generated_at)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write_plan_file(
    run: RunPlan, path: str | os.PathLike[str], *, generated_at: datetime | None = None
) -> None:
    """Write atomically: a reader (or a crash) never sees half a plan."""
    text = plan_to_json(run, generated_at=generated_at)
    atomic_write_text(path, text, what="plan file", error=PlanFileError)


def _schema_errors(doc: dict[str, Any]) -> list[str]:
    # lazy: start-up time (jsonschema)
    from jsonschema import Draft202012Validator

    from reconciler.resources import schema_path

    schema = json.loads(schema_path("plan.schema.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    shown = [_shorten(f"{e.json_path}: {e.message}") for e in errors[:MAX_SCHEMA_ERRORS]]
    if len(errors) > MAX_SCHEMA_ERRORS:
        shown.append(f"and {len(errors) - MAX_SCHEMA_ERRORS} more")
    return shown


def _shorten(text: str) -> str:
    if len(text) <= MAX_SCHEMA_ERROR_CHARS:
        return text
    return text[: MAX_SCHEMA_ERROR_CHARS - 1] + "…"


def _too_deep(doc: Any) -> bool:
    """Whether `doc` nests deeper than MAX_DEPTH (checked without recursion)."""
    todo: list[tuple[Any, int]] = [(doc, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return True
            items = value.values() if isinstance(value, dict) else value
            todo.extend((item, depth + 1) for item in items)
    return False


def validate_plan_dict(doc: Any, source: str = "the plan") -> dict[str, Any]:
    """Check a parsed plan document: format version, checksum, then schema."""
    if not isinstance(doc, dict):
        raise PlanFileError(f"{source} is not a plan file: its JSON is not an object.")
    if _too_deep(doc):
        raise PlanFileError(
            f"{source} is not a plan file: it nests deeper than {MAX_DEPTH} levels."
        )
    version = doc.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise PlanFileError(
            f"{source} has format_version {version}, newer than this reconciler "
            f"({__version__}) reads (up to {FORMAT_VERSION}): upgrade newstore-reconciler "
            "or re-run plan with this version."
        )
    stored = doc.get("checksum")
    if not isinstance(stored, str):
        raise PlanFileError(f"{source} has no checksum: it was not written by `reconciler plan`.")
    if stored != checksum(doc):
        raise PlanFileError(
            f"{source} does not match its checksum: the plan file was edited after it was "
            "written. Re-run plan and review the new plan instead of editing it."
        )
    problems = _schema_errors(doc)
    if problems:
        listed = "; ".join(problems)
        raise PlanFileError(f"{source} does not match schemas/plan.schema.json: {listed}.")
    return doc


def load_plan_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and verify a plan file; every defect is a PlanFileError naming the file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanFileError(f"cannot read plan file {source}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise PlanFileError(f"{source} is not a plan file: it is not UTF-8 text.") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "it may be truncated. Re-run plan to write it again."
        ) from None
    except RecursionError:
        raise PlanFileError(
            f"{source} is not a plan file: it nests deeper than {MAX_DEPTH} levels."
        ) from None
    return validate_plan_dict(doc, source)


def read_plan_file(path: str | os.PathLike[str]) -> RunPlan:
    """A plan file, verified (`load_plan_file`) and turned back into the plan it was made
    from, once: `apply --plan` works on this value, never on the file's dicts."""
    return run_plan_from_dict(load_plan_file(path))
