"""HTTP/1.1 bytes for the plain exchange, without h11's state machine.

Nearly every exchange with NewStore is the same shape: a request with a Host header, a few
ordinary headers and a JSON body of known length; an answer `HTTP/1.1 <2xx-5xx>` with a
Content-Length. h11 (which `pool.Connection` uses for everything else) spends about 0.1 ms of
CPU on such an exchange, mostly in its state machine and its per-header validation; the
patterns here check the same grammar in one regular expression per line.

Both functions are the fast path only, never the judge: they return None for anything that is
not plainly that shape (a character h11 would refuse, chunked or close-delimited framing, a
1xx answer, HEAD, CONNECT, 204/304, repeated Content-Length, a request without Host), and the caller
hands the exchange to h11, which accepts it or raises its own error. Every pattern is at least
as strict as h11's grammar (RFC 9110/9112): what passes here h11 accepts too, read the same way.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_FIELD_VALUE = rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"
_NAME = re.compile(_TOKEN)
_VALUE = re.compile(_FIELD_VALUE)
_METHOD = re.compile(rb"[A-Z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9]) ([\t\x20-\x7e\x80-\xff]*)\r\n")
_HEADER_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _FIELD_VALUE + rb")[ \t]*\r\n")

_NOT_PLAIN_REQUEST = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"connection"})
"""Request headers whose presence (with any value but `keep-alive` for Connection) leaves the
request to h11."""


class Head(NamedTuple):
    """A plain answer's status line and headers."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    length: int  # the body's Content-Length
    keep_alive: bool  # False when the server said `Connection: close`


def encode_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes | None:
    """The request's bytes (Host first, as h11 writes it), or None when it is not plain."""
    if not _METHOD.fullmatch(method) or method == b"CONNECT" or not _TARGET.fullmatch(target):
        return None  # (a CONNECT's answer is a tunnel, not a body)
    host: list[bytes] = []
    lines: list[bytes] = []
    length: bytes | None = None
    for name, value in headers:
        if not _NAME.fullmatch(name) or not _VALUE.fullmatch(value):
            return None
        lower = name.lower()
        if lower == b"host":
            host.append(name + b": " + value + b"\r\n")
            continue
        if lower == b"content-length":
            if length is not None:
                return None
            length = value
        elif lower in _NOT_PLAIN_REQUEST and not (
            lower == b"connection" and value.lower() == b"keep-alive"
        ):
            return None
        lines.append(name + b": " + value + b"\r\n")
    if len(host) != 1:
        return None
    if length is None:
        if body:
            return None
    elif not _DIGITS.fullmatch(length) or int(length) != len(body):
        return None
    return b"".join([method, b" ", target, b" HTTP/1.1\r\n", *host, *lines, b"\r\n", body])


def parse_head(head: bytes, method: bytes) -> Head | None:
    """The status line and headers `head` holds (everything up to and including the blank
    line), or None when the answer is not plain."""
    if method == b"HEAD":
        return None
    match = _STATUS_LINE.match(head)
    if match is None:
        return None
    status = int(match[1])
    if status in (204, 304):
        return None
    reason = match[2]
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    keep_alive = True
    position = match.end()
    end = len(head) - 2
    while position < end:
        match = _HEADER_LINE.match(head, position)
        if match is None:
            return None
        position = match.end()
        name, value = match[1], match[2]
        headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            if length is not None or not _DIGITS.fullmatch(value):
                return None
            length = int(value)
        elif lower == b"transfer-encoding":
            return None
        elif lower == b"connection":
            tokens = {token.strip(b" \t").lower() for token in value.split(b",")}
            if b"close" in tokens:
                keep_alive = False
            if b"upgrade" in tokens:
                return None
    if position != end or head[end:] != b"\r\n" or length is None:
        return None
    return Head(status, reason, headers, length, keep_alive)
