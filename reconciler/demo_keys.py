"""The local sandbox's public demo credentials and keys, and where its sample webhook listens.

They are no secrets: the sandbox prints them, and anyone may use them. The sandbox starts with
them (`reconciler sandbox`), and a rehearsal environment (`rehearsal: true`, what `reconciler
init` writes under rehearsal/) sends them instead of whatever its extended files name, so that
rehearsing a change never hands a real secret to the sandbox.
"""

from __future__ import annotations

from typing import Final

DEMO_CLIENT_ID: Final = "sandbox"
DEMO_CLIENT_SECRET: Final = "sandbox-secret"
DEMO_WEBHOOK_API_KEY: Final = "sandbox-webhook-api-key-0001"
"""The key the sandbox's sample availability webhook expects (unless started with another)."""
DEMO_ORDER_WEBHOOK_API_KEY: Final = "sandbox-order-webhook-api-key-0001"
"""What a rehearsal sets as the external order webhook's key (the sandbox never calls it)."""
SAMPLE_WEBHOOK_PATH: Final = "/_sandbox/webhook/availabilities"
