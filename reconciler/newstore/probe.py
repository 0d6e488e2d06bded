"""The webhook-probe gate: one sample availability request to the retailer's webhook, as
NewStore would send it; no NewStore token involved."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

import httpx

from reconciler.errors import BlockedError
from reconciler.model import WebhookProbe
from reconciler.newstore.problem import json_body, scrub
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
    verdict = judge_answer(json_body(response), probe, [api_key])
    if verdict.problem:
        # The webhook wrote these words: it could quote the key it was sent.
        raise BlockedError(f"{prefix}: {scrub(verdict.problem, [api_key])}")
    count = verdict.entries
    summary = f"200 in {millis} ms, {count} availabilit{'y' if count == 1 else 'ies'}"
    if probe.min_available is not None:
        summary += f", {verdict.in_stock} of {verdict.asked} requested pairs in stock"
    if verdict.left_out:
        shown = ", ".join(verdict.left_out[:_LISTED])
        more = len(verdict.left_out) - _LISTED
        shown += f" and {more} more" if more > 0 else ""
        summary += f"; left out (NewStore reads them as unavailable): {shown}"
    return scrub(summary, [api_key])


_LISTED = 10  # pairs named in a message; the rest are counted
_SHOWN_CHARS = 60  # of a value the webhook sent


def shown(value: Any, secrets: Collection[str] = ()) -> str:
    """A value the webhook sent, for a message: scrubbed of `secrets` first, then cut (cut
    first, a key split by the cut would no longer be found, and its first part would show)."""
    text = scrub(value if isinstance(value, str) else json.dumps(value), secrets)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


@dataclass(frozen=True)
class Verdict:
    """What a webhook's answer proves: `problem` why it fails the probe ("" when it passes),
    how many `entries` it had, the requested (product, location) pairs it `left_out`
    ("1000061@US01"; NewStore reads them as unavailable), and how many of the `asked` pairs
    answered `atp > 0` (`in_stock`)."""

    problem: str = ""
    entries: int = 0
    left_out: tuple[str, ...] = ()
    asked: int = 0
    in_stock: int = 0


def judge_answer(body: Any, probe: WebhookProbe, secrets: Collection[str] = ()) -> Verdict:
    """Judge a webhook's answer to the probe's request: valid per
    webhooks-availability_hook.yaml, and about what was asked. Every entry must name a
    requested product (product_id and external_identifier as sent) at a requested location,
    with an integer `atp` >= 0; every requested product must get at least one entry. A pair
    left out alone is not a failure (NewStore's own example leaves one out); fewer than
    `probe.min_available` pairs in stock is. Values the webhook sent are quoted scrubbed of
    `secrets` (the key it was sent)."""

    def _shown(value: Any) -> str:
        return shown(value, secrets)

    if not isinstance(body, dict):
        return Verdict("invalid answer body: not a JSON object")
    items = body.get("availabilities")
    if not isinstance(items, list):
        return Verdict("invalid answer body: missing the `availabilities` list")
    products, locations = set(probe.products), set(probe.fulfillment_locations)
    answered: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        where = f"availabilities[{index}]"
        if not isinstance(item, dict):
            return Verdict(f"invalid answer body: {where} is not an object")
        for name in ("product_id", "external_identifier", "fulfillment_location"):
            if not isinstance(item.get(name), str) or not item[name]:
                return Verdict(f"invalid answer body: {where}.{name} must be a non-empty string")
        atp = item.get("atp")
        if not isinstance(atp, int) or isinstance(atp, bool) or atp < 0:
            return Verdict(
                f"invalid answer body: {where}.atp must be an integer >= 0, got {_shown(atp)}"
            )
        product, location = item["product_id"], item["fulfillment_location"]
        if product not in products:
            return Verdict(
                f"entry {index} names product {_shown(product)}, which was not asked about: "
                "the webhook does not answer for this retailer's products"
            )
        if item["external_identifier"] != product:
            return Verdict(
                f"{where} for product {_shown(product)} has external_identifier "
                f"{_shown(item['external_identifier'])}, not {_shown(product)} as asked"
            )
        if location not in locations:
            return Verdict(
                f"entry {index} names location {_shown(location)}, which was not asked about"
            )
        answered[(product, location)] = max(atp, answered.get((product, location), 0))
    missing = [p for p in probe.products if not any((p, loc) in answered for loc in locations)]
    if missing:
        at = ", ".join(probe.fulfillment_locations)
        listed = ", ".join(_shown(p) for p in missing[:_LISTED])
        return Verdict(
            f"product {listed} got no entry at {at}: an answer that leaves out every "
            "requested location of a product proves nothing about it"
        )
    pairs = [(p, loc) for p in probe.products for loc in probe.fulfillment_locations]
    in_stock = sum(answered.get(pair, 0) > 0 for pair in pairs)
    verdict = Verdict(
        entries=len(items),
        left_out=tuple(f"{p}@{loc}" for p, loc in pairs if (p, loc) not in answered),
        asked=len(pairs),
        in_stock=in_stock,
    )
    wanted = probe.min_available
    if wanted is not None and in_stock < wanted:
        return replace(
            verdict,
            problem=f"{in_stock} of {len(pairs)} requested pairs have atp > 0; "
            f"gates.webhook_probe.min_available is {wanted}",
        )
    return verdict
