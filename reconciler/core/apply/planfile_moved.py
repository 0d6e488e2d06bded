"""`apply --plan`: what moved, since the plan, in what decides an environment's writes.

The plan file records the tenant, where its requests went (the tenant identity and the token
endpoint), which key fingerprints its secrets, how long it stays valid, and a fingerprint of
each part of the environment file that decides a write (`fingerprint.decision_parts`).
`what_moved` compares each with the environment as loaded now and says, part by part, what
differs, with the file:line to look at; an empty list means nothing did.
"""

from __future__ import annotations

from reconciler.core.plan import EnvPlan, desired_fingerprint
from reconciler.core.plan.fingerprint import (
    KEY_FROM_VARIABLE,
    decision_parts,
    endpoints,
    key_record,
)
from reconciler.model import FINGERPRINT_KEY_VARIABLE, Environment


def _key_moved(planned: EnvPlan, env: Environment) -> str | None:
    """Why the plan's secret fingerprints cannot be compared here, if they cannot."""
    was, now = dict(planned.fingerprint_key), key_record(env)
    if was == now:
        return None
    name, var = env.name, FINGERPRINT_KEY_VARIABLE
    if was.get("source") == KEY_FROM_VARIABLE and now.get("source") == KEY_FROM_VARIABLE:
        return (
            f"{name}: the plan's secret fingerprints were made with another {var}; the plan "
            "and apply jobs must hold the same one"
        )
    if was.get("source") == KEY_FROM_VARIABLE:
        return (
            f"{name}: the plan's secret fingerprints were made with {var}, which is not set "
            "here: set it to the value the plan job had"
        )
    if now.get("source") == KEY_FROM_VARIABLE:
        return (
            f"{name}: the plan was made without {var} (its secrets were fingerprinted with API "
            f"client `{was.get('client_id', '?')}`'s secret); set {var} in the plan job too, "
            "then plan again"
        )
    return (
        f"{name}: planned with API client `{was.get('client_id', '?')}`, applied with "
        f"`{now.get('client_id', '?')}`: without {var}, a plan's secrets can only be compared "
        f"by the client that made it; set {var} (one value, in the plan and the apply jobs), "
        "then plan again"
    )


def what_moved(planned: EnvPlan, env: Environment) -> list[str]:
    """Everything that moved since `planned` was made, in what decides `env`'s writes."""
    name = env.name
    if planned.tenant != env.tenant:
        return [
            f"{name}: planned for tenant {planned.tenant}, but {env.file} now says "
            f"tenant {env.tenant}"
        ]
    moved: list[str] = []
    where = endpoints(env)
    if planned.identity != where.identity:
        moved.append(
            f"{name}: planned against API {planned.identity}, now {where.identity} "
            f"(connection.base_url, {env.where('connection.base_url')})"
        )
    if planned.token_endpoint != where.token_endpoint:
        moved.append(
            f"{name}: planned with token endpoint {planned.token_endpoint}, now "
            f"{where.token_endpoint} (connection.token_url, {env.where('connection.token_url')})"
        )
    key = _key_moved(planned, env)
    if key is not None:
        moved.append(key)
    parts = decision_parts(env)
    # With another key every secret's fingerprint differs: "the settings changed" would mislead.
    if key is None and planned.decision.get("settings") != parts["settings"]:
        moved.append(
            f"{name}: the environment file or secrets changed since the plan ({env.file}, or "
            "the ${...} variables it reads): its desired settings differ"
        )
    if planned.decision.get("gates") != parts["gates"]:
        moved.append(f"{name}: the gates changed since the plan (gates, {env.where('gates')})")
    if planned.decision.get("policy") != parts["policy"]:
        moved.append(
            f"{name}: the change policy changed since the plan (policy, after `extends`: "
            f"{env.where('policy')})"
        )
    if planned.plan_valid_hours != env.plan_valid_hours:
        moved.append(
            f"{name}: plan_valid_hours changed since the plan ({planned.plan_valid_hours} → "
            f"{env.plan_valid_hours}, {env.where('plan_valid_hours')})"
        )
    if not moved and planned.desired_fingerprint != desired_fingerprint(env):
        moved.append(
            f"{name}: the environment file or secrets changed since the plan ({env.file}, or "
            "the ${...} variables it reads)"
        )
    return moved
