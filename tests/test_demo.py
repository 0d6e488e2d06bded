"""`make demo` (python -m reconciler.demo): the whole story runs, every state stays safe, no
secret is printed, and a busy port is a one-line error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from reconciler.clock import today_utc
from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY


def _demo(cwd: Path, *args: str, port_var: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_DEMO_PORT"}
    if port_var is not None:
        env["RECONCILER_DEMO_PORT"] = port_var
    return subprocess.run(
        [sys.executable, "-m", "reconciler.demo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,  # not the checkout: the demo finds the example files itself
        env=env,
        timeout=120,
    )


def test_the_demo_tells_the_whole_story(tmp_path: Path) -> None:
    result = _demo(tmp_path, "--port", "0")

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "1 environment valid: local" in out
    assert "[local] 3/5 external_atp: gate webhook_probe passed" in out
    # Forward: the order webhook is registered before the UI flag (rule 4).
    assert "[local] 4/5 external_order_webhook: create … applied" in out
    assert out.count("Apply complete: 5 steps in 1 environment, all converged.") == 1
    assert out.count("Apply complete: 4 steps in 1 environment, all converged.") == 1
    blocked = out.index("local: 4 to change, blocked")
    assert out.index("(exit code 3)", blocked) > blocked
    assert "+availability_webhook: absent" in out
    assert f"+  newstore_stock_confirmed: {today_utc()}" in out
    assert "[local] 1/4 external_atp: update … applied" in out
    assert "[local] 2/4 availability_webhook: delete … applied" in out
    table = out[out.index("9. every state") :]
    assert table.count("all 4 hold") == 12, "the start and eleven writes, each safe"
    # The pilot store's document is created after the global flag, and deleted before the
    # external OMS goes off.
    assert (
        table.index("PUT /api/v1/associate-app/config/STORE-PILOT")
        < table.index("DELETE /api/v1/associate-app/config/STORE-PILOT")
        < table.rindex("POST /v0/config/sales_order/external_oms")
    )
    assert "BROKEN" not in table
    assert "Every intermediate state kept every safety rule." in out
    assert out.rstrip().endswith("Demo complete.")
    for secret in (DEFAULT_WEBHOOK_API_KEY, "sandbox-secret"):
        assert secret not in out + result.stderr
    assert list(tmp_path.iterdir()) == [], "the demo works in its own temporary directory"


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = _demo(tmp_path, port_var=str(port))

    assert result.returncode == 1
    assert f"cannot listen on http://127.0.0.1:{port}" in result.stderr
    assert "--port N, or RECONCILER_DEMO_PORT" in result.stderr
    assert "Traceback" not in result.stderr
