"""The in-process httpx transport: the sandbox app without a socket."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from reconciler.sandbox.faults import ConnectionDropped

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class InProcessTransport(httpx.WSGITransport):
    """Calls the app (a `SandboxApp`) directly; a dropped connection surfaces as
    httpx.RemoteProtocolError, raised after the app committed the write, exactly as over a
    real socket."""

    def __init__(self, app: WSGIApplication) -> None:
        super().__init__(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from exc
