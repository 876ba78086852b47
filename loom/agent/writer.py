"""Persistence off the critical path: one turn's writes run in order in the background.

Once the user's message is stored (the run waits for that before it announces itself), the next
round does not wait for the last one's writes. Messages queued while a write is in flight go into
the next write together, in one transaction, so a busy server makes fewer, larger writes and a
round's assistant message is never stored without its tool results. `drain` waits for all of it
before the run reports that it finished, so a client that reads the conversation after
RUN_FINISHED or RUN_ERROR sees every message. A failed write stops the writes after it (the
history must not have holes) and is reported by `drain`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from loom.agent.model import ChatMessage
from loom.agent.store import ConversationStore
from loom.identity import Principal

log = logging.getLogger(__name__)


class OrderedWriter:
    def __init__(self, store: ConversationStore, principal: Principal, conversation_id: str) -> None:
        self._store = store
        self._principal = principal
        self.conversation_id = conversation_id
        self._title: str | None = None
        self._messages: list[ChatMessage] = []
        self._metadata: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    def create(self, title: str) -> None:
        """Create the conversation before anything else queued is written."""
        self._title = title
        self._kick()

    def append(self, messages: list[ChatMessage], metadata: list[dict[str, Any]] | None = None) -> None:
        self._messages.extend(messages)
        self._metadata.extend(metadata or [{} for _ in messages])
        self._kick()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._write_all())

    async def _write_all(self) -> None:
        while self._error is None and (self._title is not None or self._messages):
            title, self._title = self._title, None
            messages, self._messages = self._messages, []
            metadata, self._metadata = self._metadata, []
            try:
                await self._write(title, messages, metadata)
            except Exception as e:
                log.exception("writing conversation %s failed", self.conversation_id)
                self._error = e

    async def _write(
        self, title: str | None, messages: list[ChatMessage], metadata: list[dict[str, Any]]
    ) -> None:
        who, where = self._principal, self.conversation_id
        if title is not None:  # the first write: the conversation and its first messages together
            await self._store.create_conversation(who, title, where, messages, metadata)
        elif messages:
            await self._store.append_messages(who, where, messages, metadata)

    async def drain(self) -> BaseException | None:
        """Wait for every queued write; the first failure, if any (logged, never raised)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        return self._error
