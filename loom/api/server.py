"""The HTTP server under the API: uvicorn on h11, with the bounds uvicorn leaves out.

- **h11, not httptools.** uvicorn's httptools protocol has no bound on header bytes and turns every
  pipelined request it has read into a pending cycle: a stream of header lines took the server to
  6.3 GiB (17× the bytes sent) and 100 MiB of pipelined GETs to 7.7 GiB (probe 18: R18-1, R18-2).
  h11 stops reading while a request is being answered, and refuses headers past 16 KiB when they
  arrive in pieces; headers that arrive whole in one read it parses at any size, so the protocol
  counts them itself and answers 431 past 16 KiB (a 94 KB token cost 12.7 ms of the event loop
  per request to refuse: probe 20, R20-2 and R20-4).
- **A cap on header lines**, since their count costs more than their bytes: 4,000 one-byte headers,
  under 16 KiB, cost 11.5 ms of the event loop per request (probe 21: R21-6). Past
  `max_header_lines` the answer is 431 too.
- **Chunked bodies' trailers and chunk lines under the same bounds.** h11 parses a trailer block
  that arrives whole at any size (22.5 ms a request: R21-5); the connection's chunked reader now
  refuses trailers past the header bounds, a chunk-size line past 1 KiB and a body of more than
  256 chunks (400, connection closed). A request answered before its body has ended (a 401, a
  413) has its connection closed once the answer is sent, not its body read on.
- **A deadline for sending.** A client that stops reading leaves its response in the transport's
  buffer, and closing the transport waits for the client to take it: 128 stalled chat streams held
  1.3 GiB for as long as their sockets stayed open (R20-1). From when the buffer passes its
  high-water mark, or the transport is closed with bytes still to send, a client that takes none of
  them for `write_stall_s` has its connection aborted and the buffer freed.
- **A deadline for request headers.** uvicorn arms its keep-alive timer only after a response, so
  a connection that never finishes its headers is kept for ever: 20,000 of them held every file
  descriptor and every other user's request failed (R18-3). Each connection now has
  `request_header_timeout_s` to send its headers, from when it opened or its last response ended.
- **A cap on open connections**, below the file-descriptor limit, so that a flood of connections
  leaves the process the descriptors its store, sources and engines need. At the cap a new
  connection takes the place of the one that has waited longest for request headers (an idle or
  stalling one: a client sends its headers at once); only when every connection is being answered
  is the new one closed.
- uvloop runs the event loop when it is installed (`loop="auto"`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import struct
from collections import OrderedDict
from typing import Any

import h11
import uvicorn
from h11._readers import ChunkedReader, maybe_read_from_IDLE_client
from h11._receivebuffer import ReceiveBuffer
from uvicorn.protocols.http.h11_impl import H11Protocol

from loom.settings import Settings

log = logging.getLogger(__name__)
FD_RESERVE = 256  # descriptors kept for the store, sources, engines' pipes and logs
MAX_HEADER_BYTES = 16 * 1024  # h11's own bound for headers that arrive in pieces
MAX_HEADER_LINES = 100  # as Apache's and Go's defaults (LimitRequestFields 100)
MAX_CHUNK_LINE = 1024  # a chunk's size line; its extensions are never read
# Chunks of one body: each costs h11 and uvicorn ~16 µs of the loop, and a kept-alive connection
# sends body after body (4,096 one-byte chunks a request made other users' turns 10x slower:
# probe 24, R24-2). A client streaming a JSON body sends a few large ones; 256 still lets a
# 64 KiB message come 256 bytes a chunk.
MAX_CHUNKS = 256


class _BoundedChunks:
    """h11's chunked-body reader, refusing trailers past the header bounds and chunk-size lines past
    MAX_CHUNK_LINE before h11 parses them (it parses whatever arrived whole, at any size)."""

    def __init__(self, reader: ChunkedReader) -> None:
        self._reader = reader
        self._chunks = 0

    def __call__(self, buf: ReceiveBuffer) -> Any:
        inner = self._reader
        data = buf._data  # noqa: SLF001  # h11's buffer: searched in place, never copied
        if inner._reading_trailer:  # noqa: SLF001
            _check_trailers(data, 0)
        elif inner._bytes_in_chunk == 0:  # noqa: SLF001  # a chunk-size line is next (after a chunk's \r\n)
            start = len(inner._bytes_to_discard)  # noqa: SLF001
            line_end = data.find(b"\n", start, start + MAX_CHUNK_LINE)
            if line_end < 0 and len(data) - start > MAX_CHUNK_LINE:
                raise h11.RemoteProtocolError(f"a chunk-size line past {MAX_CHUNK_LINE} bytes")
            if line_end >= 0 and _is_last_chunk(data[start:line_end]):
                _check_trailers(data, line_end + 1)  # h11 reads them in the same call
        event = inner(buf)
        if isinstance(event, h11.Data) and event.chunk_start:
            self._chunks += 1
            if self._chunks > MAX_CHUNKS:
                raise h11.RemoteProtocolError(f"a chunked body of more than {MAX_CHUNKS} chunks")
        return event

    def read_eof(self) -> Any:
        return self._reader.read_eof()


def _is_last_chunk(line: bytearray) -> bool:
    size = line.split(b";", 1)[0].strip()
    return bool(size) and not size.strip(b"0")


def _check_trailers(data: bytearray, start: int) -> None:
    """Trailers from `start` (none: an empty line) within the bounds of request headers."""
    if not data.startswith(b"\r\n", start):
        _check_block(data, start, "chunked body trailers")


def _check_block(data: bytearray, start: int, what: str) -> None:
    """The header block from `start` (to its empty line, or all there is) within the bounds."""
    end = data.find(b"\r\n\r\n", start, start + MAX_HEADER_BYTES + 4)
    lines = data.count(b"\n", start, end if end >= 0 else start + MAX_HEADER_BYTES)
    if (end < 0 and len(data) - start > MAX_HEADER_BYTES) or lines >= MAX_HEADER_LINES:
        raise _TooLarge(f"{what} past {MAX_HEADER_BYTES} bytes or {MAX_HEADER_LINES} lines")


class _TooLarge(h11.RemoteProtocolError):
    """A header block past the bounds."""


def _bounded_request_head(buf: ReceiveBuffer) -> h11.Request | None:
    """h11's reader of a request's head, after the bounds: the protocol counts what arrives while
    it waits for a request, but a request pipelined behind another was already in h11's buffer
    when its turn came, and h11 parses what it holds at any size (12,000 header lines in 60 ms:
    probe 22, R22-5). Under 400 bytes a block cannot pass either bound (a header line is 4 at least)."""
    data = buf._data  # noqa: SLF001
    if len(data) >= 4 * MAX_HEADER_LINES:
        _check_block(data, 0, "request headers")
    return maybe_read_from_IDLE_client(buf)


class _BoundedConnection(h11.Connection):
    """h11's connection, whose readers of a request's head and of a chunked body keep to the header
    bounds. `_get_io_object` is where h11 picks a reader (private, stable since h11 0.9;
    tests/api/test_server.py would see a change)."""

    head_too_large = False  # a request's head broke the bounds: answered 431, not uvicorn's 400

    def _get_io_object(self, role: Any, event: Any, io_dict: Any) -> Any:
        made = super()._get_io_object(role, event, io_dict)
        if made is maybe_read_from_IDLE_client:
            return self._read_head
        return _BoundedChunks(made) if isinstance(made, ChunkedReader) else made

    def _read_head(self, buf: ReceiveBuffer) -> h11.Request | None:
        try:
            return _bounded_request_head(buf)
        except h11.RemoteProtocolError as e:
            self.head_too_large = isinstance(e, _TooLarge)
            raise


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (set by `bounded_h11`)."""

    header_timeout_s = 15.0
    write_stall_s = 60.0
    max_connections = 4096
    max_header_bytes = MAX_HEADER_BYTES
    max_header_lines = MAX_HEADER_LINES
    # The server's connections waiting for request headers, longest first (one dict per server).
    awaiting: OrderedDict[BoundedH11Protocol, None] = OrderedDict()
    _deadline: asyncio.TimerHandle | None = None
    _write_deadline: asyncio.TimerHandle | None = None
    _write_waiting = 0  # bytes waiting to be sent when the write deadline was set
    _header_bytes = 0  # bytes of the request headers being received, before their end is seen
    _header_lines = 0  # and their lines

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _BoundedConnection(h11.SERVER, self.conn._max_incomplete_event_size)  # noqa: SLF001

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_WatchedClose(transport, self._closed_with_pending))  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections and not self._evict_one():
            log.warning(
                "%d connections open, none idle, over the cap of %d: one refused",
                len(self.connections),
                self.max_connections,
            )
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            if self._deadline is None:
                self._arm()  # the next request on a kept-alive connection: its headers have the same time
            if self._headers_too_large(data):
                self._refuse_headers()
                return
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # a request's headers are in
            self._header_bytes = self._header_lines = 0

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers a request whose body turns out malformed (a bad chunk line, trailers past
        the bounds) with a 400 while the app, started at the headers, is answering it too: the app's
        answer then failed in h11 with two tracebacks logged, 4.5 ms a request. The app is told the
        client has gone, so its answer is dropped; the 400 goes only if the app has not begun one."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            if isinstance(self.conn, _BoundedConnection) and self.conn.head_too_large:
                self._refuse_headers()  # a pipelined request's head, read from h11's buffer
                return
            super().send_400_response(msg)
            return
        cycle.disconnected = True
        cycle.message_event.set()
        if cycle.response_started:
            self.transport.close()
        else:
            super().send_400_response(msg)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._arm_write()

    def _closed_with_pending(self) -> None:
        if self._write_deadline is None and self.transport.get_write_buffer_size() > 0:
            self._arm_write()

    def _arm_write(self) -> None:
        self._write_waiting = self.transport.get_write_buffer_size()
        self._write_deadline = self.loop.call_later(self.write_stall_s, self._write_overdue)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_write_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            # Answered before its body ended (a 401, a 413): the rest would be read for nothing,
            # for ever, and a body of one-byte chunks costs the loop per chunk: one connection
            # without a token held it 32 s (probe 23: R23-2). Closed once the answer is sent.
            self.transport.close()
        if not self.transport.is_closing():
            self._arm()  # idle until the next request: it may be dropped for a new connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stop_write_deadline()
        super().connection_lost(exc)

    def _headers_too_large(self, data: bytes) -> bool:
        end = data.find(b"\r\n\r\n")
        seen = self._header_bytes + (len(data) if end < 0 else end)
        lines = self._header_lines + data.count(b"\n", 0, len(data) if end < 0 else end)
        self._header_bytes, self._header_lines = (seen, lines) if end < 0 else (0, 0)
        return seen > self.max_header_bytes or lines >= self.max_header_lines

    def _refuse_headers(self) -> None:
        body = f"request headers over {self.max_header_bytes} bytes or {self.max_header_lines} lines".encode()
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        self._disarm()
        self.transport.write(head + body)
        self.transport.close()

    def _write_overdue(self) -> None:
        self._write_deadline = None
        waiting = self.transport.get_write_buffer_size()
        if waiting == 0:
            return
        if waiting < self._write_waiting:  # the client took some: it is slow, not stalled
            self._arm_write()
            return
        log.warning(
            "a client took no data for %g s with %d bytes waiting to be sent: connection aborted",
            self.write_stall_s,
            self.transport.get_write_buffer_size(),
        )
        self._disarm()
        _discard_unsent(self.transport)
        self.transport.abort()

    def _stop_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for request headers, to make room: a client
        sends its headers at once, so connections that wait are idle or stalling (R18-3: 20,000
        half-open ones). False when none waits: every connection is being answered."""
        while self.awaiting:
            oldest, _ = self.awaiting.popitem(last=False)
            busy = oldest.cycle is not None and not oldest.cycle.response_complete
            if oldest is not self and not busy and not oldest.transport.is_closing():
                oldest._disarm()
                oldest.transport.close()
                return True
        return False

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._headers_overdue)
        self.awaiting[self] = None

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.awaiting.pop(self, None)

    def _headers_overdue(self) -> None:
        self._deadline = None
        self.awaiting.pop(self, None)
        answering = self.cycle is not None and not self.cycle.response_complete
        if not answering and not self.transport.is_closing():
            self.transport.close()


def _discard_unsent(transport: asyncio.BaseTransport) -> None:
    """Linger 0: the kernel drops what it still holds for the client and resets the connection,
    instead of keeping it (up to the socket's send buffer) until the client reads."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, AttributeError):  # not a TCP socket (a test transport)
        pass


class _WatchedClose:
    """The transport, telling the protocol when it is closed: uvicorn closes it when a response is
    given up, and a close waits for the client to take what is buffered."""

    def __init__(self, transport: asyncio.Transport, closed: Any) -> None:
        self._transport = transport
        self._closed = closed

    def close(self) -> None:
        self._transport.close()
        self._closed()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def bounded_h11(
    header_timeout_s: float, max_connections: int, write_stall_s: float = 60.0
) -> type[BoundedH11Protocol]:
    """The protocol class with these bounds (uvicorn builds one per connection from the class)."""
    bounds = {
        "header_timeout_s": header_timeout_s,
        "max_connections": max_connections,
        "write_stall_s": write_stall_s,
        "awaiting": OrderedDict(),
    }
    return type("LoomH11Protocol", (BoundedH11Protocol,), bounds)


def connection_cap(wanted: int) -> int:
    """`wanted`, or fewer when the process may not open that many descriptors and keep a reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - FD_RESERVE))


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's config for the API `app` under `settings`."""
    protocol = bounded_h11(
        settings.request_header_timeout_s, connection_cap(settings.max_connections), settings.response_stall_s
    )
    return uvicorn.Config(app, http=protocol, loop="auto", log_level=settings.log_level, **options)
