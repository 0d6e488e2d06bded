"""What `reconciler sandbox` prints once it listens: where it is and how to point an
environment at it."""

from __future__ import annotations

from pathlib import Path

from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY, SandboxConfig


def banner(url: str, config: SandboxConfig, state_file: Path | None) -> str:
    # The built-in key is public (a demo value, like the client secret): shown, so that
    # environments can set it for the probe. A key of the user's own is never echoed.
    shown_key = (
        f"{config.webhook_api_key}   (the built-in demo key; --webhook-api-key sets another)"
        if config.webhook_api_key == DEFAULT_WEBHOOK_API_KEY
        else "the --webhook-api-key value (not shown)"
    )
    tenant = "acme-staging"
    return (
        f"NewStore sandbox listening on {url}\n"
        f"  client id:      {config.client_id}\n"
        f"  client secret:  {config.client_secret}   (the sandbox's public demo secret)\n"
        f"  sample webhook: {url}/_sandbox/webhook/availabilities\n"
        f"  webhook key:    {shown_key}\n"
        f"  admin:          {url}/_sandbox/tenants/<tenant>/state, .../history "
        f"({'keys in clear' if config.admin_shows_keys else 'keys masked'})\n"
        f"  state kept:     {state_file if state_file else 'in memory'}\n"
        "\n"
        "Point an environment at it (any tenant name works):\n"
        f"  tenant: {tenant}\n"
        "  connection:\n"
        f"    base_url: {url}/{tenant}\n"
        f"    token_url: {url}/auth/realms/{tenant}/protocol/openid-connect/token\n"
        f"    client_id: {config.client_id}\n"
        "    client_secret: ${NEWSTORE_CLIENT_SECRET}"
        f"   # export NEWSTORE_CLIENT_SECRET={config.client_secret}\n"
        "\n"
        "Press Ctrl-C to stop."
    )
