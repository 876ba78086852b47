"""`nl2kql` through the agent: offered for a source that lists KQL, its schema shown in KQL's
spelling, a failed query repaired with the engine's error, the KQL shown with Kusto-typed rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ag_ui.core import EventType

from loom.agent.testing import ScriptedModel, text, tool_call
from loom.agent.turns import TurnRequest
from loom.engines.sources import DuckDBSource
from loom.identity import DEV_PRINCIPAL
from tests.agent.conftest import AgentFactory

GOOD = "fact_sales | join kind=inner dim_store on store_key | summarize orders = dcount(order_id) by channel"


@pytest.fixture
def source(lakehouse: Path) -> DuckDBSource:
    return DuckDBSource(name="sales", location=str(lakehouse), description="test sales", languages=("kql",))


def kql_block(query: str) -> Any:
    return text(f"```kql\n{query}\n```")


async def events_of(agent: Any, message: str) -> list[Any]:
    return [e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=message))]


async def test_a_kql_question_is_written_repaired_and_answered_with_kusto_types(
    make_agent: AgentFactory,
) -> None:
    model = ScriptedModel().queue(
        tool_call("nl2kql", {"question": "Orders per channel?"}),
        kql_block(GOOD.replace("dim_store", "stores")),  # a table that is not there
        kql_block(GOOD),
        text("Done."),
    )
    events = await events_of(make_agent(model), "Orders per channel?")
    assert [t["function"]["name"] for t in model.calls[0].tools] == ["nl2kql"]  # the source lists only KQL
    assert "answers KQL" in model.calls[0].messages[0].content

    generation, repair = model.calls[1], model.calls[2]
    system = generation.messages[0].content
    assert "one read-only KQL" in system and "- fact_sales: order_id: string" in system
    assert "- ['silver.orders']:" in system  # a name KQL must bracket is shown bracketed
    assert "fact_sales | join kind=inner dim_store on store_key" in system  # joins as KQL writes them
    assert (
        "Error (unknown_table)" in repair.messages[-1].content and "dim_store" in repair.messages[-1].content
    )

    [result] = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]
    assert result["language"] == "kql" and result["query"] == GOOD
    assert result["result"]["columns"] == [
        {"name": "channel", "type": "string"},
        {"name": "orders", "type": "long"},
    ]
    [table] = [e.value for e in events if e.type == EventType.CUSTOM and e.name == "loom.result_table"]
    assert table["engine"] == "duckdb-kql" and table["query"] == GOOD
    assert '"gold"."fact_sales"' in table["executed_query"]  # the SQL that ran, alongside
