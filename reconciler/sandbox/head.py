"""Reading a request's head (the request line and the header fields) for the sandbox's server.

http.server reads the header lines itself, then hands them to `email.parser` to become an
`http.client.HTTPMessage`: a MIME parser, with its line-ending cracking and defect tracking,
for what is a list of `name: value` lines. Under load that was about a sixth of the sandbox's
CPU per request. Here the same lines become the same `HTTPMessage` (what werkzeug and our
handler read) with one split per line.

Stricter than the email parser, as RFC 9112 lets a server be: a line that is not
`name: value` (a continuation line, no colon, white space before the colon, a byte outside
the token characters in the name) or a value holding a CR or NUL is answered 400, where the
email parser quietly ended the headers there or kept the bytes. The limits are http.client's:
lines up to 65,536 bytes and 100 fields, 431 past either. A value loses the white space
around it (the field's optional white space), which the email parser kept at its end.
HTTP/0.9's one-line requests, which http.server served, are a 400, and every error has a status
line (http.server answered a bad request line as HTTP/0.9, with a bare HTML page).

A head whose body length is ambiguous is refused too (`framing_problem`), since the server
keeps connections alive and the bytes after a misread body would be read as the next request:
a repeated Content-Length (the handler framed the body by the first, werkzeug kept the last:
a second request rode in the first one's body), one that is not digits, and a
Transfer-Encoding whose last coding is not chunked (RFC 9112, 6.3).
"""

from __future__ import annotations

import re
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler
from typing import BinaryIO

MAX_LINE = 65536
MAX_FIELDS = 100
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/([0-9]{1,10})\.([0-9]{1,10})")
_DIGITS = re.compile(r"[0-9]+")


class HeadError(Exception):
    """A request head the server refuses: the status and the short reason it answers with."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def read_fields(rfile: BinaryIO) -> HTTPMessage:
    """The header fields after a request line, up to the empty line (or the end of input)."""
    fields = HTTPMessage()
    count = 0
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HeadError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
        if line in (b"\r\n", b"\n", b""):
            return fields
        count += 1
        if count > MAX_FIELDS:
            raise HeadError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
        name, colon, value = line.partition(b":")
        value = value[:-2] if value.endswith(b"\r\n") else value.removesuffix(b"\n")
        if not colon or not _NAME.fullmatch(name) or b"\r" in value or b"\0" in value:
            raise HeadError(HTTPStatus.BAD_REQUEST, "Bad header line")
        fields[name.decode("ascii")] = value.strip(b" \t").decode("iso-8859-1")


def framing_problem(fields: HTTPMessage) -> str | None:
    """Why the body's length cannot be told from these fields, or None when it can."""
    lengths = fields.get_all("Content-Length") or []
    if len(lengths) > 1:
        return "Repeated Content-Length"
    if lengths and not _DIGITS.fullmatch(lengths[0]):
        return "Bad Content-Length"
    codings = ",".join(fields.get_all("Transfer-Encoding") or [])
    if codings and codings.rsplit(",", 1)[-1].strip(" \t").lower() != "chunked":
        return "Transfer-Encoding does not end in chunked"
    return None


class LeanHeadHandler(BaseHTTPRequestHandler):
    """`parse_request` without the email package; otherwise as http.server's: it sets
    command, path, request_version, headers and close_connection, or answers the error and
    returns False. `Expect: 100-continue` is left to the handler that reads the body (which
    http.server answered here, so a handler answering it too sent two)."""

    raw_requestline: bytes  # set by handle_one_request before it calls us

    def parse_request(self) -> bool:
        self.command = None  # type: ignore[assignment]  # as http.server: set on the error path
        # An error is answered with a status line; http.server answered one in the request line
        # as HTTP/0.9 (a bare HTML page), which no client of this server reads.
        self.request_version = self.protocol_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) != 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path, version = words
        number = _VERSION.fullmatch(version)
        if number is None:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
            return False
        major, minor = int(number[1]), int(number[2])
        if major >= 2:
            self.send_error(
                HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({major}.{minor})"
            )
            return False
        self.request_version = version
        self.close_connection = (major, minor) < (1, 1) or self.protocol_version < "HTTP/1.1"
        # As http.server (gh-87389): `//host/path` would read as another host to a client.
        self.command, self.path = command, "/" + path.lstrip("/") if path[:2] == "//" else path
        try:
            self.headers = read_fields(self.rfile)  # type: ignore[arg-type]
        except HeadError as exc:
            self.send_error(exc.status, exc.reason)
            return False
        problem = framing_problem(self.headers)
        if problem is not None:
            self.send_error(HTTPStatus.BAD_REQUEST, problem)
            return False
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        return True
