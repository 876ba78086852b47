"""One turn at a time per conversation, and a few at a time per user (in this process).

Two turns running at once in one conversation interleave their messages in its history, so every
later turn reads answers next to the wrong questions. A request for a conversation whose turn is
still streaming is refused (409) before it streams. The claim is released when the stream ends or
the client leaves, and, as a safety net, when the stream object is collected (a response that was
never started never runs its generator's `finally`). The guard is per process: several workers
sharing a database need the store to hold this lock.

A user's turns at once are bounded too (`per_user`): the storage quota is checked as a turn
starts, and a user who started 64 turns at once stored 8.4 times their quota before any of them
ended (probe 21: R21-8). Past the bound a turn is refused (429) until one of theirs ends, so
what a user can store past the quota is bounded by `per_user` turns' results.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager

from ag_ui.core import BaseEvent, RunStartedEvent

from loom.identity import Principal

User = tuple[str, str]  # (tenant, user)
# (tenant, user, conversation): a conversation is its user's, and a claim keyed without the user let
# another user of the tenant who knew its id see when it was busy and make its turns fail with 409
# (probe 24: R24-6); now theirs never meets the owner's, and the route answers them 404.
Key = tuple[str, str, str]


class TooManyTurns(Exception):
    def __init__(self, most: int) -> None:
        super().__init__(f"you have {most} turns running, the most at once; ask again when one has ended")


class Claim:
    """One turn's hold on its conversation (None: a new one) and on a place of its user's; released
    once, and only its own."""

    def __init__(self, key: Key | None, user: User | None) -> None:
        self.key, self.user = key, user
        self.released = False


class TurnsInFlight:
    def __init__(self, per_user: int = 4) -> None:
        self.per_user = per_user
        self._running: dict[Key, Claim] = {}
        self._by_user: Counter[User] = Counter()

    def claim(self, principal: Principal, conversation_id: str | None) -> Claim | None:
        """The claim for a turn in the conversation (None: a new one), or None when a turn is
        already running in it; TooManyTurns when the user has `per_user` turns running."""
        key = None if conversation_id is None else _key(principal, conversation_id)
        if key is not None and key in self._running:
            return None
        user = (principal.tenant_id, principal.user_id)
        if self._by_user[user] >= self.per_user:
            raise TooManyTurns(self.per_user)
        claim = Claim(key, user)
        self._by_user[user] += 1
        if key is not None:
            self._running[key] = claim
        return claim

    @contextmanager
    def held(self, principal: Principal, conversation_id: str) -> Iterator[bool]:
        """Hold the conversation while the block runs (a delete: no turn may start in it meanwhile,
        nor may it go while one runs). False, and nothing held, when a turn is running in it."""
        key = _key(principal, conversation_id)
        if key in self._running:
            yield False
            return
        claim = self._running[key] = Claim(key, None)
        try:
            yield True
        finally:
            self.release(claim)

    def _hold(self, claim: Claim, conversation_id: str) -> None:
        assert claim.user is not None
        key = (*claim.user, conversation_id)
        if not claim.released and key not in self._running:
            claim.key = key
            self._running[key] = claim

    def release(self, claim: Claim) -> None:
        # Once, and only this claim: a late release (the finalizer of a stream long done) must not
        # free a newer turn's hold on the same conversation.
        if claim.released:
            return
        claim.released = True
        if claim.user is not None:
            self._by_user[claim.user] -= 1
            if self._by_user[claim.user] <= 0:
                self._by_user.pop(claim.user, None)
        if claim.key is not None and self._running.get(claim.key) is claim:
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
                if claim.key is None and isinstance(event, RunStartedEvent):
                    self._hold(claim, event.thread_id)  # a new conversation: it has its id now
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


def _key(principal: Principal, conversation_id: str) -> Key:
    return (principal.tenant_id, principal.user_id, conversation_id)
