"""One turn at a time per conversation (a second request while one streams is a 409), and a few
at a time per user (429)."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from ag_ui.core import BaseEvent, RunStartedEvent

from loom.agent.sqlite_store import SqliteConversationStore
from loom.api.app import create_app
from loom.api.in_flight import Claim, TooManyTurns, TurnsInFlight
from loom.identity import DEV_PRINCIPAL, Principal
from loom.settings import Settings
from tests.api.test_app import FakeRunner, asgi_chat_scope

OTHER_TENANT = Principal(tenant_id="t2", user_id="u")


async def two_events() -> AsyncIterator[BaseEvent]:
    yield RunStartedEvent(thread_id="c", run_id="r")
    yield RunStartedEvent(thread_id="c", run_id="r2")


async def failing() -> AsyncIterator[BaseEvent]:
    yield RunStartedEvent(thread_id="c", run_id="r")
    raise RuntimeError("boom")


def test_a_conversation_is_claimed_once_per_tenant() -> None:
    in_flight = TurnsInFlight()
    assert in_flight.claim(DEV_PRINCIPAL, "c") is not None
    assert in_flight.claim(DEV_PRINCIPAL, "c") is None
    assert in_flight.claim(OTHER_TENANT, "c") is not None  # ids are per tenant
    # and conversations per user: another user of the tenant naming it neither waits for the
    # owner's turn nor holds it up (R24-6); the route then answers them 404.
    colleague = Principal(tenant_id=DEV_PRINCIPAL.tenant_id, user_id="someone-else")
    with in_flight.held(colleague, "c") as free:
        assert free
    assert in_flight.claim(colleague, "c") is not None
    assert in_flight.claim(DEV_PRINCIPAL, "c") is None  # the owner's turn still holds it


async def test_the_claim_is_released_however_the_stream_ends() -> None:
    in_flight = TurnsInFlight()

    def claimed() -> Claim:
        claim = in_flight.claim(DEV_PRINCIPAL, "c")
        assert claim is not None, "the conversation is still held"
        return claim

    assert len([e async for e in in_flight.held_until_done(claimed(), two_events())]) == 2  # ran out

    stream = in_flight.held_until_done(claimed(), failing())
    with pytest.raises(RuntimeError):
        async for _ in stream:
            pass

    stream = in_flight.held_until_done(claimed(), two_events())
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]  # the client left

    in_flight.held_until_done(claimed(), two_events())  # a response that never started
    gc.collect()
    claimed()


async def test_a_late_release_does_not_free_a_newer_turns_hold() -> None:
    in_flight = TurnsInFlight()
    old = in_flight.claim(DEV_PRINCIPAL, "c")
    assert old is not None
    in_flight.release(old)
    newer = in_flight.claim(DEV_PRINCIPAL, "c")
    assert newer is not None
    in_flight.release(old)  # e.g. the first stream's finalizer, run by a late garbage collection
    assert in_flight.claim(DEV_PRINCIPAL, "c") is None


async def test_a_second_request_while_a_turn_streams_is_409_until_it_ends(tmp_path: Path) -> None:
    store = SqliteConversationStore(tmp_path / "loom.db")
    conversation = (await store.create_conversation(DEV_PRINCIPAL, "busy")).id
    app = create_app(Settings(home=tmp_path), store=store, runner=FakeRunner(store, hang=True))
    first = await _streaming(app, conversation)  # its turn is waiting on a slow model

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        again = await client.post("/v1/chat", json={"message": "and?", "conversation_id": conversation})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "turn_in_progress"

    first.cancel()  # the first client goes away
    await asyncio.gather(first, return_exceptions=True)
    after = await _streaming(app, conversation)
    assert not after.done()  # accepted and streaming, not refused
    after.cancel()
    await asyncio.gather(after, return_exceptions=True)
    await store.close()


def test_a_user_has_a_few_turns_at_once_new_conversations_too() -> None:
    # R21-8: the quota is checked as a turn starts; 64 turns at once stored 8.4x a user's quota.
    in_flight = TurnsInFlight(per_user=2)
    first, second = in_flight.claim(DEV_PRINCIPAL, None), in_flight.claim(DEV_PRINCIPAL, "a")
    assert first is not None and second is not None
    with pytest.raises(TooManyTurns, match="2 turns running"):
        in_flight.claim(DEV_PRINCIPAL, None)
    assert in_flight.claim(OTHER_TENANT, None) is not None  # another user's turns are their own
    in_flight.release(first)
    in_flight.release(first)  # a late second release (the finalizer) frees nothing more
    third = in_flight.claim(DEV_PRINCIPAL, "b")
    assert third is not None
    with pytest.raises(TooManyTurns):
        in_flight.claim(DEV_PRINCIPAL, "c")


async def test_past_a_users_turns_at_once_a_question_is_429_until_one_ends(tmp_path: Path) -> None:
    store = SqliteConversationStore(tmp_path / "loom.db")
    settings = Settings(home=tmp_path, max_turns_per_user=2)
    app = create_app(settings, store=store, runner=FakeRunner(store, hang=True))
    running = [await _streaming(app, None), await _streaming(app, None)]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        refused = await client.post("/v1/chat", json={"message": "a third"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_turns"
    assert refused.headers["retry-after"] == "5"

    running[0].cancel()
    await asyncio.gather(running[0], return_exceptions=True)
    running.append(await _streaming(app, None))  # a place is free again
    for task in running[1:]:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    await store.close()


async def test_a_conversation_is_not_deleted_under_its_running_turn(tmp_path: Path) -> None:
    # R21-10: deleted mid-turn, the turn failed writing its answer (store_error, an ERROR line).
    store = SqliteConversationStore(tmp_path / "loom.db")
    app = create_app(Settings(home=tmp_path), store=store, runner=FakeRunner(store, hang=True))
    running = await _streaming(app, None)  # a new conversation: its id is known once the turn starts
    (conversation,) = [c.id for c in await store.list_conversations(DEV_PRINCIPAL)]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        refused = await client.delete(f"/v1/conversations/{conversation}")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "turn_in_progress"
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        assert (await client.delete(f"/v1/conversations/{conversation}")).status_code == 204
    await store.close()


async def _streaming(app: Any, conversation: str | None) -> asyncio.Task[None]:
    """Start a chat request and return once its first frame has been sent (the task keeps running)."""
    started = asyncio.Event()
    body = json.dumps({"message": "slow question", "conversation_id": conversation}).encode()
    requests = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> dict[str, Any]:
        request = next(requests, None)
        if request is not None:
            return request
        await asyncio.Event().wait()  # the client stays
        return {}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        if message["type"] == "http.response.body" and message.get("body"):
            started.set()

    task = asyncio.create_task(app(asgi_chat_scope(), receive, send))
    await asyncio.wait_for(started.wait(), timeout=5)
    return task


async def test_a_closed_turn_holds_its_conversation_until_it_has_finished_closing() -> None:
    in_flight = TurnsInFlight()
    held_while_closing: list[bool] = []

    async def turn() -> AsyncIterator[BaseEvent]:
        try:
            yield RunStartedEvent(thread_id="c", run_id="r")
            yield RunStartedEvent(thread_id="c", run_id="r2")
        finally:
            await asyncio.sleep(0)  # storing what was said so far
            held_while_closing.append(in_flight.claim(DEV_PRINCIPAL, "c") is None)

    claim = in_flight.claim(DEV_PRINCIPAL, "c")
    assert claim is not None
    stream = in_flight.held_until_done(claim, turn())
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]  # the client left

    assert held_while_closing == [True]
    assert in_flight.claim(DEV_PRINCIPAL, "c") is not None


class _PausedStore(SqliteConversationStore):
    """A store whose next conversation lookup waits: the chat route's checks, caught mid-way."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.looking, self.go_on = asyncio.Event(), asyncio.Event()

    async def get_conversation(self, principal: Principal, conversation_id: str) -> Any:
        self.looking.set()
        await self.go_on.wait()
        return await super().get_conversation(principal, conversation_id)


async def test_a_delete_while_a_turn_is_being_checked_waits_for_it(tmp_path: Path) -> None:
    # R22-6: the route checked the conversation (three awaits) before claiming it; a DELETE in that
    # window passed (204), and the turn then failed as internal_error or store_error.
    store = _PausedStore(tmp_path / "loom.db")
    store.go_on.set()
    conversation = (await store.create_conversation(DEV_PRINCIPAL, "racing")).id
    store.go_on.clear()
    app = create_app(Settings(home=tmp_path), store=store, runner=FakeRunner(store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        chat = asyncio.create_task(
            client.post("/v1/chat", json={"message": "and?", "conversation_id": conversation})
        )
        await asyncio.wait_for(store.looking.wait(), 5)
        deleted = await client.delete(f"/v1/conversations/{conversation}")
        store.go_on.set()
        answered = await chat
    assert deleted.status_code == 409
    assert answered.status_code == 200 and '"RUN_FINISHED"' in answered.text
    await store.close()
