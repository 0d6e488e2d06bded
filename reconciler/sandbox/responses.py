"""The sandbox's HTTP answers: JSON and problem bodies, empty answers, injected faults.

NewStore's error bodies come in three field sets (`problem` takes each); a fault rule's answer
(`fault_response`, JSON or an HTML block page), the answer to an unknown path or method
(`no_route`), and `drop`, which cuts the connection for a fault that asks for it. Also the
small body helpers the endpoints share: `json_body`, `parse_body`, `merge_patch`, `mask_key`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request, Response

from reconciler.sandbox.faults import ConnectionDropped, Fault

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


def mask_key(key: str) -> str:
    # Same length as the key, so a masked answer still satisfies the spec's minLength.
    return "*" * max(len(key) - 4, 4) + key[-4:]


def merge_patch(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of `patch` onto `base` (a new value; neither is changed)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def json_body(request: Request) -> Any:
    """The parsed JSON body; ValueError when it is missing or not JSON."""
    return json.loads(request.get_data(cache=True) or b"")


def parse_body(request: Request, check: Callable[[Any], list[str]]) -> tuple[Any, list[str]]:
    try:
        body = json_body(request)
    except ValueError:
        return None, ["The request body is not valid JSON."]
    return body, check(body)


def json_response(body: Any, status: int = 200, *, problem: bool = False) -> Response:
    mimetype = "application/problem+json" if problem else "application/json"
    return Response(json.dumps(body), status=status, mimetype=mimetype)


def empty(status: int) -> Response:
    response = Response(b"", status=status)
    del response.headers["Content-Type"]
    return response


def problem(
    status: int,
    rid: str,
    *,
    error_code: str | None = None,
    message: str | None = None,
    messages: list[str] | None = None,
    data: Any = None,
) -> Response:
    """NewStore's error bodies come in four field sets; each call site uses its spec's."""
    body: dict[str, Any] = {}
    if error_code is not None:
        body["error_code"] = error_code
    if message is not None:
        body["message"] = message
    if messages is not None:
        body["messages"] = messages
    if data is not None:
        body["data"] = data
    body["request_id"] = rid
    return json_response(body, status, problem=True)


_HTML_PAGE = (
    "<html><head><title>{status} {phrase}</title></head>"
    "<body><h1>{status} {phrase}</h1><p>Request blocked.</p></body></html>"
)


def fault_response(fault: Fault, rid: str) -> Response:
    status = fault.status or 500
    phrase = HTTP_STATUS_CODES.get(status, "Error")
    if fault.body == "html":
        page = _HTML_PAGE.format(status=status, phrase=phrase)
        response = Response(page, status=status, mimetype="text/html")
    else:
        message = fault.message or f"{phrase} (injected by the sandbox)."
        response = problem(status, rid, error_code=fault.code(), message=message, data=fault.data)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    return response


def no_route(error: HTTPException, request: Request, rid: str) -> Response:
    status = error.code or 404
    if isinstance(error, MethodNotAllowed):
        response = problem(405, rid, message=f"{request.method} is not allowed on {request.path}.")
        response.headers["Allow"] = ", ".join(sorted(error.valid_methods or ()))
        return response
    return problem(status, rid, message=f"No such endpoint: {request.method} {request.path}.")


def drop(environ: WSGIEnvironment) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    raise ConnectionDropped("the sandbox dropped the connection (fault rule)")
