"""Faults on demand: scripted rules (`POST /_sandbox/faults`) and the random `--fault-rate`.

A rule matches on method and full request path (fnmatch glob); the first matching rule fires
and its `times` counts down (`"times": null` keeps it forever). A rule with a `status` answers
that status instead of handling the request; without one the request is handled normally and
only `latency_ms` / `drop_connection` apply. `drop_connection` closes the connection without an
answer: after the write is committed when there is no `status`, before it when there is one.

The random faults are drawn from one seeded `random.Random` in request order (the caller holds
the sandbox lock), so a given seed and request sequence always fails the same requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from fnmatch import fnmatchcase
from typing import Any, TypeGuard

from reconciler.errors import ConfigError


class ConnectionDropped(ConnectionAbortedError):
    """Raised out of the WSGI call to drop the connection without answering.

    werkzeug's server treats any ConnectionError as the client hanging up (no traceback); the
    in-process transport turns it into `httpx.RemoteProtocolError`, what a real drop gives.
    """


ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "concurrent_update_on_tenant_setting",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
_RULE_KEYS = (
    "method",
    "path",
    "status",
    "times",
    "retry_after",
    "latency_ms",
    "drop_connection",
    "body",
    "error_code",
    "message",
    "data",
)


@dataclass
class Fault:
    """What happens to one request."""

    status: int | None = None
    retry_after: int | str | None = None
    latency_ms: int = 0
    drop_connection: bool = False
    body: str = "json"  # "json": problem+json; "html": a non-JSON page (NewStore's IP block)
    error_code: str | None = None
    message: str | None = None
    # NewStore's `{message, data}` error shape: any JSON, answered as the body's `data`.
    data: Any = None

    def code(self) -> str:
        return self.error_code or ERROR_CODES.get(self.status or 0, "error")


@dataclass
class FaultRule:
    path: str
    method: str = "*"
    times: int | None = 1
    fault: Fault = field(default_factory=Fault)

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and fnmatchcase(path, self.path)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "path": self.path, "times": self.times}
        f = self.fault
        out.update(latency_ms=f.latency_ms, drop_connection=f.drop_connection, body=f.body)
        for key in ("status", "retry_after", "error_code", "message", "data"):
            if getattr(f, key) is not None:
                out[key] = getattr(f, key)
        return out

    @classmethod
    def parse(cls, raw: Any, index: int = 0) -> FaultRule:
        where = f"rules[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be an object")
        problems = [f"unknown key {k!r}" for k in sorted(set(raw) - set(_RULE_KEYS))]
        path = raw.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append("path is required: the full request path (a glob), starting with /")
        method = raw.get("method", "*")
        if not isinstance(method, str) or not method:
            problems.append('method must be an HTTP method or "*"')
        status = raw.get("status")
        if status is not None and not (_is_int(status) and 100 <= status <= 599):
            problems.append("status must be an HTTP status code")
        times = raw.get("times", 1)
        if times is not None and not (_is_int(times) and times >= 1):
            problems.append("times must be a positive integer, or null for no limit")
        retry_after = raw.get("retry_after")
        if retry_after is not None and not _valid_retry_after(retry_after):
            problems.append("retry_after must be seconds (integer >= 0) or an HTTP-date string")
        latency = raw.get("latency_ms", 0)
        if not (_is_int(latency) and latency >= 0):
            problems.append("latency_ms must be an integer >= 0")
        drop = raw.get("drop_connection", False)
        if not isinstance(drop, bool):
            problems.append("drop_connection must be true or false")
        body = raw.get("body", "json")
        if body not in ("json", "html"):
            problems.append('body must be "json" or "html"')
        for key in ("error_code", "message"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                problems.append(f"{key} must be a string")
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))
        fault = Fault(
            status=status,
            retry_after=retry_after,
            latency_ms=latency,
            drop_connection=drop,
            body=body,
            error_code=raw.get("error_code"),
            message=raw.get("message"),
            data=raw.get("data"),
        )
        return cls(path=str(path), method=method.upper(), times=times, fault=fault)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_retry_after(value: Any) -> bool:
    if _is_int(value):
        return bool(value >= 0)
    if isinstance(value, str):
        try:
            parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return False
        return True
    return False


def parse_rules(body: Any) -> list[FaultRule]:
    """`{"rules": [...]}` (a bare list is accepted too) → rules, or ConfigError naming each."""
    raw = body.get("rules") if isinstance(body, dict) else body
    if not isinstance(raw, list):
        raise ConfigError('expected {"rules": [...]}')
    return [FaultRule.parse(rule, i) for i, rule in enumerate(raw)]


class FaultBook:
    """The scripted rules and the random-fault generator. Not locked: the app's lock guards it."""

    def __init__(self, rate: float = 0.0, seed: int | None = None) -> None:
        self.rate = rate
        self._random = random.Random(seed)
        self._rules: list[FaultRule] = []

    def set(self, rules: list[FaultRule]) -> None:
        self._rules = list(rules)

    def clear(self) -> None:
        self._rules = []

    def to_json(self) -> list[dict[str, Any]]:
        return [rule.to_json() for rule in self._rules]

    def pick(self, method: str, path: str, *, random_eligible: bool) -> Fault | None:
        for rule in self._rules:
            if rule.matches(method, path):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                return rule.fault
        if random_eligible and self.rate > 0 and self._random.random() < self.rate:
            status = self._random.choice((429, 503))
            return Fault(status=status, retry_after=self._random.choice((0, 1)))
        return None
