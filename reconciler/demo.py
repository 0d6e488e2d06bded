"""`make demo`: the whole story against a local sandbox, in a few seconds.

Starts the sandbox on 127.0.0.1:8765 (`--port`, or RECONCILER_DEMO_PORT; 0 picks a free port),
copies the example `environments/local.yaml` into a temporary directory (your files are never
changed), and runs the real CLI there as a subprocess for each step: validate, plan and apply
the forward migration to the external OMS, then the pull request back to NewStore-managed ATP,
blocked until stock is confirmed, applied once it is. Last, the sandbox's write history shows
every state the tenant went through, each judged against the safety rules.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.clock import today_utc
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.model import ABSENT, Value
from reconciler.newstore.settings.associate_app import store_of
from reconciler.rules import RULES
from reconciler.sandbox import SandboxApp, SandboxConfig, running
from reconciler.sandbox.values import broken_rules, state_to_values

TENANT = "acme-local"
ENV = "local"
EXAMPLE_URL = "http://127.0.0.1:8765"
PORT_VAR = "RECONCILER_DEMO_PORT"

BACK_TO_NEWSTORE = """\
external_oms:
  enabled: false
availability_webhook: absent   # NewStore computes availability from its own stock again
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
  stores:
    STORE-PILOT: absent        # the pilot store follows the global document again
"""
STOCK_CONFIRMED = """
gates:
  # Ops re-imported stock into NewStore and checked it today: the human confirmation no API
  # gives, dated so that it expires (gates.stock_confirmation_valid_days, 7 by default).
  newstore_stock_confirmed: {today}
"""


class DemoFailed(ReconcilerError):
    """A step of the story did not end as it should."""


def _banner(text: str) -> None:
    line = "=" * 78
    print(f"\n{line}\n{text}\n{line}", flush=True)


def _examples() -> Path:
    """The directory holding the example environment files."""
    for directory in (Path.cwd() / "environments", Path(__file__).parents[1] / "environments"):
        if (directory / f"{ENV}.yaml").is_file() and (directory / "_base.yaml").is_file():
            return directory
    raise ConfigError(
        f"cannot find the example environments/{ENV}.yaml and environments/_base.yaml; "
        "run the demo from the newstore-reconciler checkout."
    )


class _Story:
    def __init__(self, workdir: Path, config: SandboxConfig) -> None:
        self.workdir = workdir
        self.env_file = workdir / "environments" / f"{ENV}.yaml"
        package_root = str(Path(__file__).resolve().parents[1])
        self.child_env = {
            **os.environ,
            # The sandbox's public demo credentials, and the key its sample webhook expects.
            "SANDBOX_CLIENT_ID": config.client_id,
            "SANDBOX_CLIENT_SECRET": config.client_secret,
            "LOCAL_ATP_API_KEY": config.webhook_api_key,
            # The sandbox does not call the order webhook; any key of the right length.
            "LOCAL_ORDER_WEBHOOK_API_KEY": "local-order-webhook-key-0001",
            "PYTHONPATH": os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p
            ),
        }

    def run(self, *args: str, expect: int) -> None:
        print(f"$ reconciler {' '.join(args)}", flush=True)
        # The demo's own stdout/stderr, so output stays in order on a terminal and in a pipe.
        code = subprocess.call(
            [sys.executable, "-m", "reconciler", *args],
            cwd=self.workdir,
            env=self.child_env,
            stdin=subprocess.DEVNULL,
        )
        print(f"(exit code {code})", flush=True)
        if code != expect:
            raise DemoFailed(f"`reconciler {' '.join(args)}` exited {code}, expected {expect}.")

    def edit(self, new_text: str, what: str) -> None:
        old_text = self.env_file.read_text(encoding="utf-8")
        name = f"environments/{ENV}.yaml"
        diff = difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            f"a/{name}",
            f"b/{name}",
            # One line of context: the lines above the settings talk about the credentials.
            n=1,
        )
        print(f"The pull request a reviewer sees ({what}):\n", flush=True)
        print("".join(diff), flush=True)
        self.env_file.write_text(new_text, encoding="utf-8")


def _back_to_newstore(text: str) -> str:
    start = text.find("\nexternal_oms:")
    if start < 0:
        raise ConfigError(f"environments/{ENV}.yaml has no top-level external_oms key to edit")
    return text[: start + 1] + BACK_TO_NEWSTORE


def _shown(value: Value, field: str) -> str:
    if value is ABSENT:
        return "absent"
    return "on" if value.get(field) else "off"


def _ui(value: Value) -> str:
    """The global flag, then each store document's (`STORE-PILOT:on`)."""
    if value is ABSENT:
        return "absent"
    parts = [_shown(value, "use_new_om_ui")]
    for name, on in value.items():
        store = store_of(name)
        if store is not None:
            parts.append(f"{store}:{'on' if on else 'off'}")
    return " ".join(parts)


def _row(seq: str, write: str, state: Mapping[str, Any]) -> tuple[str, ...]:
    values = state_to_values(state)
    broken = broken_rules(state)
    return (
        seq,
        write,
        _shown(values["external_oms"], "enabled"),
        "absent" if values["availability_webhook"] is ABSENT else "configured",
        _shown(values["external_atp"], "enabled"),
        "absent" if values["external_order_webhook"] is ABSENT else "configured",
        _ui(values["associate_app"]),
        "BROKEN: " + ", ".join(f"rule {r.number}" for r in broken)
        if broken
        else f"all {len(RULES)} hold",
    )


def history_table(
    start: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
) -> tuple[str, bool]:
    """Every state the tenant went through (the start, then one row per write) judged against
    the safety rules; and whether every one of them kept every rule."""
    header = (
        "#",
        "write",
        "external_oms",
        "webhook",
        "external_atp",
        "order_webhook",
        "use_new_om_ui",
        "rules",
    )
    rows: list[tuple[str, ...]] = [header]
    rows.append(_row("0", "(start)", start))
    for entry in history:
        path = entry["path"].removeprefix(f"/{TENANT}")
        write = f"{entry['method']} {path} → {entry['status']}"
        rows.append(_row(str(entry["seq"]), write, entry["state_after"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    all_safe = not broken_rules(start) and all(not broken_rules(h["state_after"]) for h in history)
    return "\n".join(line.rstrip() for line in lines), all_safe


def story(app: SandboxApp, url: str, workdir: Path) -> None:
    examples = _examples()
    environments = workdir / "environments"
    environments.mkdir()
    shutil.copy(examples / "_base.yaml", environments / "_base.yaml")
    local = (examples / f"{ENV}.yaml").read_text(encoding="utf-8")
    (environments / f"{ENV}.yaml").write_text(local.replace(EXAMPLE_URL, url), encoding="utf-8")
    demo = _Story(workdir, app.config)
    print(f"NewStore sandbox running at {url} (tenant {TENANT}).")
    print(f"Working on a copy of {examples / (ENV + '.yaml')} in {workdir}.")
    start = app.state(TENANT)

    _banner("1. validate: schema, references and safety of the desired state (offline)")
    demo.run("validate", ENV, expect=0)
    _banner(
        "2. plan the forward migration: external OMS on, webhook PUT,\n"
        "   external ATP on (after a webhook probe), order webhook POST,\n"
        "   new OM UI on (globally and in a pilot store's own document)"
    )
    demo.run("plan", ENV, expect=0)
    _banner("3. apply it: each step re-read, rule-checked, written, read back; then re-planned")
    demo.run("apply", ENV, "--auto-approve", expect=0)
    _banner("4. plan again: converged, nothing to do")
    demo.run("plan", ENV, "--detailed-exitcode", expect=0)

    _banner("5. back to NewStore-managed ATP: the pull request, without stock confirmation")
    demo.edit(_back_to_newstore(demo.env_file.read_text(encoding="utf-8")), "go back to NewStore")
    demo.run("plan", ENV, expect=3)
    today = today_utc().isoformat()
    _banner(f"6. ops confirm NewStore holds stock again: newstore_stock_confirmed: {today}")
    confirmed = STOCK_CONFIRMED.format(today=today)
    demo.edit(demo.env_file.read_text(encoding="utf-8") + confirmed, "confirm stock")
    demo.run("plan", ENV, "--detailed-exitcode", expect=2)
    _banner(
        "7. apply: external ATP off, webhook DELETE, new OM UI off (the pilot store's\n"
        "   document deleted), external OMS off"
    )
    demo.run("apply", ENV, "--auto-approve", expect=0)
    _banner("8. plan again: converged")
    demo.run("plan", ENV, "--detailed-exitcode", expect=0)

    _banner(f"9. every state tenant {TENANT} went through (the sandbox's write history)")
    table, all_safe = history_table(start, app.history(TENANT))
    print(table)
    if not all_safe:
        raise DemoFailed("a state in the write history breaks a safety rule (see above).")
    print("\nEvery intermediate state kept every safety rule.", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.demo", description=__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get(PORT_VAR, "8765")),
        help=f"sandbox port (default: ${PORT_VAR} or 8765; 0: any free port)",
    )
    args = parser.parse_args(argv)
    app = SandboxApp(SandboxConfig())
    try:
        with (
            running(app, port=args.port) as url,
            tempfile.TemporaryDirectory(prefix="reconciler-demo-") as tmp,
        ):
            story(app, url, Path(tmp))
    except ReconcilerError as exc:
        hint = f" (the demo takes --port N, or {PORT_VAR})" if isinstance(exc, ConfigError) else ""
        print(f"Error: {exc}{hint}", file=sys.stderr)
        return 1
    print("\nDemo complete.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
