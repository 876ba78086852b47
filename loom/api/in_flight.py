"""One turn at a time per conversation (in this process).

Two turns running at once in one conversation interleave their messages in its history, so every
later turn reads answers next to the wrong questions. A request for a conversation whose turn is
still streaming is refused (409) before it streams. The claim is released when the stream ends or
the client leaves, and, as a safety net, when the stream object is collected (a response that was
never started never runs its generator's `finally`). The guard is per process: several workers
sharing a database need the store to hold this lock.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, AsyncIterator

from ag_ui.core import BaseEvent

from loom.identity import Principal

Key = tuple[str, str]  # (tenant, conversation)


class TurnsInFlight:
    def __init__(self) -> None:
        self._running: set[Key] = set()

    def claim(self, principal: Principal, conversation_id: str) -> Key | None:
        """The claim on the conversation, or None when a turn is already running in it."""
        key = (principal.tenant_id, conversation_id)
        if key in self._running:
            return None
        self._running.add(key)
        return key

    def held_until_done(self, key: Key, events: AsyncIterator[BaseEvent]) -> AsyncIterator[BaseEvent]:
        """`events`, releasing the claim when they end, fail, are closed, or are dropped unstarted."""
        stream = self._release_after(key, events)
        weakref.finalize(stream, self._running.discard, key)
        return stream

    async def _release_after(self, key: Key, events: AsyncIterator[BaseEvent]) -> AsyncGenerator[BaseEvent]:
        try:
            async for event in events:
                yield event
        finally:
            self._running.discard(key)
            aclose = getattr(events, "aclose", None)
            if aclose is not None:  # pass a client's disconnect on to the turn at once
                await aclose()
