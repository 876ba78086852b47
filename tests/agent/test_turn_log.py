"""The per-turn log line: ids, counts and the outcome, never what was asked or answered."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator
from typing import cast

import pytest
from ag_ui.core import BaseEvent

from loom.agent.model import ModelReply
from loom.agent.testing import FailingModel, ScriptedModel, sql_block, text, tool_call
from loom.agent.turns import TurnRequest
from loom.identity import DEV_PRINCIPAL
from tests.agent.conftest import AgentFactory

QUESTION = "How many orders did ACME Corp place in Texas?"
SQL = "SELECT COUNT(*) AS orders FROM gold.fact_sales"


def costing(reply: ModelReply, tokens: int) -> ModelReply:
    return dataclasses.replace(reply, usage={"prompt_tokens": tokens - 5, "total_tokens": tokens})


async def one_turn_logged(agent: object, caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    with caplog.at_level(logging.INFO, logger="loom.turns"):
        async for _ in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=QUESTION)):  # type: ignore[attr-defined]
            pass
    [record] = [r for r in caplog.records if r.name == "loom.turns"]
    assert record.levelno == logging.INFO
    words = record.getMessage().split()
    assert words[0] == "turn"
    return dict(word.split("=", 1) for word in words[1:])


async def test_a_turn_logs_what_it_cost_and_how_it_ended(
    make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    model = ScriptedModel().queue(
        costing(tool_call("nl2sql", {"question": QUESTION}), 120),
        costing(sql_block(SQL), 300),  # the tool's own generation call counts too
        costing(text("ACME placed 12 orders in Texas."), 80),
    )
    fields = await one_turn_logged(make_agent(model), caplog)

    assert fields["outcome"] == "finished"
    assert fields["model_calls"] == "3"
    assert fields["tokens"] == "500"
    assert fields["tools"] == "nl2sql:ok"
    assert fields["tenant"] == DEV_PRINCIPAL.tenant_id
    assert fields["user"] == DEV_PRINCIPAL.user_id
    assert fields["run"].startswith("run_")
    assert len(fields["conversation"]) == 32
    assert float(fields["ms"]) >= 0
    line = caplog.records[-1].getMessage()
    for private in ("ACME", "Texas", "COUNT(*)", "12 orders"):  # question, query, answer
        assert private not in line


async def test_a_failed_turn_logs_its_error_code(
    make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fields = await one_turn_logged(make_agent(FailingModel("endpoint down")), caplog)
    assert fields["outcome"] == "model_error"
    assert fields["tools"] == "-"
    assert fields["tokens"] == "0"


async def test_a_failing_tool_call_is_logged_with_its_status(
    make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    model = ScriptedModel().queue(tool_call("no_such_tool", {}), text("Sorry, I could not do that."))
    fields = await one_turn_logged(make_agent(model), caplog)
    assert fields["outcome"] == "finished"
    assert fields["tools"] == "no_such_tool:error"


async def test_a_client_that_goes_away_mid_turn_is_logged_as_disconnected(
    make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    model = ScriptedModel().queue(tool_call("nl2sql", {"question": QUESTION}), sql_block(SQL), text("..."))
    turn = cast(
        AsyncGenerator[BaseEvent, None],
        make_agent(model).run_turn(DEV_PRINCIPAL, TurnRequest(message=QUESTION)),
    )
    with caplog.at_level(logging.INFO, logger="loom.turns"):
        await anext(turn)  # RUN_STARTED
        await anext(turn)  # the model starts its tool call
        await turn.aclose()  # what the server does when the client disconnects
    [record] = [r for r in caplog.records if r.name == "loom.turns"]
    assert "outcome=disconnected" in record.getMessage()
