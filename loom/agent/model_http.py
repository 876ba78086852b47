"""The HTTP client to the model endpoint: the openai SDK's own, with every response bounded as it is read.

A reply is bounded in characters and pieces as it streams (`reply_bounds`), but only what MAF turns
into an update reaches that count. Below it:
- **bytes**: a reply not streamed is read whole by the SDK before anything can count it, and
  parsed whole; as many as the reply bounds allow its text, in JSON (`response_bytes`);
- **SSE events**: each costs the SDK a parse whatever it holds, and those that carry nothing
  (`"choices": []`, an empty delta) become no update at all: 200,000 of them took 21 s of the
  server's CPU (probe 22: R22-2). A stream may hold as many events as a reply may have pieces, and
  a few more (its role, its end, its usage, `[DONE]`).
- **its shape**: objects and arrays, each of which the SDK builds (`reply_shape`).
Past any, reading stops with ResponseTooLarge: an OpenAIError, which the SDK neither retries
nor wraps, and which the model seam turns into the user's model_error.

Both are counted on the bytes the SDK parses, whatever the response says of itself: the SDK reads
a streamed reply as SSE whatever its content type (200,000 empty events as `text/plain` took 17 s),
and httpx inflates a compressed body after this count (10.7 KB of gzip held the loop 19 s, 0.5 MB
inflated to 512 MiB: probe 23, R23-1 and R23-4). So requests ask for no compression, and a body
compressed all the same is refused before it is read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import openai

from loom.agent.reply_bounds import ReplyBounds
from loom.agent.reply_shape import ShapeCheck, ShapeError

EVENTS_BEYOND_PIECES = 16
SSE_EVENT = b"data:"
# Line ends per event: `data: …` and an empty line, each ended by CR, LF or CRLF (the SDK splits
# lines at any of them: a stream of lone CRs was 19 s of its decoder: probe 24, R24-1), with room
# for `id:` or `event:` lines.
LINE_ENDS_PER_EVENT = 8
# Bytes a character of the reply may take in JSON (`\uXXXX`), and the framing of an event: what
# the reply bounds allow, in bytes. 32 MiB of tiny JSON values (`{},`) in a reply not streamed
# held the loop 2.5 s and 800 MB while the SDK parsed them (R24-4).
BYTES_PER_CHAR, BYTES_PER_EVENT = 6, 512


def response_bytes(bounds: ReplyBounds) -> int:
    """The most bytes a response may hold: about 2.6 MiB with the default bounds."""
    return BYTES_PER_CHAR * bounds.max_chars + BYTES_PER_EVENT * (bounds.max_events + EVENTS_BEYOND_PIECES)


class ResponseTooLarge(openai.OpenAIError):
    """Raised while the body is read (or before, for a compressed one)."""


class _CappedBody(httpx2.AsyncByteStream):
    def __init__(
        self,
        body: httpx2.AsyncByteStream,
        max_bytes: int,
        max_events: int | None,
        shape: ShapeCheck | None = None,
    ) -> None:
        self._body, self._max_bytes, self._max_events, self._shape = body, max_bytes, max_events, shape

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._counted():
                if self._shape is not None:
                    self._shape.feed(chunk)
                yield chunk
            if self._shape is not None:
                self._shape.end()
        except ShapeError as e:
            raise ResponseTooLarge(str(e)) from None

    async def _counted(self) -> AsyncIterator[bytes]:
        read = events = line_ends = 0
        tail = b""  # the last bytes of the chunk before: an event's `data:` may be split between two
        async for chunk in self._body:
            read += len(chunk)
            if read > self._max_bytes:
                raise ResponseTooLarge(f"its response passed {self._max_bytes:,} bytes")
            if self._max_events is not None:
                seen = tail + chunk
                events += seen.count(SSE_EVENT)
                # Lines too: comments and fields without data cost the SDK's decoder a line each.
                line_ends += chunk.count(b"\n") + chunk.count(b"\r")
                tail = seen[-(len(SSE_EVENT) - 1) :]
                if events > self._max_events or line_ends > LINE_ENDS_PER_EVENT * self._max_events:
                    raise ResponseTooLarge(f"its stream passed {self._max_events:,} events")
            yield chunk

    async def aclose(self) -> None:
        await self._body.aclose()


def response_cap(bounds: ReplyBounds) -> Callable[[httpx2.Response], Awaitable[None]]:
    """An httpx response hook: the body is read through a counter (the hook runs before it is)."""
    events, most = bounds.max_events + EVENTS_BEYOND_PIECES, response_bytes(bounds)

    async def cap(response: httpx2.Response) -> None:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            await response.aclose()
            raise ResponseTooLarge(f"it sent a {encoding}-compressed reply, though asked for none")
        if isinstance(response.stream, httpx2.AsyncByteStream):
            shape = ShapeCheck(events, bounds.max_calls, streamed=_asks_stream(response.request))
            response.stream = _CappedBody(response.stream, most, events, shape)

    return cap


def _asks_stream(request: httpx2.Request) -> bool:
    """Whether the request asked for a stream: how the SDK will read the response, whatever it is."""
    try:
        body = json.loads(request.content or b"{}")
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("stream") is True


def capped_http_client(bounds: ReplyBounds) -> httpx2.AsyncClient:
    """The SDK's own default client (its timeouts, pool limits, proxies from the environment),
    asking for uncompressed replies, with every response bounded."""
    return openai.DefaultAsyncHttpxClient(
        headers={"Accept-Encoding": "identity"}, event_hooks={"response": [response_cap(bounds)]}
    )
