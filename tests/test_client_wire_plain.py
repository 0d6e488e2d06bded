"""The plain-exchange fast path (`reconciler.newstore.wire`) against h11 itself: for every answer
and request below, what the client's connection makes of the bytes is what h11 makes of them
(the same status, headers, body and whether the connection is kept, or an error either way),
whichever of the two paths read it. The answers are sent by a raw socket server, some a byte
at a time, so the fast path's buffering is seen too."""

from __future__ import annotations

import socket
import threading
from typing import Any

import h11
import httpx
import pytest
from client_helpers import raw_server, read_request

from reconciler.newstore import wire
from reconciler.newstore.pool import Transport
from reconciler.newstore.transport import ssl_context

OK = b"HTTP/1.1 200 OK\r\n"
ANSWERS = {
    "plain": OK + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    "empty-body": OK + b"Content-Length: 0\r\n\r\n",
    "lower-case-tabs-empty-value": OK
    + b"content-length:\t2 \r\nx-empty:\r\nX-Sp:  a  b \r\n\r\nok",
    "obs-text-value-and-reason": b"HTTP/1.1 404 Nicht \xe9rreichbar\r\nX: caf\xe9\r\n"
    b"Content-Length: 2\r\n\r\nno",
    "empty-reason": b"HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n",
    "close-among-tokens": OK + b"Connection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok",
    "bytes-past-the-body": OK + b"Content-Length: 2\r\n\r\nokEXTRA",
    "repeated-length": OK + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "conflicting-length": OK + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "signed-length": OK + b"Content-Length: +2\r\n\r\nok",
    "bare-line-feeds": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "http-1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "no-content": b"HTTP/1.1 204 No Content\r\n\r\n",
    "chunked": OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "obs-fold": OK + b"X: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "space-before-colon": OK + b"X : a\r\nContent-Length: 2\r\n\r\nok",
    "nul-in-value": OK + b"X: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "cr-in-value": OK + b"X: a\rb\r\nContent-Length: 2\r\n\r\nok",
    "status-two-digits": b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
    "informational-first": b"HTTP/1.1 100 Continue\r\n\r\n" + OK + b"Content-Length: 2\r\n\r\nok",
}


def _h11_reading(answer: bytes) -> Any:
    """What h11 alone makes of `answer` to a GET: (status, headers, reason, body, kept) or
    the name of the error it raises."""
    state = h11.Connection(our_role=h11.CLIENT)
    state.send(h11.Request(method=b"GET", target=b"/", headers=[(b"Host", b"x")]))
    state.send(h11.EndOfMessage())
    state.receive_data(answer)
    state.receive_data(b"")  # the server closes after its answer (it may have said so)
    try:
        event = state.next_event()
        while isinstance(event, h11.InformationalResponse):
            event = state.next_event()
        body = b""
        while not isinstance(part := state.next_event(), h11.EndOfMessage):
            body += bytes(part.data)
    except h11.RemoteProtocolError:
        return "RemoteProtocolError"
    # Kept: both sides done, the server not closing, nothing left over.
    kept = state.their_state is h11.DONE and not state.trailing_data[0]
    return (event.status_code, list(event.headers.raw_items()), event.reason, body, kept)


def _client_reading(answer: bytes, *, byte_by_byte: bool) -> Any:
    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        if byte_by_byte:
            for index in range(len(answer)):
                conn.sendall(answer[index : index + 1])
        else:
            conn.sendall(answer)
        # and close: a close-delimited body ends here; h11's reading above assumes it

    with raw_server(handler) as (base, _), Transport(ssl_context(None)) as transport:
        request = httpx.Request("GET", base, extensions={"timeout": {"read": 10.0}})
        try:
            response = transport.handle_request(request)
        except httpx.RemoteProtocolError:
            return "RemoteProtocolError"
        response.read()
        port = int(base.rsplit(":", 1)[1])
        kept = transport.idle(("http", "127.0.0.1", port)) == 1
        reason = response.extensions["reason_phrase"]
        return (response.status_code, list(response.headers.raw), reason, response.content, kept)


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("name", list(ANSWERS))
def test_the_client_reads_every_answer_as_h11_does(name: str, byte_by_byte: bool) -> None:
    answer = ANSWERS[name]
    expected = _h11_reading(answer)
    assert _client_reading(answer, byte_by_byte=byte_by_byte) == expected


def test_the_fast_path_reads_the_plain_answers_and_leaves_the_rest() -> None:
    """Which answers `wire.parse_head` reads itself: the test above would pass with a fast path
    that never fires, so say that it does fire, and where it steps aside."""
    plain = {"plain", "empty-body", "lower-case-tabs-empty-value", "obs-text-value-and-reason"}
    plain |= {"empty-reason", "close-among-tokens", "bytes-past-the-body"}
    for name, answer in ANSWERS.items():
        end = answer.find(b"\r\n\r\n")
        head = wire.parse_head(answer[: end + 4], b"GET") if end >= 0 else None
        assert (head is not None) == (name in plain), name
    head = wire.parse_head(ANSWERS["plain"][:-2], b"HEAD")
    assert head is None, "a HEAD answer has no body whatever its Content-Length says"


REQUESTS = [
    (b"GET", b"/acme/v0/config/x?a=1", [(b"Host", b"h:1"), (b"Accept", b"application/json")], b""),
    (b"POST", b"/t", [(b"Host", b"h"), (b"Content-Type", b"x"), (b"Content-Length", b"2")], b"{}"),
    (b"PUT", b"/t", [(b"Accept", b"*/*"), (b"host", b"h"), (b"X-Sp", b"a b")], b""),
    (b"GET", b"/t", [(b"Host", b"h"), (b"Connection", b"keep-alive")], b""),
]
NOT_PLAIN = [
    (b"GET", b"/t", [(b"Accept", b"x")], b""),  # no Host
    (b"GET", b"/t", [(b"Host", b"h"), (b"Host", b"i")], b""),
    (b"GET", b"/a b", [(b"Host", b"h")], b""),
    (b"GET", b"/t", [(b"Host", b"h"), (b"X", b"a\r\nInjected: 1")], b""),
    (b"GET", b"/t", [(b"Host", b"h"), (b"X", b" padded")], b""),
    (b"GET", b"/t", [(b"Host", b"h"), (b"Bad Name", b"x")], b""),
    (b"POST", b"/t", [(b"Host", b"h")], b"body without a length"),
    (b"POST", b"/t", [(b"Host", b"h"), (b"Content-Length", b"9")], b"{}"),
    (b"GET", b"/t", [(b"Host", b"h"), (b"Connection", b"close")], b""),
    (b"GET", b"/t", [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")], b""),
    (b"CONNECT", b"h:443", [(b"Host", b"h:443")], b""),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=range(len(REQUESTS)))
def test_a_plain_request_goes_out_byte_for_byte_as_h11_writes_it(request_: Any) -> None:
    method, target, headers, body = request_
    state = h11.Connection(our_role=h11.CLIENT)
    expected = state.send(h11.Request(method=method, target=target, headers=headers)) or b""
    if body:
        expected += state.send(h11.Data(data=body)) or b""
    expected += state.send(h11.EndOfMessage()) or b""
    assert wire.encode_request(method, target, headers, body) == expected


@pytest.mark.parametrize("request_", NOT_PLAIN, ids=range(len(NOT_PLAIN)))
def test_any_other_request_is_left_to_h11(request_: Any) -> None:
    assert wire.encode_request(*request_) is None


def test_a_header_that_would_inject_a_line_is_refused_and_nothing_is_sent() -> None:
    received: list[bytes] = []

    def handler(conn: socket.socket, number: int) -> None:
        received.append(read_request(conn))

    with raw_server(handler) as (base, _), Transport(ssl_context(None)) as transport:
        token = "Bearer secret-token-0123456789\r\nX-Evil: 1"
        request = httpx.Request("GET", base, headers={"Authorization": token})
        with pytest.raises(httpx.LocalProtocolError) as caught:
            transport.handle_request(request)
    assert received in ([], [b""]), "no byte of the request left"
    assert "secret-token" not in str(caught.value), "h11's text quotes the refused value"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    "start", [b" HTTP/1.1 200 OK\r\n", b"\r\n", b"\x16\x03\x01\x00", b"HTTP/1.0 200 OK\r\n"]
)
def test_bytes_that_cannot_start_a_plain_answer_go_to_h11_at_once(start: bytes) -> None:
    """A server that sends them and then stalls gets h11's verdict on them, not a read timeout
    after the patterns waited for a blank line (HTTP/1.0 goes to h11 too, which waits)."""
    released = threading.Event()

    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        conn.sendall(start)
        released.wait(60)

    with raw_server(handler) as (base, _), Transport(ssl_context(None)) as transport:
        request = httpx.Request("GET", base, extensions={"timeout": {"read": 2.0}})
        try:
            with pytest.raises(httpx.HTTPError) as caught:
                transport.handle_request(request)
        finally:
            released.set()
    expected = httpx.ReadTimeout if start.startswith(b"HTTP/1.0") else httpx.RemoteProtocolError
    assert type(caught.value) is expected


def test_a_protocol_switch_is_an_error_not_a_loop() -> None:
    """A CONNECT (left to h11) answered 200 is a tunnel: h11 pauses, and the client says so
    instead of waiting for a body that never ends; the connection is not kept."""

    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\nContent-Length: 5\r\n\r\nhello")

    with raw_server(handler) as (base, _), Transport(ssl_context(None)) as transport:
        request = httpx.Request("CONNECT", base, extensions={"timeout": {"read": 10.0}})
        with pytest.raises(httpx.RemoteProtocolError, match="switched protocols"):
            transport.handle_request(request)
        assert transport.idle(("http", "127.0.0.1", int(base.rsplit(":", 1)[1]))) == 0


def test_a_large_body_in_small_pieces_is_read_whole() -> None:
    body = bytes(range(256)) * 1200

    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        answer = OK + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        for index in range(0, len(answer), 1000):
            conn.sendall(answer[index : index + 1000])

    with raw_server(handler) as (base, _), Transport(ssl_context(None)) as transport:
        request = httpx.Request("GET", base, extensions={"timeout": {"read": 10.0}})
        response = transport.handle_request(request)
        assert response.read() == body
