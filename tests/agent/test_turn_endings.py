"""Every way a turn ends writes one `loom.turns` line and keeps what was said so far.

A model error, a bug and a store failure end the stream with RUN_ERROR and their code. A client
that leaves ends it with no event: the server either closes the turn's stream or cancels the task
running it (Starlette on a disconnect), and both are logged as `disconnected` once the turn's
writes are stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from ag_ui.core import BaseEvent, EventType

from loom.agent.model import ChatMessage, ModelEvent, ModelReply, TextDelta
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.testing import FailingModel, ScriptedModel, text
from loom.agent.turns import TurnRequest
from loom.identity import DEV_PRINCIPAL, Principal
from tests.agent.conftest import AgentFactory

QUESTION = "Which region sold the most?"


@pytest.fixture(autouse=True)
def _turns_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.INFO, logger="loom.turns"):
        yield


def logged_turns(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    """The `loom.turns` lines so far, each as its key=value fields."""
    lines = [r.getMessage().split() for r in caplog.records if r.name == "loom.turns"]
    return [dict(word.split("=", 1) for word in line[1:]) for line in lines]


async def collect(agent: Any, conversation_id: str | None = None) -> list[BaseEvent]:
    request = TurnRequest(message=QUESTION, conversation_id=conversation_id)
    return [e async for e in agent.run_turn(DEV_PRINCIPAL, request)]


async def kept(store: SqliteConversationStore, conversation_id: str) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in await store.messages(DEV_PRINCIPAL, conversation_id)]


def thread(events: Sequence[BaseEvent]) -> str:
    return str(events[0].thread_id)  # type: ignore[attr-defined]


# --- the turn reaches its last event ----------------------------------------------------------------


async def test_a_finished_turn_is_logged_once(
    make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    events = await collect(make_agent(ScriptedModel().queue(text("The west."))))
    assert events[-1].type == EventType.RUN_FINISHED
    assert [line["outcome"] for line in logged_turns(caplog)] == ["finished"]


async def test_a_model_error_is_logged_once_with_its_code(
    make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    events = await collect(make_agent(FailingModel("endpoint down")))
    assert events[-1].code == "model_error"  # type: ignore[attr-defined]
    assert [line["outcome"] for line in logged_turns(caplog)] == ["model_error"]


def a_bug(messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]]) -> ModelReply:
    raise KeyError("/srv/loom/secret-path")


async def test_a_bug_ends_the_turn_with_internal_error_and_keeps_the_question(
    make_agent: AgentFactory, store: SqliteConversationStore, caplog: pytest.LogCaptureFixture
) -> None:
    events = await collect(make_agent(ScriptedModel().queue(a_bug)))

    last = events[-1]
    assert last.type == EventType.RUN_ERROR
    assert last.code == "internal_error"  # type: ignore[attr-defined]
    assert "secret-path" not in last.message  # type: ignore[attr-defined]  # internals stay in the log
    assert [line["outcome"] for line in logged_turns(caplog)] == ["internal_error"]
    assert await kept(store, thread(events)) == [("user", QUESTION)]


class AppendsFail(SqliteConversationStore):
    """A store that takes the question, then cannot add to the conversation (a full disk, a lost
    lock) while the answer streams."""

    appends_left = 1

    async def append_messages(
        self,
        principal: Principal,
        conversation_id: str,
        messages: list[ChatMessage],
        metadata: list[dict[str, Any]] | None = None,
    ) -> Any:
        if self.appends_left <= 0:
            raise OSError("disk full")
        self.appends_left -= 1
        return await super().append_messages(principal, conversation_id, messages, metadata)


@pytest.fixture
async def appends_fail(tmp_path: Path) -> AsyncIterator[AppendsFail]:
    store = AppendsFail(tmp_path / "appends-fail.db")
    yield store
    await store.close()


async def test_a_store_that_cannot_save_the_turn_ends_it_with_store_error(
    make_agent: AgentFactory, appends_fail: AppendsFail, caplog: pytest.LogCaptureFixture
) -> None:
    conversation = await appends_fail.create_conversation(DEV_PRINCIPAL, "earlier")
    agent = dataclasses.replace(make_agent(ScriptedModel().queue(text("The west."))), store=appends_fail)

    events = await collect(agent, conversation_id=conversation.id)

    assert "TEXT_MESSAGE_CONTENT" in [e.type.value for e in events]  # the answer was streamed...
    last = events[-1]
    assert last.type == EventType.RUN_ERROR  # ...but the client learns it was not saved
    assert last.code == "store_error"  # type: ignore[attr-defined]
    assert [line["outcome"] for line in logged_turns(caplog)] == ["store_error"]


# --- the client leaves mid-turn ---------------------------------------------------------------------


class StallingModel:
    """Starts its answer, then waits for ever: the slow model a client gives up on."""

    name = "stalling"

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> AsyncIterator[ModelEvent]:
        yield TextDelta("Let me think")
        await asyncio.Event().wait()
        yield ModelReply()  # pragma: no cover - never reached

    async def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> ModelReply:
        raise AssertionError("the turn's own call streams")


class SlowWrites(SqliteConversationStore):
    """Opening a conversation takes a while, so a client can leave before it is stored."""

    async def create_conversation(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.2)
        return await super().create_conversation(*args, **kwargs)


@pytest.fixture
async def slow_writes(tmp_path: Path) -> AsyncIterator[SlowWrites]:
    store = SlowWrites(tmp_path / "slow.db")
    yield store
    await store.close()


Turn = AsyncGenerator[BaseEvent, None]


async def until_the_answer_starts(turn: Turn, seen: list[BaseEvent]) -> None:
    async for event in turn:
        seen.append(event)
        if event.type == EventType.TEXT_MESSAGE_CONTENT:
            return


async def close_it(turn: Turn, seen: list[BaseEvent]) -> None:
    """What `EventStreamResponse` does when Starlette stops iterating: close the stream."""
    await until_the_answer_starts(turn, seen)
    await turn.aclose()


async def cancel_its_scope(turn: Turn, seen: list[BaseEvent]) -> None:
    """What Starlette does on `http.disconnect`: cancel the task group streaming the response."""
    with anyio.CancelScope() as scope:
        async for event in turn:
            seen.append(event)
            if event.type == EventType.TEXT_MESSAGE_CONTENT:
                scope.cancel()
    assert scope.cancelled_caught


async def cancel_its_task(turn: Turn, seen: list[BaseEvent]) -> None:
    """A plain asyncio cancellation (a server shutting down, a wait_for timing out)."""
    streaming = asyncio.Event()

    async def consume() -> None:
        async for event in turn:
            seen.append(event)
            streaming.set()

    task = asyncio.create_task(consume())
    await streaming.wait()
    await asyncio.sleep(0.01)  # the turn is now waiting on the model
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("leave", [close_it, cancel_its_scope, cancel_its_task])
async def test_a_client_that_leaves_is_logged_once_as_disconnected_after_its_question_is_kept(
    make_agent: AgentFactory, slow_writes: SlowWrites, caplog: pytest.LogCaptureFixture, leave: Any
) -> None:
    agent = dataclasses.replace(make_agent(StallingModel()), store=slow_writes)
    turn = cast(Turn, agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=QUESTION)))
    seen: list[BaseEvent] = []

    await asyncio.wait_for(leave(turn, seen), timeout=5)

    assert [e.type for e in seen][-1] == EventType.TEXT_MESSAGE_CONTENT  # no last event was sent
    lines = logged_turns(caplog)
    assert [line["outcome"] for line in lines] == ["disconnected"]
    assert lines[0]["model_calls"] == "1"
    # Stored before the turn let go, not whenever the background write gets to it.
    assert await kept(slow_writes, thread(seen)) == [("user", QUESTION)]


# --- nothing announced is lost (issue 8) -------------------------------------------------------------


async def test_run_started_announces_a_conversation_already_stored_with_its_question(
    make_agent: AgentFactory, slow_writes: SlowWrites
) -> None:
    agent = dataclasses.replace(make_agent(ScriptedModel().queue(text("The west."))), store=slow_writes)
    turn = cast(Turn, agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=QUESTION)))
    started = await anext(turn)
    assert started.type == EventType.RUN_STARTED
    # Read at once, as a client told the id might (or after a kill -9 of the server): it is there.
    assert await kept(slow_writes, started.thread_id) == [("user", QUESTION)]  # type: ignore[attr-defined]
    await turn.aclose()


class CreatesFail(SqliteConversationStore):
    async def create_conversation(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")


async def test_a_conversation_that_cannot_be_stored_is_not_answered(
    make_agent: AgentFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CreatesFail(tmp_path / "creates-fail.db")
    model = ScriptedModel()  # nothing queued: the model must not be called
    events = await collect(dataclasses.replace(make_agent(model), store=store))
    await store.close()
    assert [e.type.value for e in events] == ["RUN_STARTED", "RUN_ERROR"]
    assert events[-1].code == "store_error"  # type: ignore[attr-defined]
    assert model.calls == []
    assert [line["outcome"] for line in logged_turns(caplog)] == ["store_error"]
