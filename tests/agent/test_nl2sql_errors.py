"""nl2sql's failures reach the model as tool errors it can act on, and the turn still finishes.

Driven through the Agent (scripted model, real store, DuckDB over the seeded lakehouse) and read
from what the model is sent, except the one case the Agent cannot reach: a tool without a model.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ag_ui.core import BaseEvent, EventType

from loom.agent.approval import EffectGate
from loom.agent.model import ToolCall
from loom.agent.testing import ScriptedModel, text, tool_call
from loom.agent.tool_calls import run_calls
from loom.agent.turns import TurnRequest
from loom.engines.sources import VerifiedQuery
from loom.identity import DEV_PRINCIPAL
from loom.tools.base import ToolContext
from loom.tools.registry import TOOLS, by_name
from tests.agent.conftest import VERIFIED, AgentFactory

UNVERIFIED_QUESTION = "How many order lines are there?"  # no verified question is close to it


async def collect(agent: Any, message: str) -> list[BaseEvent]:
    return [e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=message))]


def tool_error(events: list[BaseEvent]) -> dict[str, str]:
    [result] = [e for e in events if e.type == EventType.TOOL_CALL_RESULT]
    return json.loads(result.content)["error"]  # type: ignore[attr-defined]


async def test_without_a_model_an_unverified_question_names_the_verified_ones(
    source: Any, engines: Any
) -> None:
    ctx = ToolContext(principal=DEV_PRINCIPAL, sources=[source], engines=engines, model=None)
    call = ToolCall(id="call_1", name="nl2sql", arguments=json.dumps({"question": UNVERIFIED_QUESTION}))

    [outcome] = await run_calls(ctx, by_name(TOOLS), EffectGate(), [call])

    error = json.loads(outcome.content)["error"]
    assert error["code"] == "no_model"
    assert VERIFIED[0].question in error["message"]


async def test_a_broken_verified_query_is_reported_as_such_not_rewritten(
    make_agent: AgentFactory, source: Any
) -> None:
    broken = VerifiedQuery(question=VERIFIED[0].question, query="SELECT region FROM gold.no_such_table")
    sales = source.model_copy(update={"verified_queries": (broken,)})
    model = ScriptedModel().queue(tool_call("nl2sql", {"question": broken.question}), text("Sorry."))
    agent = dataclasses.replace(make_agent(model), sources=lambda: {sales.name: sales})

    events = await collect(agent, broken.question)

    message = tool_error(events)["message"]
    assert "verified query" in message
    assert "failed" in message
    assert broken.question in message
    assert len(model.calls) == 2  # the model was not asked to write a query instead
    assert events[-1].type == EventType.RUN_FINISHED


async def test_replies_without_a_fenced_query_are_retried_then_reported(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(tool_call("nl2sql", {"question": UNVERIFIED_QUESTION}))
    agent = make_agent(model)
    tries = agent.query_limits.max_repairs + 1
    model.queue(*[text("You could count the rows of the sales table.")] * tries, text("Sorry."))

    events = await collect(agent, UNVERIFIED_QUESTION)

    error = tool_error(events)
    assert error["code"] == "query_failed"
    assert "no_query" in error["message"]
    generation = model.calls[1 : 1 + tries]
    assert [call.tools for call in generation] == [[]] * tries  # query-generation calls
    for retry in generation[1:]:
        asked = retry.messages[-1].content
        assert UNVERIFIED_QUESTION in asked
        assert "```sql" in asked  # asked for the query in a fenced block
    assert len(model.calls) == tries + 2
    assert events[-1].type == EventType.RUN_FINISHED
