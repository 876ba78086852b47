"""A model call that writes past its bound, or takes past its deadline, ends as a model error: nothing
of it is held whole, sent whole or stored (probe 21: R21-1, R21-4). Whatever the model: a scripted
one here, the configured endpoint over HTTP in test_model_maf."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from ag_ui.core import EventType

from loom.agent.model import (
    ChatMessage,
    ModelError,
    ModelEvent,
    ModelReply,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)
from loom.agent.reply_bounds import BoundedModel, ReplyBounds, bounded
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.testing import ScriptedModel, text, tool_call
from loom.agent.turns import TurnRequest
from loom.identity import DEV_PRINCIPAL
from loom.settings import Settings
from tests.agent.conftest import AgentFactory

SMALL = ReplyBounds(max_chars=2_000, deadline_s=5.0)
QUESTION = [ChatMessage("user", "How many orders?")]


async def drain(stream: AsyncIterator[ModelEvent]) -> list[ModelEvent]:
    return [event async for event in stream]


@dataclasses.dataclass
class Drip:
    """A model that sends `pieces` one at a time, `pause_s` apart, then its reply."""

    pieces: Sequence[ModelEvent]
    pause_s: float = 0.0
    name: str = "drip"
    closed: bool = False

    async def stream(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()) -> Any:
        try:
            for piece in self.pieces:
                await asyncio.sleep(self.pause_s)
                yield piece
            yield ModelReply("".join(p.text for p in self.pieces if isinstance(p, TextDelta)))
        finally:
            self.closed = True

    async def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> ModelReply:
        await asyncio.sleep(self.pause_s)
        return ModelReply("".join(p.text for p in self.pieces if isinstance(p, TextDelta)))


async def test_a_reply_within_its_bound_passes_unchanged() -> None:
    model = ScriptedModel(chunk=100).queue(text("x" * 1_900))
    events = await drain(bounded(model.stream(QUESTION), SMALL))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "x" * 1_900
    assert isinstance(events[-1], ModelReply)


async def test_text_past_the_bound_ends_the_call_and_closes_the_models_stream() -> None:
    model = Drip([TextDelta("y" * 100)] * 1_000)
    with pytest.raises(ModelError, match="passed 2,000 characters .*max_tokens"):
        await drain(bounded(model.stream(QUESTION), SMALL))
    assert model.closed  # the endpoint's stream is not left open (nor read on)


async def test_tool_arguments_count_towards_the_bound() -> None:
    model = Drip([ToolCallDelta("c1", "nl2sql"), *[ToolCallDelta("c1", None, "a" * 500)] * 10])
    with pytest.raises(ModelError, match="passed 2,000 characters"):
        await drain(bounded(model.stream(QUESTION), SMALL))


async def test_an_endless_stream_of_empty_pieces_ends_too() -> None:
    model = Drip([ToolCallDelta("c1", None, "")] * 5_000)
    with pytest.raises(ModelError, match="passed 2,000 characters"):
        await drain(bounded(model.stream(QUESTION), SMALL))


async def test_a_reply_in_more_pieces_than_tokens_asked_for_ends_the_call() -> None:
    # Each piece costs the SDK a parse whatever its size: 26,000 pieces of 10 characters took 13 s.
    model = Drip([TextDelta("p")] * 500)
    with pytest.raises(ModelError, match="passed 100 pieces"):
        await drain(bounded(model.stream(QUESTION), ReplyBounds(10**6, 5.0, max_events=100)))


def test_the_pieces_allowed_follow_max_tokens() -> None:
    assert ReplyBounds.of(Settings(_env_file=None, model_max_output_tokens=512)).max_events == 1_088
    assert ReplyBounds.of(Settings(_env_file=None, model_max_output_tokens=None)).max_events == 8_192


async def test_a_whole_reply_past_the_bound_is_refused() -> None:
    calls = (ToolCall("c1", "nl2sql", "a" * 3_000),)
    with pytest.raises(ModelError, match="passed 2,000 characters"):
        await BoundedModel(ScriptedModel().queue(ModelReply("", calls)), SMALL).complete(QUESTION)


async def test_a_reply_that_drips_within_each_wait_still_meets_the_calls_deadline() -> None:
    # Each piece comes well within any per-read timeout; the call as a whole does not.
    model = Drip([TextDelta("a")] * 50, pause_s=0.05)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ModelError, match=r"within 0.5s \(LOOM_MODEL_DEADLINE_S\)"):
        await drain(bounded(model.stream(QUESTION), ReplyBounds(2_000, deadline_s=0.5)))
    assert asyncio.get_running_loop().time() - started < 2.0
    assert model.closed


async def test_the_deadline_counts_the_models_time_not_the_consumers() -> None:
    model = Drip([TextDelta("a")] * 5)
    seen = []
    async for event in bounded(model.stream(QUESTION), ReplyBounds(2_000, deadline_s=0.2)):
        await asyncio.sleep(0.1)  # a slow reader (the SSE client) is not the model's doing
        seen.append(event)
    assert isinstance(seen[-1], ModelReply)


async def test_a_slow_complete_meets_the_deadline() -> None:
    model = Drip([TextDelta("late")], pause_s=1.0)
    with pytest.raises(ModelError, match="within 0.2s"):
        await BoundedModel(model, ReplyBounds(2_000, deadline_s=0.2)).complete(QUESTION)


async def test_a_turn_whose_model_writes_without_end_stores_none_of_it(
    make_agent: AgentFactory, store: SqliteConversationStore
) -> None:
    flood = "SELECT 1 " * 100_000  # 900 KB, far past the 2,000 characters allowed here
    agent = dataclasses.replace(
        make_agent(ScriptedModel(chunk=4_096).queue(tool_call("nl2sql", {"question": flood}))), bounds=SMALL
    )
    events = [e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message="How many orders?"))]

    assert events[-1].type == EventType.RUN_ERROR
    assert events[-1].code == "model_error"  # type: ignore[attr-defined]
    sent = sum(len(getattr(e, "delta", "") or "") for e in events)
    assert sent <= SMALL.max_chars
    stored = await store.messages(DEV_PRINCIPAL, str(events[0].thread_id))  # type: ignore[attr-defined]
    assert [(m.role, m.content) for m in stored] == [("user", "How many orders?")]


async def test_a_tools_own_generation_call_is_bounded_too(make_agent: AgentFactory) -> None:
    # nl2sql asks the model for its query with `complete`: that reply is bounded like the turn's own.
    huge = text("```sql\nSELECT " + "1 + " * 2_000 + "1\n```")
    model = ScriptedModel().queue(tool_call("nl2sql", {"question": "How many orders?"}), huge, text("Done."))
    agent = dataclasses.replace(make_agent(model), bounds=SMALL)
    events = [e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message="How many orders?"))]

    results = [e.content for e in events if e.type == EventType.TOOL_CALL_RESULT]  # type: ignore[attr-defined]
    assert results and "passed 2,000 characters" in results[0]


async def test_more_tool_calls_in_a_reply_than_allowed_run_none(make_agent: AgentFactory) -> None:
    # R22-1: every call of a reply ran; 5,000 in one cost 59 s and other users waited 21 s a turn.
    calls = tuple(ToolCall(f"c{i}", "nl2sql", '{"question": "q"}') for i in range(17))
    agent = make_agent(ScriptedModel().queue(ModelReply("", calls)))
    events = [e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message="How many orders?"))]
    assert events[-1].type == EventType.RUN_ERROR
    assert "more than 16 tool calls" in events[-1].message  # type: ignore[attr-defined]
    assert not [e for e in events if e.type == EventType.TOOL_CALL_RESULT]


async def test_a_reply_cut_at_max_tokens_says_so_and_a_filtered_one_is_not_kept(
    make_agent: AgentFactory, store: SqliteConversationStore
) -> None:
    # R22-4: both were shown and stored as complete answers.
    cut = make_agent(ScriptedModel().queue(ModelReply("Revenue rose by 4", finish="length")))
    events = [e async for e in cut.run_turn(DEV_PRINCIPAL, TurnRequest(message="How did revenue do?"))]
    assert events[-1].type == EventType.RUN_FINISHED
    said = "".join(getattr(e, "delta", "") or "" for e in events)
    assert said.startswith("Revenue rose by 4") and "cut off" in said

    filtered = make_agent(ScriptedModel().queue(ModelReply("partial", finish="content_filter")))
    events = [e async for e in filtered.run_turn(DEV_PRINCIPAL, TurnRequest(message="Tell me"))]
    assert events[-1].code == "model_error"  # type: ignore[attr-defined]
    kept = await store.messages(DEV_PRINCIPAL, str(events[0].thread_id))  # type: ignore[attr-defined]
    assert [m.role for m in kept] == ["user"]


def test_usage_outside_reason_is_not_counted() -> None:
    from loom.agent.budget import TurnBudget

    budget = TurnBudget(10, 4)
    for total in (10**40, -(10**12), 1_500):
        budget.spent({"total_tokens": total})
    assert budget.tokens == 1_500
