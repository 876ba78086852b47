"""A scripted model for tests and benchmarks: queue replies, record every call.

Replies are either fixed (`text`, `tool_call`) or functions of the request (`respond`), so a test
scripts behaviour by conversation state, not by matching exact prompt strings.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loom.agent.model import ChatMessage, ModelEvent, ModelReply, TextDelta, ToolCall, ToolCallDelta

Responder = Callable[[Sequence[ChatMessage], Sequence[dict[str, Any]]], ModelReply]
_ids = itertools.count(1)


def text(content: str) -> ModelReply:
    return ModelReply(text=content)


def tool_call(name: str, arguments: dict[str, Any], call_id: str | None = None) -> ModelReply:
    call = ToolCall(id=call_id or f"call_{next(_ids)}", name=name, arguments=json.dumps(arguments))
    return ModelReply(tool_calls=(call,))


def tool_calls(*calls: tuple[str, dict[str, Any]]) -> ModelReply:
    made = tuple(ToolCall(id=f"call_{next(_ids)}", name=n, arguments=json.dumps(a)) for n, a in calls)
    return ModelReply(tool_calls=made)


def sql_block(query: str) -> ModelReply:
    return ModelReply(text=f"```sql\n{query}\n```")


@dataclass
class RecordedCall:
    messages: list[ChatMessage]
    tools: list[dict[str, Any]]
    streamed: bool


class ScriptExhausted(AssertionError):
    """The code under test made more model calls than the test scripted."""


class FailingModel:
    """Every call fails as an endpoint that is down would, after its retries."""

    name = "failing"

    def __init__(self, message: str = "The model endpoint is unreachable") -> None:
        self.message = message

    async def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> ModelReply:
        from loom.agent.model import ModelError

        raise ModelError(self.message)

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> AsyncIterator[ModelEvent]:
        await self.complete(messages, tools)
        yield ModelReply()  # pragma: no cover - unreachable, keeps this an async generator


@dataclass
class ScriptedModel:
    """Answers each call with the next queued reply; streams text in `chunk`-sized deltas."""

    replies: list[ModelReply | Responder] = field(default_factory=list)
    chunk: int = 8
    name: str = "scripted"
    calls: list[RecordedCall] = field(default_factory=list)

    def queue(self, *replies: ModelReply | Responder) -> ScriptedModel:
        self.replies.extend(replies)
        return self

    def _next(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]]) -> ModelReply:
        if not self.replies:
            raise ScriptExhausted(f"scripted model has no reply for call #{len(self.calls)}")
        reply = self.replies.pop(0)
        return reply(messages, tools) if callable(reply) else reply

    async def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> ModelReply:
        self.calls.append(RecordedCall(list(messages), list(tools), streamed=False))
        return self._next(messages, tools)

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> AsyncIterator[ModelEvent]:
        self.calls.append(RecordedCall(list(messages), list(tools), streamed=True))
        reply = self._next(messages, tools)
        for i in range(0, len(reply.text), self.chunk):
            yield TextDelta(reply.text[i : i + self.chunk])
        for call in reply.tool_calls:
            yield ToolCallDelta(id=call.id, name=call.name)
            yield ToolCallDelta(id=call.id, arguments=call.arguments)
        yield reply
