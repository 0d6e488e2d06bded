"""The sandbox's sample availability webhook (`/_sandbox/webhook/availabilities`).

What a retailer's webhook answers NewStore, done right, so the webhook probe and the demo have
a healthy target on the same server; what it received is the app's `webhook_requests`.
"""

from __future__ import annotations

import hmac
import zlib
from typing import Any

from werkzeug.wrappers import Request, Response

from reconciler.sandbox import validate
from reconciler.sandbox.responses import json_response, parse_body


def sample_webhook(request: Request, rid: str, api_key: str) -> Response:
    """A healthy availability webhook: checks the Authorization header against `api_key` and the
    body against the spec, then answers stable stock levels for every product and location."""
    given = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(given, api_key.encode()):
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
    availabilities = [
        {
            "product_id": product["product_id"],
            "external_identifier": product["external_identifier"],
            "fulfillment_location": location,
            # Stable, varied stock levels, so the same probe always sees the same answer.
            "atp": zlib.crc32(f"{product['product_id']}@{location}".encode()) % 25,
        }
        for product in payload["products"]
        for location in payload["fulfillment_locations"]
    ]
    return json_response({"availabilities": availabilities})
