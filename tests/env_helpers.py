"""Environment-file bodies and CLI runners shared by the end-to-end tests.

The bodies are for conftest's `write_env`, which adds `tenant` and `connection` and replaces
`{sandbox}` with the sandbox's base URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.clock import today_utc

WriteEnv = Callable[..., Path]

# The forward migration's target: the external OMS primary, probed before ATP goes on.
ON_YAML = """\
external_oms:
  enabled: true
availability_webhook:
  url: {sandbox}/_sandbox/webhook/availabilities
  api_key: ${SANDBOX_WEBHOOK_API_KEY}
  external_identifier: product_id
  timeout: 5
external_atp:
  enabled: true
external_order_webhook:
  url: https://oms.acme.example/newstore
  api_key: ${SANDBOX_ORDER_WEBHOOK_API_KEY}
  timeout: 15
associate_app:
  use_new_om_ui: true
gates:
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
"""
# NewStore-managed ATP: what a fresh sandbox tenant already is.
OFF_YAML = """\
external_oms:
  enabled: false
availability_webhook: absent
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
"""
# Dated today (UTC): a confirmation is the day NewStore's stock was checked, valid 7 days.
STOCK_CONFIRMED_YAML = f"gates:\n  newstore_stock_confirmed: {today_utc().isoformat()}\n"
STOCK_UNCONFIRMED_YAML = "gates:\n  newstore_stock_confirmed: false\n"


def run_cli(directory: Path, *args: str) -> Result:
    """The real CLI, in-process, on the environment files in `directory`."""
    return CliRunner().invoke(cli, ["--environments-dir", str(directory), *args])


def run_cli_process(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI as a subprocess (logging and signals as for a user), run from the
    directory above `directory`; the secrets' variables come from os.environ (write_env)."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--environments-dir", str(directory), *args],
        capture_output=True,
        text=True,
        cwd=directory.parent,
        env=os.environ.copy(),
        timeout=120,
    )
