"""The shipped example environments (environments/), pointed at a sandbox: for the dump round
trip and for the documentation's examples, which talk about these tenants."""

from __future__ import annotations

import shutil
from pathlib import Path

from apply_helpers import seed

from reconciler.config import load_environment
from reconciler.sandbox import SandboxApp

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.stem for p in (ROOT / "environments").glob("[!_]*.yaml"))
# A value for every variable the examples use (`reconciler vars`); api keys of 20+ characters.
EXAMPLE_KEYS = {
    "NEWSTORE_CLIENT_ID": "sandbox",
    "NEWSTORE_CLIENT_SECRET": "sandbox-secret",
    "SANDBOX_CLIENT_ID": "sandbox",
    "SANDBOX_CLIENT_SECRET": "sandbox-secret",
    "ACME_STAGING_ATP_API_KEY": "staging-atp-key-for-the-examples",
    "ACME_PRODUCTION_ATP_API_KEY": "production-atp-key-for-the-examples",
    "ACME_PRODUCTION_ORDER_WEBHOOK_API_KEY": "production-order-key-for-the-examples",
    "LOCAL_ATP_API_KEY": "local-atp-key-for-the-examples-0001",
    "LOCAL_ORDER_WEBHOOK_API_KEY": "local-order-key-for-the-examples-01",
}


def examples_on(base: str, directory: Path) -> Path:
    """Copy environments/ to `directory`, each tenant's API the sandbox at `base`: a
    `connection` after the `tenant:` line (local.yaml has its own, on port 8765)."""
    shutil.copytree(ROOT / "environments", directory)
    for path in directory.glob("[!_]*.yaml"):
        text = path.read_text()
        if "127.0.0.1:8765" in text:
            text = text.replace("http://127.0.0.1:8765", base)
        else:
            tenant = next(line for line in text.splitlines() if line.startswith("tenant: "))
            name = tenant.removeprefix("tenant: ")
            text = text.replace(
                f"{tenant}\n",
                f"{tenant}\nconnection:\n  base_url: {base}/{name}\n"
                f"  token_url: {base}/auth/realms/{name}/protocol/openid-connect/token\n",
            )
        path.write_text(text)
    return directory


def seed_as_written(sandbox: SandboxApp, path: Path, environ: dict[str, str]) -> None:
    """Give the sandbox tenant of the environment file `path` exactly what the file says."""
    env = load_environment(path, environ=environ)
    seed(sandbox, env.tenant, env.desired)
