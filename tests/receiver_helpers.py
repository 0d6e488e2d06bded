"""A real HTTP receiver on 127.0.0.1 for the notification and Pushgateway tests: it records
every request and answers from a script (e.g. 503, then 429, then 200)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str) -> bool:
        """Checks `X-Reconciler-Signature` as a receiver must: HMAC-SHA256 of the raw body,
        compared in constant time."""
        header = self.headers.get("x-reconciler-signature", "")
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(header, expected)


@dataclass
class Receiver:
    url: str  # http://127.0.0.1:<port>
    requests: list[Received] = field(default_factory=list)
    # Status codes to answer, in order; once used up, `then` for every further request.
    script: list[int] = field(default_factory=list)
    then: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # sent with every answer

    def answer(self) -> int:
        return self.script.pop(0) if self.script else self.then


@contextmanager
def receiver(path: str = "/hooks/T0/secret-path-abc123") -> Iterator[Receiver]:
    """A receiver serving until the block ends; `url` + `path` is the webhook URL."""
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            rec = box["receiver"]
            rec.requests.append(
                Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            status = rec.answer()
            self.send_response(status)
            for key, value in rec.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows what the assertions say

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        box["receiver"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
        yield box["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
