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


class Claim:
    """One turn's hold on a conversation; released once, and only its own."""

    def __init__(self, key: Key) -> None:
        self.key = key


class TurnsInFlight:
    def __init__(self) -> None:
        self._running: dict[Key, Claim] = {}

    def claim(self, principal: Principal, conversation_id: str) -> Claim | None:
        """The claim on the conversation, or None when a turn is already running in it."""
        key = (principal.tenant_id, conversation_id)
        if key in self._running:
            return None
        claim = self._running[key] = Claim(key)
        return claim

    def release(self, claim: Claim) -> None:
        # Only this claim: a late release (the finalizer of a stream long done) must not free a
        # newer turn's hold on the same conversation.
        if self._running.get(claim.key) is claim:
            self._running.pop(claim.key, None)  # a finalizer may run on another thread: no KeyError

    def held_until_done(self, claim: Claim, events: AsyncIterator[BaseEvent]) -> AsyncIterator[BaseEvent]:
        """`events`, releasing the claim when they end, fail, are closed, or are dropped unstarted."""
        stream = self._release_after(claim, events)
        weakref.finalize(stream, self.release, claim)
        return stream

    async def _release_after(
        self, claim: Claim, events: AsyncIterator[BaseEvent]
    ) -> AsyncGenerator[BaseEvent]:
        try:
            async for event in events:
                yield event
        finally:
            try:
                aclose = getattr(events, "aclose", None)
                if aclose is not None:  # pass a client's disconnect on to the turn at once
                    await aclose()
            finally:
                # Only now: a turn that was cut short stores what was said while it closes, and the
                # next turn must read it.
                self.release(claim)
