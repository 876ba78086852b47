"""Offline mode: verified questions are answered from queries actually run; others say how to configure."""

import json
from typing import Any

from ag_ui.core import EventType

from loom.agent.model import ChatMessage
from loom.agent.offline import CONFIGURE, OfflineModel
from loom.agent.turns import TurnRequest
from loom.engines.sources import Source
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
    agent = make_agent(OfflineModel([source], threshold=0.8))
    answer, events = await run(agent, "How many orders per channel?")
    [result] = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]
    assert result["verified"] is True
    assert result["query"].startswith("SELECT s.channel")
    assert answer.startswith("Verified answer")
    for channel, orders in result["result"]["rows"]:
        assert f"channel {channel}, orders {orders}" in answer  # figures from the executed query


async def test_anything_else_gets_the_variables_to_set(make_agent: AgentFactory, source: Source) -> None:
    agent = make_agent(OfflineModel([source], threshold=0.8))
    answer, events = await run(agent, "Why did sales drop in March?")
    assert not [e for e in events if e.type == EventType.TOOL_CALL_START]
    assert "No language model is configured" in answer and CONFIGURE in answer
    assert "Number of orders per channel" in answer  # lists what it can answer


async def test_offline_streams_the_same_way_as_a_model(source: Source) -> None:
    model = OfflineModel([source], threshold=0.8)
    tools = [t.schema() for t in TOOLS]
    reply = await model.complete([ChatMessage(role="user", content="orders per channel")], tools)
    assert reply.tool_calls[0].name == "nl2sql"
    assert json.loads(reply.tool_calls[0].arguments)["source"] == "sales"
    no_tools = await model.complete([ChatMessage(role="user", content="orders per channel")], [])
    assert not no_tools.tool_calls and "No language model" in no_tools.text
