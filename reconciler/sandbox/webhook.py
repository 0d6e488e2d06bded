"""The sandbox's sample availability webhook (`/_sandbox/webhook/availabilities`).

What a retailer's webhook answers NewStore, done right, so the webhook probe and the demo have
a healthy target on the same server; what it received is the app's `webhook_requests`.

It can also play a webhook that lies, for the tests of the probe (`WebhookBehaviour`, set with
`SandboxApp.set_webhook_behaviour` or `PUT /_sandbox/webhook/behaviour`): which answer it gives
(`ANSWERS`, a table from name to the availabilities it returns for a request), how slowly, and
which key it accepts.
"""

from __future__ import annotations

import hmac
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

from werkzeug.wrappers import Request, Response

from reconciler.errors import ConfigError
from reconciler.sandbox import validate
from reconciler.sandbox.responses import json_response, parse_body

Availabilities: TypeAlias = list[dict[str, Any]]


def _atp(product: str, location: str) -> int:
    # Stable, varied stock levels, so the same probe always sees the same answer.
    return zlib.crc32(f"{product}@{location}".encode()) % 25


def _healthy(products: list[dict[str, Any]], locations: list[str]) -> Availabilities:
    return [
        {
            "product_id": product["product_id"],
            "external_identifier": product["external_identifier"],
            "fulfillment_location": location,
            "atp": _atp(product["product_id"], location),
        }
        for product in products
        for location in locations
    ]


def _foreign(products: list[dict[str, Any]], locations: list[str]) -> Availabilities:
    # Answers for products and locations nobody asked about: a webhook of another retailer.
    return [
        {
            "product_id": f"other-{product['product_id']}",
            "external_identifier": f"other-{product['external_identifier']}",
            "fulfillment_location": f"other-{location}",
            "atp": 7,
        }
        for product in products
        for location in locations
    ]


def _with(field: str, value: Any) -> Callable[[list[dict[str, Any]], list[str]], Availabilities]:
    def answer(products: list[dict[str, Any]], locations: list[str]) -> Availabilities:
        return [{**item, field: value} for item in _healthy(products, locations)]

    return answer


def _omit_first(products: list[dict[str, Any]], locations: list[str]) -> Availabilities:
    # NewStore's own spec example leaves a pair out: it reads as unavailable.
    return _healthy(products, locations)[1:]


def _sold_out(products: list[dict[str, Any]], locations: list[str]) -> Availabilities:
    return [{**item, "atp": 0} for item in _healthy(products, locations)]


ANSWERS: dict[str, Callable[[list[dict[str, Any]], list[str]], Availabilities]] = {
    "healthy": _healthy,
    "empty": lambda products, locations: [],
    "foreign": _foreign,
    "negative_atp": _with("atp", -3),
    "fractional_atp": _with("atp", 2.5),
    "wrong_identifier": _with("external_identifier", "sku-nobody-asked-for"),
    "omit_first": _omit_first,
    "sold_out": _sold_out,
}
"""What the webhook answers, by name: the `availabilities` list for the products and locations
of a request."""


@dataclass(frozen=True)
class WebhookBehaviour:
    """How the sample webhook behaves: `answer` (a name in ANSWERS), `latency_ms` (slept before
    answering), `api_key` (the key it accepts; None: the sandbox's `--webhook-api-key`)."""

    answer: str = "healthy"
    latency_ms: int = 0
    api_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, raw: Any) -> WebhookBehaviour:
        if not isinstance(raw, dict):
            raise ConfigError("webhook behaviour: expected a JSON object")
        problems = [f"unknown key {k!r}" for k in sorted(set(raw) - set(asdict(cls())))]
        answer = raw.get("answer", "healthy")
        if answer not in ANSWERS:
            problems.append(f"answer must be one of {sorted(ANSWERS)}")
        latency = raw.get("latency_ms", 0)
        if not (isinstance(latency, int) and not isinstance(latency, bool) and latency >= 0):
            problems.append("latency_ms must be an integer >= 0")
        key = raw.get("api_key")
        if key is not None and not (isinstance(key, str) and key):
            problems.append("api_key must be a non-empty string or null")
        if problems:
            raise ConfigError("webhook behaviour: " + "; ".join(problems))
        return cls(answer=answer, latency_ms=latency, api_key=key)


def sample_webhook(
    request: Request, rid: str, api_key: str, behaviour: WebhookBehaviour | None = None
) -> Response:
    """The availability webhook: checks the Authorization header against the key it accepts
    and the body against the spec, then answers as `behaviour` says (healthy by default:
    stable stock levels for every product and location asked about)."""
    behaviour = behaviour or WebhookBehaviour()
    expected = behaviour.api_key or api_key
    given = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(given, expected.encode()):
        body: dict[str, Any] = {
            "message": "The Authorization header does not hold the webhook's api key.",
            "data": {},
            "request_id": rid,
        }
        return json_response(body, 401, problem=True)
    payload, problems = parse_body(request, validate.check_availability_request)
    if problems:
        body = {"message": "Invalid request body.", "data": {"errors": problems}}
        return json_response({**body, "request_id": rid}, 400, problem=True)
    answer = ANSWERS[behaviour.answer]
    return json_response(
        {"availabilities": answer(payload["products"], payload["fulfillment_locations"])}
    )
