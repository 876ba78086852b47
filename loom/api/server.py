"""The HTTP server under the API: uvicorn on h11, with the bounds uvicorn leaves out.

- **h11, not httptools.** uvicorn's httptools protocol has no bound on header bytes and turns every
  pipelined request it has read into a pending cycle: a stream of header lines took the server to
  6.3 GiB (17× the bytes sent) and 100 MiB of pipelined GETs to 7.7 GiB (probe 18: R18-1, R18-2).
  h11 refuses headers past 16 KiB and stops reading while a request is being answered.
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
from collections import OrderedDict
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from loom.settings import Settings

log = logging.getLogger(__name__)
FD_RESERVE = 256  # descriptors kept for the store, sources, engines' pipes and logs


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (set by `bounded_h11`)."""

    header_timeout_s = 15.0
    max_connections = 4096
    # The server's connections waiting for request headers, longest first (one dict per server).
    awaiting: OrderedDict[BoundedH11Protocol, None] = OrderedDict()
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
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
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on a kept-alive connection: its headers have the same time
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # a request's headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # idle until the next request: it may be dropped for a new connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

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


def bounded_h11(header_timeout_s: float, max_connections: int) -> type[BoundedH11Protocol]:
    """The protocol class with these bounds (uvicorn builds one per connection from the class)."""
    bounds = {
        "header_timeout_s": header_timeout_s,
        "max_connections": max_connections,
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
    protocol = bounded_h11(settings.request_header_timeout_s, connection_cap(settings.max_connections))
    return uvicorn.Config(app, http=protocol, loop="auto", log_level=settings.log_level, **options)
