"""The generic webhook backend: the notification as a JSON document, signed.

    {"format_version": 1, "event": "drift.changed", "checked_at": ..., "status": "unhealthy",
     "summary": {...}, "changes": [{"name", "tenant", "status", "previous_status",
     "changed", "environment": <the drift JSON of that environment>}], ...}

The environments are the drift report's own JSON (`env_drift_to_dict`, masked), so a receiver
reads the same fields as `drift --format json` (schemas/notification.schema.json). With a
secret (RECONCILER_NOTIFY_SECRET), `X-Reconciler-Signature: sha256=<hex>` is the HMAC-SHA256
of the exact body bytes: the receiver recomputes it and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Final

from reconciler.core.drift import change_to_dict, drift_to_dict, env_drift_to_dict
from reconciler.notify.message import Message, Request

FORMAT_VERSION: Final = 1
SIGNATURE_HEADER: Final = "X-Reconciler-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def notification_to_dict(message: Message) -> dict[str, Any]:
    report = message.report
    doc = drift_to_dict(report)
    known = report.history is not None and report.history.known
    return {
        "format_version": FORMAT_VERSION,
        "event": "drift.every_run" if message.every_run else "drift.changed",
        "checked_at": doc["checked_at"],
        "tool_version": doc["tool_version"],
        "config_commit": doc["config_commit"],
        "run_url": doc["run_url"],
        "status": doc["status"],
        "summary": doc["summary"],
        "last_success_at": doc["history"]["last_success_at"] if "history" in doc else None,
        "changes": [
            {
                **(
                    change_to_dict(change)
                    if change is not None
                    else {
                        "name": env.name,
                        "tenant": env.tenant,
                        "status": str(env.status),
                        # Unchanged (listed for `every_run`): as before, where a state says.
                        "previous_status": str(env.status) if known else None,
                    }
                ),
                "changed": change is not None,
                "environment": env_drift_to_dict(env),
            }
            for env, change in message.entries
        ],
    }


class WebhookBackend:
    kind = "webhook"

    def request(self, message: Message, *, secret: str | None) -> Request:
        body = (json.dumps(notification_to_dict(message), ensure_ascii=False) + "\n").encode()
        headers = {"X-Reconciler-Event": "drift"}
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret)
        return Request(body, headers)
