"""Persistence off the critical path: one turn's writes run in order in the background.

The model call does not wait for the user's message to be stored, nor the next round for the
last one; `drain` waits for all of it before the run reports that it finished, so a client that
reads the conversation after RUN_FINISHED or RUN_ERROR sees every message. A failed write stops
the writes after it (the history must not have holes) and is reported by `drain`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
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
        self._tail: asyncio.Task[None] | None = None

    def create(self, title: str) -> None:
        self._chain(lambda: self._store.create_conversation(self._principal, title, self.conversation_id))

    def append(self, messages: list[ChatMessage], metadata: list[dict[str, Any]] | None = None) -> None:
        self._chain(
            lambda: self._store.append_messages(self._principal, self.conversation_id, messages, metadata)
        )

    def _chain(self, write: Callable[[], Awaitable[Any]]) -> None:
        previous = self._tail

        async def run() -> None:
            if previous is not None:
                await previous  # re-raises an earlier failure, so nothing is written after a hole
            await write()

        self._tail = asyncio.ensure_future(run())

    async def drain(self) -> BaseException | None:
        """Wait for every write; the first failure, if any (logged, never raised)."""
        if self._tail is None:
            return None
        try:
            await asyncio.shield(self._tail)
        except Exception as e:
            log.exception("writing conversation %s failed", self.conversation_id)
            return e
        return None
