"""What one model call may cost the process, whatever the endpoint sends: how much it writes, and how long.

`max_tokens` is a request, and an endpoint may ignore it: a model server that streamed 100 MB of
text had it held, sent and stored whole (a 105 MB page read back), and one that wrote 50 MB of tool
arguments four rounds running cost 45 s of CPU in one turn (probe 21: R21-1). The SDK's timeout
is per read, so a server sending a character every 20 s held a turn for 17 minutes (R21-4). So each
call is bounded here, for every model (the configured endpoint, the offline stand-in, a test's
script): the characters of its text and tool arguments, the pieces they come in (about one a
token: twice max_tokens is plenty, and each piece costs the SDK its parse whatever its size), and a
deadline for the whole call, retries included.
Past either, the call ends as a ModelError the user reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from loom.agent.model import (
    ChatMessage,
    ChatModel,
    ModelError,
    ModelEvent,
    ModelReply,
    TextDelta,
    ToolCallDelta,
)
from loom.settings import Settings


@dataclass(frozen=True)
class ReplyBounds:
    max_chars: int = 262_144  # text and tool-call arguments of one reply
    deadline_s: float = 300.0  # one call, from the request to its last byte
    # Pieces of one reply: an endpoint sends about one per token, and each costs the SDK ~0.5 ms to
    # parse whatever its size (26,000 pieces of 10 characters: 13 s of CPU and 120 MiB in MAF).
    max_events: int = 2 * 1024 + 64
    # Tool calls of one reply: each runs, is sent and stored; 5,000 in a reply cost 59 s of CPU and
    # other users' turns waited 21 s (probe 22: R22-1).
    max_calls: int = 16

    @classmethod
    def of(cls, settings: Settings) -> ReplyBounds:
        tokens = settings.model_max_output_tokens
        events = 2 * tokens + 64 if tokens is not None else 8_192
        return cls(
            settings.model_max_reply_chars,
            settings.model_deadline_s,
            events,
            settings.max_tool_calls_per_reply,
        )

    def too_long(self) -> ModelError:
        return ModelError(
            f"The model's reply passed {self.max_chars:,} characters (LOOM_MODEL_MAX_REPLY_CHARS) and was "
            "stopped: the endpoint did not keep to the requested max_tokens."
        )

    def too_many(self) -> ModelError:
        return ModelError(
            f"The model's reply passed {self.max_events:,} pieces (twice LOOM_MODEL_MAX_OUTPUT_TOKENS) and "
            "was stopped: the endpoint did not keep to the requested max_tokens."
        )

    def too_slow(self) -> ModelError:
        return ModelError(
            f"The model did not finish its reply within {self.deadline_s:g}s (LOOM_MODEL_DEADLINE_S)."
        )

    def too_many_calls(self) -> ModelError:
        return ModelError(
            f"The model asked for more than {self.max_calls} tool calls in one reply "
            "(LOOM_MAX_TOOL_CALLS_PER_REPLY); none of them was run."
        )

    def check(self, reply: ModelReply) -> ModelReply:
        if reply_chars(reply) > self.max_chars:
            raise self.too_long()
        if len(reply.tool_calls) > self.max_calls:
            raise self.too_many_calls()
        return reply


def reply_chars(reply: ModelReply) -> int:
    return len(reply.text) + sum(len(c.arguments) + len(c.name) for c in reply.tool_calls)


def _chars(event: ModelEvent) -> int:
    if isinstance(event, TextDelta):
        return max(1, len(event.text))
    if isinstance(event, ToolCallDelta):
        return max(1, len(event.arguments) + len(event.name or ""))
    return 0  # the reply itself is checked whole


async def bounded(stream: AsyncIterator[ModelEvent], bounds: ReplyBounds) -> AsyncIterator[ModelEvent]:
    """`stream`, ended by a ModelError once it writes or takes more than `bounds` allow. The deadline
    covers only the waits for the model, not the time its consumer takes with each event."""
    clock = asyncio.get_running_loop().time
    waited, written, pieces, calls = 0.0, 0, 0, 0
    async with aclosing(stream) as events:  # type: ignore[type-var]  # every model's stream is a generator
        while True:
            started = clock()
            waiting = asyncio.timeout(bounds.deadline_s - waited)
            try:
                async with waiting:
                    event = await anext(events)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if waiting.expired():
                    raise bounds.too_slow() from None
                raise
            waited += clock() - started
            written, pieces = written + _chars(event), pieces + 1
            if written > bounds.max_chars:
                raise bounds.too_long()
            if pieces > bounds.max_events:
                raise bounds.too_many()
            calls += isinstance(event, ToolCallDelta) and event.name is not None  # its first piece
            if calls > bounds.max_calls:
                raise bounds.too_many_calls()
            yield bounds.check(event) if isinstance(event, ModelReply) else event


class BoundedModel:
    """A ChatModel whose every call keeps to `bounds`."""

    def __init__(self, model: ChatModel, bounds: ReplyBounds) -> None:
        self.model, self.bounds, self.name = model, bounds, model.name

    def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> AsyncIterator[ModelEvent]:
        return bounded(self.model.stream(messages, tools), self.bounds)

    async def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> ModelReply:
        waiting = asyncio.timeout(self.bounds.deadline_s)
        try:
            async with waiting:
                reply = await self.model.complete(messages, tools)
        except TimeoutError:
            if waiting.expired():
                raise self.bounds.too_slow() from None
            raise
        return self.bounds.check(reply)
