"""The webhook-probe gate: one sample availability request to the retailer's webhook, as
NewStore would send it; no NewStore token involved."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from reconciler.errors import BlockedError
from reconciler.model import WebhookProbe
from reconciler.newstore.problem import json_body
from reconciler.newstore.transport import UNDECODABLE, describe_transport_error, ssl_context

log = logging.getLogger("reconciler.http")


def probe_webhook(
    url: str,
    api_key: str,
    probe: WebhookProbe,
    timeout: float,
    *,
    transport: httpx.BaseTransport | None = None,
    ca_bundle: str | None = None,
) -> str:
    """POST a sample availability request to the retailer's webhook, as NewStore would.

    Returns a short summary ("200 in 12 ms, 2 availabilities"); raises `BlockedError` unless the
    webhook answers 200 with a valid `availabilities` body within `timeout` seconds. One attempt
    only: it is a health check, and NewStore itself will not retry either.
    """
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        # The environment file checks the url's shape; httpx is stricter about host names.
        raise BlockedError(
            "webhook probe: the webhook url is not one an HTTP client can send to "
            "(check its host name)"
        ) from None
    shown = f"{target.scheme}://{target.netloc.decode('ascii')}{target.path}"
    prefix = f"webhook probe to {shown}"
    body = {
        "products": [{"product_id": p, "external_identifier": p} for p in probe.products],
        "fulfillment_locations": list(probe.fulfillment_locations),
    }
    started = time.monotonic()
    try:
        with httpx.Client(
            timeout=timeout,
            verify=ssl_context(ca_bundle),
            follow_redirects=False,
            transport=transport,
            trust_env=True,
        ) as http:
            response = http.post(url, json=body, headers={"Authorization": api_key})
    except httpx.TimeoutException:
        raise BlockedError(
            f"{prefix}: no answer within {timeout:g} s; NewStore would treat every item as "
            "unavailable"
        ) from None
    except httpx.TransportError as exc:
        raise BlockedError(f"{prefix}: {describe_transport_error(exc)}") from None
    except httpx.DecodingError:
        raise BlockedError(f"{prefix}: {UNDECODABLE}") from None
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
        # Raised before any answer: a host name IDNA cannot encode, a proxy variable httpx
        # cannot use. Only the type is named: the text of such errors may quote a header.
        raise BlockedError(
            f"{prefix}: the request could not be sent ({type(exc).__name__}); check the url's "
            "host name and any proxy variables (HTTPS_PROXY, ALL_PROXY)"
        ) from None
    millis = int((time.monotonic() - started) * 1000)
    log.info("POST %s → %d in %d ms (webhook probe)", shown, response.status_code, millis)
    if millis > timeout * 1000:
        raise BlockedError(
            f"{prefix}: answered after {millis} ms, beyond the {timeout:g} s timeout NewStore uses"
        )
    if response.status_code != 200:
        why = {
            401: " (the webhook refused the api_key)",
            403: " (the webhook refused the api_key)",
        }.get(response.status_code, "")
        if 300 <= response.status_code < 400:
            why = " (a redirect; NewStore does not follow it)"
        raise BlockedError(f"{prefix}: answered {response.status_code}, expected 200{why}")
    problem = _availabilities_problem(json_body(response))
    if problem:
        raise BlockedError(f"{prefix}: invalid answer body: {problem}")
    count = len(json_body(response)["availabilities"])
    return f"200 in {millis} ms, {count} availabilit{'y' if count == 1 else 'ies'}"


def _availabilities_problem(body: Any) -> str:
    """What is wrong with a webhook answer per webhooks-availability_hook.yaml; "" if valid."""
    if not isinstance(body, dict):
        return "not a JSON object"
    items = body.get("availabilities")
    if not isinstance(items, list):
        return "missing the `availabilities` list"
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            return f"availabilities[{index}] is not an object"
        for name in ("product_id", "external_identifier", "fulfillment_location"):
            if not isinstance(item.get(name), str) or not item[name]:
                return f"availabilities[{index}].{name} must be a non-empty string"
        atp = item.get("atp")
        if not isinstance(atp, int) or isinstance(atp, bool):
            return f"availabilities[{index}].atp must be an integer"
    return ""
