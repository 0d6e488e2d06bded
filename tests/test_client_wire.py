"""The client's own HTTP/1.1 connections (`reconciler.newstore.pool`) against servers that
answer in every shape HTTP/1.1 allows, and some it does not: raw sockets on 127.0.0.1, each
scripted answer sent as bytes, so what the client makes of them is seen exactly."""

from __future__ import annotations

import gzip
import socket
import threading

import httpx
import pytest
from client_helpers import raw_server, read_request

from reconciler.newstore.pool import Transport
from reconciler.newstore.transport import ssl_context


def _get(transport: Transport, url: str, timeout: float = 10.0) -> httpx.Response:
    extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
    response = transport.handle_request(httpx.Request("GET", url, extensions=extensions))
    response.read()
    return response


def _origin(base: str) -> tuple[str, str, int]:
    return ("http", "127.0.0.1", int(base.rsplit(":", 1)[1]))


def test_keep_alive_reuses_one_connection_and_the_request_goes_out_whole() -> None:
    requests: list[bytes] = []

    def handler(conn: socket.socket, number: int) -> None:
        for _ in range(3):
            request = read_request(conn)
            if not request:
                return
            requests.append(request)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with raw_server(handler) as (base, accepted), Transport(ssl_context(None)) as transport:
        for _ in range(3):
            assert _get(transport, f"{base}/v0/x?a=1").content == b"ok"
        assert accepted == [0]
    assert all(r.startswith(b"GET /v0/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:") for r in requests)


def test_connection_close_chunked_and_close_delimited_bodies() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nfirst",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthird, to the end",
    ]

    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        conn.sendall(answers[number])
        if number == 1:  # chunked keeps the connection: serve the third answer on it too
            read_request(conn)
            conn.sendall(answers[2])

    with raw_server(handler) as (base, accepted), Transport(ssl_context(None)) as transport:
        assert _get(transport, base).content == b"first"
        assert transport.idle(_origin(base)) == 0, "a connection the server closes is not kept"
        assert _get(transport, base).content == b"second"
        assert transport.idle(_origin(base)) == 1
        assert _get(transport, base).content == b"third, to the end"
        assert transport.idle(_origin(base)) == 0
    assert accepted == [0, 1]


def test_a_gzip_answer_is_decoded_and_its_headers_keep_their_case() -> None:
    body = gzip.compress(b'{"enabled": true}')

    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        head = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nX-Request-ID: abc\r\n"
        conn.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    with raw_server(handler) as (base, _), Transport(ssl_context(None)) as transport:
        response = _get(transport, base)
    assert response.json() == {"enabled": True}
    assert response.headers["x-request-id"] == "abc"
    assert (b"X-Request-ID", b"abc") in response.headers.raw


def test_an_idle_connection_the_server_closed_is_not_taken_again() -> None:
    """Checked before a kept connection is taken: a server that closed it while idle gets the
    next request on a fresh connection, not "disconnected without a response"."""

    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        # then close at rest, the answer given (keep-alive timeout on the server side)

    with raw_server(handler) as (base, accepted), Transport(ssl_context(None)) as transport:
        assert _get(transport, base).content == b"ok"
        (kept,) = transport._idle[_origin(base)]
        while not kept.readable():  # the server's close has not reached this socket yet
            threading.Event().wait(0.01)
        assert _get(transport, base).content == b"ok"
    assert accepted == [0, 1]


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (b"", httpx.RemoteProtocolError, "Server disconnected without sending a response."),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", httpx.RemoteProtocolError, ""),
        (b"NOT HTTP AT ALL\r\n\r\n", httpx.RemoteProtocolError, ""),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200_000, httpx.RemoteProtocolError, ""),
    ],
    ids=["closed-at-once", "body-cut-short", "not-http", "headers-past-the-limit"],
)
def test_broken_answers_raise_httpx_errors_and_close_the_connection(
    answer: bytes, error: type[Exception], text: str
) -> None:
    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        conn.sendall(answer)

    with raw_server(handler) as (base, _), Transport(ssl_context(None)) as transport:
        with pytest.raises(error) as caught:
            _get(transport, base)
        assert transport.idle(_origin(base)) == 0
    if text:
        assert str(caught.value) == text


def test_no_answer_within_the_read_timeout_is_a_read_timeout() -> None:
    released = threading.Event()

    def handler(conn: socket.socket, number: int) -> None:
        read_request(conn)
        released.wait(30)

    with raw_server(handler) as (base, _), Transport(ssl_context(None)) as transport:
        try:
            with pytest.raises(httpx.ReadTimeout):
                _get(transport, base, timeout=0.2)
        finally:
            released.set()


def test_refused_and_unsupported_are_httpx_errors_with_the_os_s_text() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with Transport(ssl_context(None)) as transport:
        with pytest.raises(httpx.ConnectError) as caught:
            _get(transport, f"http://127.0.0.1:{port}/")
        assert "Connection refused" in str(caught.value) or "111" in str(caught.value)
        with pytest.raises(httpx.UnsupportedProtocol):
            _get(transport, "ftp://127.0.0.1/")
