"""The model seam: our own small message types and the ChatModel protocol the turn loop calls.

The loop, the tools and the stores speak these types; `model_maf.py` adapts them to Microsoft Agent
Framework's chat-completions client, `testing.py` scripts them, `offline.py` answers without a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model wrote it


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call as it streams: the first piece names it, later ones add arguments."""

    id: str
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ModelReply:
    """What one model call produced once complete."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: dict[str, Any] = field(default_factory=dict)
    finish: str | None = None  # the endpoint's finish_reason: "length" means the reply was cut

    def as_message(self) -> ChatMessage:
        return ChatMessage(role="assistant", content=self.text, tool_calls=self.tool_calls)


ModelEvent = TextDelta | ToolCallDelta | ModelReply


class ModelError(Exception):
    """The model endpoint failed after retries; the message is meant for the user."""


class ChatModel(Protocol):
    """One model endpoint. `stream` ends with exactly one ModelReply."""

    name: str

    def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> AsyncIterator[ModelEvent]: ...

    async def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> ModelReply: ...
