"""How many JSON objects and arrays a model's response may hold, checked before the SDK builds it.

The openai SDK builds a model object for every entry of a typed array (`choices`, `tool_calls`,
`logprobs`), ~125 µs each on the event loop, whatever the bytes: 2.5 MiB of extra `choices`,
within every bound on size, held the loop 7.3 s (probe 25: R25-1). A reply asked for one choice
holds a few dozen containers: so each response is parsed here first (the C decoder: a fraction of
what the SDK's building costs) and its containers counted, with an early stop:
- a reply not streamed (one JSON document) at most `DOCUMENT` plus two per tool call allowed;
- each event of a stream at most `PER_EVENT`, and the stream in all `PER_EVENT_ON_AVERAGE` an event.
A response past them, or a `data:` line that is not one JSON value, is refused as a whole; so is
one with more than one choice, or with log probabilities, which were not asked for (each entry of
either is one the SDK builds).
"""

from __future__ import annotations

import json
import re

# Azure adds content-filter results, five objects a choice and more for the prompt: room for them.
DOCUMENT = 96
PER_EVENT = 32  # a chunk, its choices, a choice, its delta, a tool call and its function, filters…
PER_EVENT_ON_AVERAGE = 12
_LINE_END = re.compile(rb"\r\n|\r|\n")  # as the SDK's SSE decoder splits lines


class ShapeError(ValueError):
    """The response holds more than a reply of the asked-for shape would."""


class ShapeCheck:
    """Fed a response's bytes as they arrive; raises ShapeError as soon as they pass the bounds."""

    def __init__(self, max_events: int, max_calls: int, streamed: bool) -> None:
        self._document_most = DOCUMENT + 2 * max_calls
        self._stream_left = PER_EVENT_ON_AVERAGE * max_events
        # As the request asked, which is how the SDK reads it: guessed from the first byte, a
        # byte-order mark or a first line of `{}` turned the check off (probe 26: R26-1, R26-2).
        self._mode = "stream" if streamed else "document"
        self._pending = bytearray()  # the document, or the stream's line not yet ended

    def feed(self, chunk: bytes) -> None:
        if self._mode == "document" or (b"\n" not in chunk and b"\r" not in chunk):
            self._pending += chunk  # appended in place: a line sent a byte at a time stays linear
            return
        *lines, rest = _LINE_END.split(bytes(self._pending) + chunk)
        self._pending = bytearray(rest)
        for line in lines:
            self._event(line)

    def end(self) -> None:
        if self._mode == "document":
            _count(_asked_for(_parsed(bytes(self._pending))), self._document_most, "its reply")
        elif self._pending:
            self._event(bytes(self._pending))

    def _event(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        in_all = self._stream_left < PER_EVENT  # what is left of the stream's budget bounds this event
        what = "its stream, in all," if in_all else "an event of its stream"
        counted = _count(_asked_for(_parsed(data)), min(PER_EVENT, self._stream_left), what)
        self._stream_left -= counted


def _parsed(data: bytes) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # not JSON, or nested past the decoder's depth
        raise ShapeError(f"a part of its reply is not JSON ({type(e).__name__})") from None


def _asked_for(value: object) -> object:
    """`value`, when it holds one choice at most and no log probabilities."""
    choices = value.get("choices") if isinstance(value, dict) else None
    if isinstance(choices, list) and len(choices) > 1:
        raise ShapeError(f"its reply holds {len(choices)} choices, though one was asked for")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and choice.get("logprobs"):
            raise ShapeError("its reply holds log probabilities, though none were asked for")
    return value


def _count(value: object, most: int, what: str) -> int:
    """The objects and arrays in `value`, walked without recursion, stopping past `most`."""
    stack, counted = [value], 0
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            continue
        counted += 1
        if counted > most:
            raise ShapeError(f"{what} holds more JSON objects and arrays than a reply of one choice would")
    return counted
