"""The sandbox's server reads request heads without the email package (`sandbox/head.py`):
the fields come out as http.client's parser gives them, and a head it cannot read as
`name: value` lines is refused with the status a careful server answers, over a real socket."""

from __future__ import annotations

import io
import json
import re
import socket
from http.client import parse_headers

import pytest

from reconciler.sandbox import SandboxApp
from reconciler.sandbox.head import HeadError, framing_problem, read_fields

HEADS = [
    b"Host: 127.0.0.1:8765\r\nUser-Agent: x/1\r\nAccept: */*\r\n\r\n",
    b"Host: h\r\nContent-Length: 12\r\nContent-Type: application/json\r\n\r\n",
    b"X-Twice: one\r\nx-twice: two\r\nAuthorization: Bearer abc.def-ghi\r\n\r\n",
    b"Empty:\r\nTabbed:\t value\t\r\nSpaced:   v  \r\n\r\n",
    b"Bare-LF: yes\nNext: too\n\n",
    b"Latin: caf\xe9\r\nColon-In-Value: a:b::c\r\nweird!#$%&'*+-.^_`|~name: 1\r\n\r\n",
    b"\r\n",
    b"",  # the end of input ends the head
]


@pytest.mark.parametrize("head", HEADS)
def test_fields_are_read_as_http_client_reads_them(head: bytes) -> None:
    data = head + b"BODY" if head else b""
    ours = read_fields(io.BytesIO(data))
    theirs = parse_headers(io.BytesIO(data))
    # The one difference: the white space around a value is not part of it (RFC 9112).
    assert ours.items() == [(name, value.strip(" \t")) for name, value in theirs.items()]
    assert ours.get_all("x-twice") == theirs.get_all("x-twice")


def test_reading_stops_at_the_empty_line() -> None:
    stream = io.BytesIO(b"A: 1\r\n\r\nB: 2\r\n\r\n")
    assert read_fields(stream).items() == [("A", "1")]
    assert stream.read() == b"B: 2\r\n\r\n"


REFUSED = [
    (b"A: 1\r\n continued\r\n\r\n", 400),  # obs-fold
    (b"No colon here\r\n\r\n", 400),
    (b"Space : before the colon\r\n\r\n", 400),
    (b": no name\r\n\r\n", 400),
    (b"Na\xefme: 1\r\n\r\n", 400),
    (b"A: carriage\rreturn\r\n\r\n", 400),
    (b"A: nul\x00byte\r\n\r\n", 400),
    (b"A: " + b"x" * 70_000 + b"\r\n\r\n", 431),
    (b"".join(b"F%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
]


@pytest.mark.parametrize(("head", "status"), REFUSED)
def test_a_head_that_is_not_name_value_lines_is_refused(head: bytes, status: int) -> None:
    with pytest.raises(HeadError) as refused:
        read_fields(io.BytesIO(head))
    assert refused.value.status == status


def test_a_hundred_fields_are_read() -> None:
    head = b"".join(b"F%d: v\r\n" % i for i in range(100)) + b"\r\n"
    assert len(read_fields(io.BytesIO(head))) == 100


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (b"Content-Length: 12\r\n\r\n", None),
        (b"Transfer-Encoding: chunked\r\n\r\n", None),
        (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: Chunked \r\n\r\n", None),
        (b"Content-Length: 0\r\nContent-Length: 50\r\n\r\n", "Repeated Content-Length"),
        (b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", "Repeated Content-Length"),
        (b"Content-Length: \xb2\r\n\r\n", "Bad Content-Length"),  # isdigit() says yes
        (b"Content-Length: +5\r\n\r\n", "Bad Content-Length"),
        (b"Content-Length: 1_0\r\n\r\n", "Bad Content-Length"),
        (b"Transfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding does not end in chunked"),
        (
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            "Transfer-Encoding does not end in chunked",
        ),
    ],
)
def test_a_body_of_ambiguous_length_is_named(head: bytes, problem: str | None) -> None:
    assert framing_problem(read_fields(io.BytesIO(head))) == problem


# -- over a socket, against the real server ---------------------------------------------------


def _exchange(base_url: str, data: bytes) -> bytes:
    """Send `data`, then read until the server closes the connection (or 5 s of silence)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


_SMUGGLED = b"GET /_sandbox/tenants/x/history HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _answers(received: bytes) -> int:
    return len(re.findall(rb"HTTP/1\.[01] [0-9]{3} ", received))


def _request(
    target: str = "/_sandbox/faults", *fields: bytes, version: bytes = b"HTTP/1.1"
) -> bytes:
    head = b"GET " + target.encode() + b" " + version + b"\r\nHost: 127.0.0.1\r\n"
    return head + b"".join(field + b"\r\n" for field in fields) + b"\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (_request("/_sandbox/faults", b"A: 1", b" folded"), b"400"),
        (_request("/_sandbox/faults", b"No colon"), b"400"),
        (_request("/_sandbox/faults", b"A: cr\rinside"), b"400"),
        (_request("/_sandbox/faults", *(b"F%d: v" % i for i in range(101))), b"431"),
        (_request("/_sandbox/faults", version=b"HTTP/2.0"), b"505"),
        (_request("/_sandbox/faults", version=b"HTTP/1.x"), b"400"),
        (b"GET /_sandbox/faults\r\n\r\n", b"400"),  # HTTP/0.9
        (b"GET / HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n", b"400"),
        # A second request in the body of the first, framed by one of two lengths: smuggled.
        (
            b"POST /_sandbox/faults HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(_SMUGGLED), _SMUGGLED),
            b"400",
        ),
        (_request("/_sandbox/faults", b"Transfer-Encoding: gzip"), b"400"),
        (_request("/_sandbox/faults", b"Content-Length: \xb2"), b"400"),
    ],
)
def test_the_server_refuses_a_bad_head_and_closes(
    live_sandbox: tuple[SandboxApp, str], request_bytes: bytes, status: bytes
) -> None:
    _, base_url = live_sandbox
    # Followed by a good request: a refused head ends the connection, it is never read.
    answer = _exchange(base_url, request_bytes + _request())
    assert answer.startswith(b"HTTP/1.")
    assert answer.split(b" ", 2)[1] == status
    assert _answers(answer) == 1


def test_two_requests_on_one_connection_then_close(live_sandbox: tuple[SandboxApp, str]) -> None:
    _, base_url = live_sandbox
    answer = _exchange(
        base_url, _request("/_sandbox/faults") + _request("/_sandbox/faults", b"Connection: close")
    )
    first, second = answer.split(b"HTTP/1.1 200 ")[1:]
    assert b"connection: close" not in first.lower()
    assert b"connection: close" in second.lower()
    assert json.loads(second.split(b"\r\n\r\n", 1)[1]) == {"rules": []}


def test_a_continue_is_sent_once(live_sandbox: tuple[SandboxApp, str]) -> None:
    sandbox, base_url = live_sandbox
    body = b'{"rules": []}'
    head = (
        b"POST /_sandbox/faults HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % len(body)
    )
    answer = _exchange(base_url, head + body)
    assert answer.count(b"HTTP/1.1 100 Continue") == 1
    assert answer.split(b"\r\n\r\n", 1)[1].startswith(b"HTTP/1.1 200 ")
    assert sandbox.faults() == []


def test_an_http_1_0_request_is_answered_and_closed(live_sandbox: tuple[SandboxApp, str]) -> None:
    _, base_url = live_sandbox
    answer = _exchange(base_url, _request(version=b"HTTP/1.0") + _request())
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert _answers(answer) == 1  # the second request was never read


def test_a_bodiless_answer_carries_no_body(live_sandbox: tuple[SandboxApp, str]) -> None:
    _, base_url = live_sandbox
    # A HEAD the app answers with a body (the 421 for a host it does not serve): the bytes
    # after the head must be the next answer, not that body.
    head = b"HEAD /_sandbox/faults HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    answer = _exchange(base_url, head + _request("/_sandbox/faults", b"Connection: close"))
    first, rest = answer.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 421 ")
    assert rest.startswith(b"HTTP/1.1 200 ")
