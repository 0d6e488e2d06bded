"""Reading NewStore's answers: request ids, problem+json details, Retry-After, secret scrubbing.

Secrets never leave the adapter in text: errors and log lines are built from the method, path,
status and NewStore's own message/request id only, with any known secret scrubbed out of the
latter.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

import httpx

from reconciler.model import SENSITIVE

MIN_SCRUBBED_SECRET = 8


def request_id_of(response: httpx.Response) -> str | None:
    """NewStore's request id: the X-Request-ID header, else `request_id` in the JSON body."""
    header: str | None = response.headers.get("x-request-id")
    if header:
        return header
    body = json_body(response)
    if isinstance(body, dict) and isinstance(body.get("request_id"), str):
        return str(body["request_id"])
    return None


def json_body(response: httpx.Response) -> Any:
    """The parsed JSON body, or None when there is none or it is not JSON."""
    if not response.content:
        return None
    try:
        return jsonlib.loads(response.content)
    except ValueError:
        return None


DATA_SHOWN_CHARS = 200
"""How much of NewStore's error `data` a message quotes (after every secret is scrubbed)."""


def problem_detail(response: httpx.Response, secrets: Collection[str] = ()) -> str:
    """NewStore's own explanation, from any of its four problem+json shapes, with `secrets`
    scrubbed out before anything is cut: a cut secret would leak as its prefix, and one
    scrubbed only as written would leak JSON-escaped (`data` is quoted as JSON)."""
    body = json_body(response)
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    message = body.get("message")
    if isinstance(message, str) and message:
        parts.append(message)
    messages = body.get("messages")
    if isinstance(messages, list):
        parts.extend(str(m) for m in messages if m)
    # The error message adds its own full stop after NewStore's words.
    parts = [scrub(p, secrets).rstrip(". ") for p in parts]
    code = body.get("error_code")
    if isinstance(code, str) and code:
        parts = [f"{p} ({code})" for p in parts] if parts else [code]
    data = body.get("data")
    if data:
        quoted = scrub(jsonlib.dumps(data, sort_keys=True, ensure_ascii=False), secrets)
        parts.append("data: " + shorten(quoted, DATA_SHOWN_CHARS))
    return "; ".join(parts)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def secret_forms(secret: str) -> set[str]:
    """The forms a secret takes in text NewStore sends back: as written, JSON-escaped (once and
    twice: a JSON string quoted inside another), URL-encoded (a query, a form body)."""
    escaped = jsonlib.dumps(secret, ensure_ascii=False)[1:-1]
    forms = {
        secret,
        escaped,
        jsonlib.dumps(escaped, ensure_ascii=False)[1:-1],
        jsonlib.dumps(secret)[1:-1],  # \uXXXX escapes of non-ASCII characters
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        quote(secret),
    }
    return {form for form in forms if form}


def scrub(text: str, secrets: Collection[str]) -> str:
    """`text` with every form of every secret (`secret_forms`) replaced by "(sensitive)";
    longest first, so that no form is left half replaced by a shorter one."""
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, SENSITIVE)
    return text


def secret_values(body: Any, keys: Collection[str]) -> Iterator[str]:
    """String values under the secret-named `keys` anywhere in a request or response body."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from secret_values(value, keys)
    elif isinstance(body, list):
        for item in body:
            yield from secret_values(item, keys)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
