"""A fleet of environments on the sandbox with every drift status at once, for the tests of
drift's outputs (files, dashboard, metrics, notifications):

    acme-eu     in_sync     NewStore-managed ATP, as the file says
    acme-ui     drift       the external OMS flag turned on by hand
    acme-back   blocked     the file goes back to NewStore-managed ATP; the stock gate holds it
    acme-prod   unhealthy   (`--probe`) ATP on, its webhook holds a key the webhook refuses;
                            also drifted, and breaking rule 2 (the OMS flag is off)
    acme-gone   error       its NewStore does not answer (a closed port)
"""

from __future__ import annotations

from pathlib import Path

from env_helpers import OFF_YAML, ON_YAML, STOCK_UNCONFIRMED_YAML, WriteEnv
from test_drift import HAND_MADE_KEY, seed, write_gone

from reconciler.sandbox import SandboxApp
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY

OFF = OFF_YAML + STOCK_UNCONFIRMED_YAML
STATUSES = {
    "acme-eu": "in_sync",
    "acme-ui": "drift",
    "acme-back": "blocked",
    "acme-prod": "unhealthy",
    "acme-gone": "error",
}
SECRETS = (HAND_MADE_KEY, DEFAULT_WEBHOOK_API_KEY, "sandbox-secret")


def fleet(sandbox: SandboxApp, base: str, write_env: WriteEnv, *, gone: bool = True) -> Path:
    """Write and seed the fleet; the environments directory."""
    write_env("acme-eu", "acme-eu", base, OFF)
    write_env("acme-ui", "acme-ui", base, OFF)
    write_env("acme-back", "acme-back", base, OFF)
    directory = write_env("acme-prod", "acme-prod", base, ON_YAML).parent
    seed(sandbox, base, "acme-ui", oms=True, atp=False, ui=False)
    seed(sandbox, base, "acme-back", oms=True, atp=True, ui=True, webhook={})
    seed(
        sandbox,
        base,
        "acme-prod",
        oms=False,
        atp=True,
        ui=True,
        webhook={"timeout": 30, "api_key": HAND_MADE_KEY},
    )
    if gone:
        write_gone(directory)
    return directory


def in_sync_again(sandbox: SandboxApp, base: str, tenant: str) -> None:
    """Someone puts `tenant` back as its file (OFF) says: NewStore-managed ATP."""
    seed(sandbox, base, tenant, oms=False, atp=False, ui=False)
