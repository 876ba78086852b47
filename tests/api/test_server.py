"""The HTTP server's own bounds, over real TCP: header size, header deadline, connections (probe 18)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from loom.api.server import BoundedH11Protocol, connection_cap, server_config
from loom.settings import Settings

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def serving(tmp_path: Path, **bounds: Any) -> Iterator[tuple[str, int]]:
    with serving_app(tmp_path, app, send_buffer=None, **bounds) as (_, address):
        yield address


@contextmanager
def serving_app(
    tmp_path: Path, the_app: Any, *, send_buffer: int | None = 4096, **bounds: Any
) -> Iterator[tuple[uvicorn.Server, tuple[str, int]]]:
    settings = Settings(home=tmp_path, log_level="warning", **bounds)
    sock = socket.socket()
    if send_buffer is not None:
        # Accepted sockets inherit a small send buffer: the kernel must not take the whole response
        # off the server's hands, or there is nothing left in the process to see held or freed.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(server_config(the_app, settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield server, sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def connect(address: tuple[str, int]) -> socket.socket:
    conn = socket.create_connection(address, timeout=10)
    return conn


def closed_after(conn: socket.socket) -> float:
    """Seconds until the server closes `conn` (reading and dropping what it sends)."""
    started = time.monotonic()
    while conn.recv(65536):
        pass
    return time.monotonic() - started


def test_headers_past_16_kib_are_refused_and_the_connection_closed(tmp_path: Path) -> None:
    # R18-1: with httptools, a stream of header lines took the server to 6.3 GiB (17x the bytes).
    with serving(tmp_path) as address, connect(address) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n")
        sent, answer = 0, b""
        conn.setblocking(False)
        try:
            while sent < 32 * 2**20 and not answer:
                try:
                    sent += conn.send(b"X-Header: " + b"v" * 1000 + b"\r\n")
                except BlockingIOError:
                    time.sleep(0.01)
                try:
                    answer = conn.recv(1024)
                except BlockingIOError:
                    pass
        except (BrokenPipeError, ConnectionResetError):  # closed with our bytes unread: a reset
            pass
    # 431 from the protocol's own count, or 400 from h11's bound, whichever sees it first.
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")) or not answer, answer[:100]
    # Refused at 16 KiB: what the client got into the sockets' buffers before the reset came back
    # is at most a few MiB on loopback; an unbounded server reads all 32 MiB.
    assert sent < 16 * 2**20


def test_a_connection_that_does_not_finish_its_headers_in_time_is_closed(tmp_path: Path) -> None:
    # R18-3: 20,000 connections that never finished their headers held every file descriptor.
    with serving(tmp_path, request_header_timeout_s=0.5) as address:
        with connect(address) as silent, connect(address) as partial:
            partial.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ")
            assert closed_after(silent) < 3
            assert closed_after(partial) < 3


def test_the_deadline_starts_again_for_each_request_on_a_kept_alive_connection(tmp_path: Path) -> None:
    with serving(tmp_path, request_header_timeout_s=0.6) as address, connect(address) as conn:
        for _ in range(3):  # headers in two parts, each request within its time: all answered
            conn.sendall(REQUEST[:10])
            time.sleep(0.35)
            conn.sendall(REQUEST[10:])
            assert conn.recv(1024).startswith(b"HTTP/1.1 200")
        conn.sendall(b"GET / HTTP/1.1\r\nHost: te")  # then a request that stalls: closed
        assert closed_after(conn) < 3


def test_at_the_cap_a_new_connection_takes_the_place_of_the_longest_idle(tmp_path: Path) -> None:
    # R18-3 again: with a plain cap, 4,096 idle connections kept every new user out.
    with serving(tmp_path, max_connections=16, request_header_timeout_s=30) as address:
        idle = [connect(address) for _ in range(16)]
        try:
            time.sleep(0.2)  # all accepted, none has sent a byte
            with connect(address) as user:
                user.sendall(REQUEST)
                assert user.recv(1024).startswith(b"HTTP/1.1 200")
            assert closed_after(idle[0]) < 2  # the one that waited longest made room
        finally:
            for conn in idle:
                conn.close()


def test_at_the_cap_with_every_connection_answered_a_new_one_is_closed(tmp_path: Path) -> None:
    with serving(tmp_path, max_connections=16, request_header_timeout_s=30) as address:
        busy = [connect(address) for _ in range(16)]
        try:
            for conn in busy:
                conn.sendall(REQUEST.replace(b"GET / ", b"GET /slow "))
            time.sleep(0.3)  # all being answered
            with connect(address) as extra:
                assert closed_after(extra) < 1  # not the 30 s a connection has for its headers
            for conn in busy:  # and none of those was dropped
                assert conn.recv(1024).startswith(b"HTTP/1.1 200")
        finally:
            for conn in busy:
                conn.close()


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    # R18-2: httptools parsed every pipelined request into a pending cycle (7.7 GiB for 100 MiB);
    # h11 stops reading while one is answered, and still answers them all.
    with serving(tmp_path) as address, connect(address) as conn:
        conn.sendall(REQUEST * 200)
        received = b""
        while received.count(b"HTTP/1.1 200") < 200:
            received += conn.recv(65536)
    assert received.count(b"\r\n\r\nok") == 200


def test_the_server_runs_the_bounded_protocol_within_the_descriptor_limit(tmp_path: Path) -> None:
    import resource

    config = server_config(app, Settings(home=tmp_path, request_header_timeout_s=7, max_connections=10**6))
    assert isinstance(config.http, type) and issubclass(config.http, BoundedH11Protocol)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert config.http.header_timeout_s == 7
    assert config.http.max_connections == connection_cap(10**6) <= max(16, soft - 256)
    assert connection_cap(100) == min(100, max(16, soft - 256))


@pytest.fixture(autouse=True)
def _no_leaked_loop() -> Iterator[None]:
    yield
    asyncio.set_event_loop(None)


BIG = 8 * 2**20


async def big_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """8 MiB in one send; `/given-up` stops there without ending the response (as a stream whose
    client stalled does), `/whole` ends it."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(BIG + 1).encode())],
        }
    )
    await send({"type": "http.response.body", "body": b"x" * BIG, "more_body": True})
    if scope["path"] == "/whole":
        await send({"type": "http.response.body", "body": b"x"})


def small_window(address: tuple[str, int]) -> socket.socket:
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.settimeout(10)
    conn.connect(address)
    return conn


def read_all(conn: socket.socket) -> tuple[int, bool]:
    """Bytes read until the end, and whether the end was a reset."""
    got = 0
    try:
        while chunk := conn.recv(65536):
            got += len(chunk)
    except ConnectionResetError:
        return got, True
    return got, False


def test_a_header_block_past_16_kib_sent_whole_is_refused(tmp_path: Path) -> None:
    # R20-4: h11 bounds only headers that arrive in pieces; one read of 94 KB reached the app.
    with serving(tmp_path) as address, connect(address) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer " + b"a" * 40_000 + b"\r\n\r\n")
        answer = conn.recv(1024)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_client_that_takes_nothing_is_aborted_and_its_buffer_freed(tmp_path: Path) -> None:
    # R20-1: a response given up (its client stalled) stayed in the transport's buffer, 8 MiB a
    # connection, for as long as the client kept its socket open.
    with serving_app(tmp_path, big_app, response_stall_s=0.5) as (server, address):
        with small_window(address) as conn:
            conn.sendall(b"GET /given-up HTTP/1.1\r\nHost: test\r\n\r\n")
            deadline = time.monotonic() + 10
            while not server.server_state.connections and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(1.0)  # the response is given up at once; the deadline counts from there
            while server.server_state.connections and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not server.server_state.connections, "the stalled connection is still open"
            got, reset = read_all(conn)
            # Reset, not closed: the kernel must not keep the unsent bytes for the client either.
            assert got < BIG and reset


def test_a_slow_reader_is_not_taken_for_a_stalled_one(tmp_path: Path) -> None:
    with serving_app(tmp_path, big_app, response_stall_s=0.5) as (_, address), small_window(address) as conn:
        conn.sendall(b"GET /whole HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        got = 0
        started = time.monotonic()
        while chunk := conn.recv(256 * 1024):  # ~2 s in all, each step well inside the 0.5 s limit
            got += len(chunk)
            time.sleep(0.003)
        assert got > BIG, f"got {got} bytes in {time.monotonic() - started:.1f} s"


def header_lines(count: int) -> bytes:
    return b"".join(b"x%d: 1\r\n" % i for i in range(count))


@pytest.mark.parametrize(("lines", "refused"), [(90, False), (4_000, True)])
def test_header_lines_past_100_are_refused_however_few_their_bytes(
    tmp_path: Path, lines: int, refused: bool
) -> None:
    # R21-6: 4,000 one-byte headers (under 16 KiB) cost 11.5 ms of the event loop per request.
    block = b"GET / HTTP/1.1\r\nHost: test\r\n" + header_lines(lines) + b"\r\n"
    assert len(block) < 16 * 1024 * 4
    with serving(tmp_path) as address, connect(address) as conn:
        conn.sendall(block)
        answer = conn.recv(1024)
    assert answer.startswith(b"HTTP/1.1 431 " if refused else b"HTTP/1.1 200 "), answer[:60]


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


CHUNKED = b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"200"),  # a chunked body is read as ever
        (b"5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n", b"200"),  # with a trailer or two
        (b"5\r\nhello\r\n0\r\n" + header_lines(8_000) + b"\r\n", b"400"),  # R21-5: 22.5 ms each
        (b"5\r\nhello\r\n0\r\nx: " + b"v" * 40_000 + b"\r\n\r\n", b"400"),
        (b"5;" + b"e" * 40_000 + b"\r\nhello\r\n0\r\n\r\n", b"400"),  # a chunk line's extension
    ],
)
def test_chunked_bodies_are_read_within_the_header_bounds(tmp_path: Path, body: bytes, status: bytes) -> None:
    with serving_app(tmp_path, echo_length, send_buffer=None) as (_, address), connect(address) as conn:
        conn.sendall(CHUNKED + body)
        answer = conn.recv(1024)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    if status == b"200":
        assert answer.endswith(b"\r\n\r\n11") or answer.endswith(b"\r\n\r\n5")


def test_a_body_found_malformed_while_the_app_answers_gets_one_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The app answers at the headers (as a 405 or 401 does); the body then proves malformed: the
    # app's answer failed in h11 after the 400, with two tracebacks a request (4.5 ms each).
    with serving_app(tmp_path, app, send_buffer=None) as (_, address), connect(address) as conn:
        logging.getLogger("uvicorn.error").addHandler(caplog.handler)  # uvicorn's loggers do not propagate
        conn.sendall(CHUNKED + b"5\r\nhello\r\nzz-not-a-size\r\n")
        answer = conn.recv(1024)
        time.sleep(0.2)  # the app's own answer comes after the 400
    logging.getLogger("uvicorn.error").removeHandler(caplog.handler)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[:500]


@pytest.mark.parametrize("lines", [90, 4_000])
def test_a_request_pipelined_behind_another_keeps_to_the_header_bounds(tmp_path: Path, lines: int) -> None:
    # R22-5: the second request of one write waited in h11's buffer and was parsed whole (12,000
    # header lines, 60 ms each), past the count made as bytes arrive.
    second = b"GET / HTTP/1.1\r\nHost: test\r\n" + header_lines(lines) + b"\r\n"
    with serving(tmp_path) as address, connect(address) as conn:
        conn.sendall(REQUEST + second)
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 2:
            more = conn.recv(65536)
            if not more:
                break
            answers += more
    first, _, rest = answers.partition(b"\r\n\r\nok")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 200 " if lines < 100 else b"HTTP/1.1 431 "), rest[:60]  # 431 as alone


def test_a_request_answered_before_its_body_ends_has_its_connection_closed(tmp_path: Path) -> None:
    # R23-2: after a 401 the chunked body went on being parsed, chunk by chunk, for as long as the
    # client sent it: one connection without a token held the event loop 32 s.
    with serving(tmp_path) as address, connect(address) as conn:
        conn.sendall(CHUNKED + b"1\r\na\r\n")
        answer = conn.recv(1024)
        assert answer.startswith(b"HTTP/1.1 200 ")
        closed = False
        conn.settimeout(5)
        try:
            for _ in range(200):
                conn.sendall(b"1\r\na\r\n" * 100)
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        if not closed:
            try:
                closed = conn.recv(1024) == b""
            except ConnectionResetError:
                closed = True
    assert closed


def test_a_body_of_more_chunks_than_allowed_is_refused(tmp_path: Path) -> None:
    with serving_app(tmp_path, echo_length, send_buffer=None) as (_, address), connect(address) as conn:
        conn.sendall(CHUNKED + b"1\r\na\r\n" * 300 + b"0\r\n\r\n")
        answer = conn.recv(1024)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    with serving_app(tmp_path, echo_length, send_buffer=None) as (_, address), connect(address) as conn:
        conn.sendall(CHUNKED + b"1\r\na\r\n" * 250 + b"0\r\n\r\n")
        answer = conn.recv(1024)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"250"), answer[:80]
