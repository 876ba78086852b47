"""Conversation memory: the store interface. SQLite implements it here; PostgreSQL or Cosmos DB later.

Every call takes the Principal: a conversation belongs to one tenant and one user, and anyone
else gets `None`/`False` (which the API turns into 404), never another tenant's data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from loom.agent.model import ChatMessage, ToolCall
from loom.identity import Principal

MAX_SEQ = 2**62  # past every message's seq: a page without `before` starts at the newest


class ConversationFull(Exception):
    """The conversation holds as many messages as one may: the next question starts a new one."""

    def __init__(self, conversation_id: str, most: int) -> None:
        super().__init__(
            f"conversation {conversation_id!r} has reached {most:,} messages; start a new conversation"
        )
        self.conversation_id = conversation_id


class ConversationNotFound(LookupError):
    """No conversation with this id for this principal (another tenant's or user's is never found)."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"no conversation {conversation_id!r} for this user")
        self.conversation_id = conversation_id


class Conversation(BaseModel):
    id: str
    tenant_id: str
    user_id: str
    title: str
    created_at: dt.datetime
    updated_at: dt.datetime


class StoredMessage(BaseModel):
    id: str
    conversation_id: str
    seq: int
    role: str
    content: str
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_call_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: dt.datetime

    def to_chat(self) -> ChatMessage:
        calls = tuple(ToolCall(**c) for c in self.tool_calls)
        return ChatMessage(
            role=self.role,  # type: ignore[arg-type]
            content=self.content,
            tool_calls=calls,
            tool_call_id=self.tool_call_id,
        )


@dataclass(frozen=True)
class StoredText:
    """A message as the store holds it, its JSON fields left as JSON text: what a reader's page is
    written from without decoding and encoding again megabytes of result tables (probe 15: R15-5)."""

    id: str
    seq: int
    role: str
    content: str
    tool_calls: str  # JSON: [{"id", "name", "arguments"}]
    tool_call_id: str | None
    metadata: str  # JSON object
    created_at: str  # ISO 8601 with its offset


@dataclass(frozen=True)
class StoreUsage:
    """What a user's conversations hold, and their whole tenant's, in bytes of stored text."""

    user_bytes: int
    tenant_bytes: int


class ConversationStore(Protocol):
    async def create_conversation(
        self,
        principal: Principal,
        title: str,
        conversation_id: str | None = None,
        messages: Sequence[ChatMessage] = (),
        metadata: list[dict[str, Any]] | None = None,
    ) -> Conversation:
        """Create it (or return the caller's own with that id) with its first messages, in one
        transaction; an id another principal holds is refused."""
        ...

    async def get_conversation(self, principal: Principal, conversation_id: str) -> Conversation | None: ...

    async def list_conversations(self, principal: Principal, limit: int = 50) -> list[Conversation]: ...

    async def delete_conversation(self, principal: Principal, conversation_id: str) -> bool: ...

    async def usage(self, principal: Principal) -> StoreUsage:
        """What the principal's conversations hold, and their tenant's (for the storage quotas)."""
        ...

    async def append_messages(
        self,
        principal: Principal,
        conversation_id: str,
        messages: list[ChatMessage],
        metadata: list[dict[str, Any]] | None = None,
    ) -> list[StoredMessage]:
        """Append in one transaction: all of them are stored, or none."""
        ...

    async def messages(
        self,
        principal: Principal,
        conversation_id: str,
        *,
        before: int | None = None,
        limit: int | None = None,
        max_bytes: int | None = None,
        with_metadata: bool = True,
    ) -> list[StoredMessage]:
        """The newest messages, in order: those before seq `before`, at most `limit` of them, and
        no more once `max_bytes` of content (and metadata) are read — the newest one always.
        `with_metadata=False` keeps of the metadata only the source a result came from (what a
        turn's history needs): the rest holds result tables of up to 8 MiB each."""
        ...

    async def message_texts(
        self,
        principal: Principal,
        conversation_id: str,
        *,
        before: int | None = None,
        limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[StoredText]:
        """The page `messages` reads with its metadata, as stored text (for readers of the API)."""
        ...

    async def last_seq(self, principal: Principal, conversation_id: str) -> int:
        """The seq of the conversation's newest message (0 when it has none)."""
        ...

    async def close(self) -> None: ...
