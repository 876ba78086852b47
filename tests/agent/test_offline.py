"""Offline mode: verified questions are answered from queries actually run; others say how to configure."""

import json
from typing import Any

from ag_ui.core import EventType

from loom.access import OPEN
from loom.agent.model import ChatMessage
from loom.agent.offline import CONFIGURE, OfflineModel
from loom.agent.turns import TurnRequest
from loom.engines.sources import DuckDBSource, Source, VerifiedQuery
from loom.identity import DEV_PRINCIPAL
from loom.tools.registry import TOOLS
from tests.agent.conftest import AgentFactory


async def run(agent: Any, message: str) -> tuple[str, list[Any]]:
    events = [e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=message))]
    answer = "".join(e.delta for e in events if e.type == EventType.TEXT_MESSAGE_CONTENT)
    return answer, events


async def test_a_verified_question_runs_its_query_and_says_it_is_verified(
    make_agent: AgentFactory, source: Source
) -> None:
    agent = make_agent(OfflineModel(lambda: {source.name: source}, TOOLS, threshold=0.8))
    answer, events = await run(agent, "How many orders per channel?")
    [result] = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]
    assert result["verified"] is True
    assert result["query"].startswith("SELECT s.channel")
    assert answer.startswith("Verified answer")
    for channel, orders in result["result"]["rows"]:
        assert f"channel {channel}, orders {orders}" in answer  # figures from the executed query


async def test_anything_else_gets_the_variables_to_set(make_agent: AgentFactory, source: Source) -> None:
    agent = make_agent(OfflineModel(lambda: {source.name: source}, TOOLS, threshold=0.8))
    answer, events = await run(agent, "Why did sales drop in March?")
    assert not [e for e in events if e.type == EventType.TOOL_CALL_START]
    assert "No language model is configured" in answer
    assert CONFIGURE in answer
    assert "Number of orders per channel" in answer  # lists what it can answer


async def test_offline_streams_the_same_way_as_a_model(source: Source) -> None:
    model = OfflineModel(lambda: {source.name: source}, TOOLS, threshold=0.8)
    tools = [t.schema([source.name]) for t in TOOLS]
    reply = await model.complete([ChatMessage(role="user", content="orders per channel")], tools)
    assert reply.tool_calls[0].name == "nl2sql"
    assert json.loads(reply.tool_calls[0].arguments)["source"] == "sales"
    no_tools = await model.complete([ChatMessage(role="user", content="orders per channel")], [])
    assert not no_tools.tool_calls
    assert "No language model" in no_tools.text


def _other(source: Source) -> DuckDBSource:
    """A second source over the same data with a verified question of its own."""
    shop = VerifiedQuery(
        question="How many stores are there?", query="SELECT COUNT(*) AS stores FROM gold.dim_store"
    )
    assert isinstance(source, DuckDBSource)
    return source.model_copy(update={"name": "shop", "verified_queries": (shop,)})


async def test_verified_questions_belong_to_their_source(
    make_agent: AgentFactory, source: Source, store: Any, engines: Any
) -> None:
    from loom.agent.loop import Agent

    both = {source.name: source, "shop": _other(source)}
    agent = Agent(OfflineModel(lambda: both, TOOLS, 0.8), TOOLS, store, engines, lambda: both, OPEN)
    request = TurnRequest(message="How many orders per channel?", sources=["shop"])
    events: list[Any] = [e async for e in agent.run_turn(DEV_PRINCIPAL, request)]
    answer = "".join(e.delta for e in events if e.type == EventType.TEXT_MESSAGE_CONTENT)
    assert not [e for e in events if e.type == EventType.TOOL_CALL_START]  # sales' question, not asked of it
    assert "How many stores are there?" in answer
    assert "Number of orders per channel" not in answer  # another source's questions are not listed


async def test_the_sources_are_read_as_they_are_now(source: Source) -> None:
    known: dict[str, Source] = {source.name: source}
    model = OfflineModel(lambda: known, TOOLS, threshold=0.8)
    asked = [ChatMessage(role="user", content="How many stores are there?")]
    before = await model.complete(asked, [t.schema([source.name]) for t in TOOLS])
    assert not before.tool_calls
    known.clear()
    known["shop"] = _other(source)  # the sources file changed under a running server
    after = await model.complete(asked, [t.schema(["shop"]) for t in TOOLS])
    assert json.loads(after.tool_calls[0].arguments)["source"] == "shop"
