"""The one place the chat stream is serialized: AG-UI events → Server-Sent Events.

A failure inside the turn must not look like a dropped connection to the client, so an exception ends
the stream with a RUN_ERROR event. When the client goes away, the turn's iterator is closed at once, so
nothing it holds (model calls, queries) outlives the request.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

import anyio
from ag_ui.core import BaseEvent, EventType, RunErrorEvent
from ag_ui.encoder import EventEncoder
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from loom.agent.model import ModelError

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# A client that takes nothing for this long has gone (or is parking the stream): the response ends,
# and the turn with it, freeing what its results hold (probe 14: pages and streams left unread).
STALL_S = 60.0
_TERMINAL = {EventType.RUN_FINISHED, EventType.RUN_ERROR}


def _error_event(error: Exception) -> RunErrorEvent:
    if isinstance(error, ModelError):
        # ModelError messages are written for the user (see loom.agent.model).
        return RunErrorEvent(message=str(error), code="model_error")
    # Anything else may carry internals (paths, SQL); the user gets a reference to the log line instead.
    reference = uuid.uuid4().hex[:12]
    log.error("turn failed mid-stream (ref %s)", reference, exc_info=error)
    return RunErrorEvent(
        message=f"The turn failed on the server ({type(error).__name__}); reference {reference}.",
        code="internal_error",
    )


async def encode_events(events: AsyncIterator[BaseEvent]) -> AsyncGenerator[bytes, None]:
    """SSE bytes for each event; an exception becomes a final RUN_ERROR (unless the run already ended)."""
    encoder = EventEncoder()
    ended = False
    try:
        async for event in events:
            ended = ended or event.type in _TERMINAL
            yield encoder.encode(event).encode("utf-8")
    except Exception as error:  # every failure must reach the client as an event
        if ended:
            log.warning("turn raised after its last event", exc_info=error)
            return
        yield encoder.encode(_error_event(error)).encode("utf-8")
    finally:
        await _close(events)


async def _close(events: AsyncIterator[BaseEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        # Shielded: on disconnect we run inside a cancelled scope, and the turn must still be closed.
        with anyio.CancelScope(shield=True):
            await aclose()


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` of AG-UI events that closes the event source however the response ends."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[BaseEvent], stall_s: float = STALL_S) -> None:
        self._events, self._stall_s = events, stall_s
        self._body = encode_events(events)
        super().__init__(self._body, headers=SSE_HEADERS, media_type=self.media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, stalls_after(send, self._stall_s))
        except StalledClient as e:
            log.warning("%s; the turn is closed", e)
        finally:
            # Starlette stops iterating on disconnect but never closes the iterator; we do.
            with anyio.CancelScope(shield=True):
                await self._body.aclose()
            await _close(self._events)


class StalledClient(Exception):
    """The client took nothing for the stall limit: the response is given up."""


def stalls_after(send: Send, seconds: float) -> Send:
    """`send`, raising StalledClient when one call waits longer than `seconds` (flow control holds
    a send while the client does not read)."""

    async def bounded(message: Message) -> None:
        try:
            with anyio.fail_after(seconds):
                await send(message)
        except TimeoutError as e:
            raise StalledClient(f"the client took no data for {seconds:g} s") from e

    return bounded


def sse_response(events: AsyncIterator[BaseEvent], stall_s: float = STALL_S) -> EventStreamResponse:
    """The response; `stall_s` is LOOM_RESPONSE_STALL_S (probe 21: R21-9 found it unused here)."""
    return EventStreamResponse(events, stall_s)
