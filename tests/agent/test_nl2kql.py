"""`nl2kql` through the agent: offered for a source that lists KQL, its schema shown in KQL's
spelling, a failed query repaired with the engine's error, the KQL shown with Kusto-typed rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ag_ui.core import EventType

from loom.access import OPEN
from loom.agent.events import RESULT_TABLE
from loom.agent.loop import Agent, TurnLimits
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.testing import ScriptedModel, text, tool_call
from loom.agent.tool_calls import to_answering_tools
from loom.agent.turns import TurnRequest
from loom.engines.registry import EnginePool
from loom.engines.sources import DuckDBSource, Source
from loom.identity import DEV_PRINCIPAL
from loom.settings import DEFAULTS
from loom.tools.base import ToolContext
from loom.tools.registry import TOOLS
from tests.agent.conftest import AgentFactory

GOOD = "fact_sales | join kind=inner dim_store on store_key | summarize orders = dcount(order_id) by channel"


@pytest.fixture
def source(lakehouse: Path) -> DuckDBSource:
    return DuckDBSource(name="sales", location=str(lakehouse), description="test sales", languages=("kql",))


def kql_block(query: str) -> Any:
    return text(f"```kql\n{query}\n```")


def agent_over(model: ScriptedModel, store: Any, engines: EnginePool, *sources: Source) -> Agent:
    """An agent over these sources (the conftest's `make_agent` has one)."""
    return Agent(
        model=model,
        tools=TOOLS,
        store=store,
        engines=engines,
        sources=lambda: {s.name: s for s in sources},
        access=OPEN,
        limits=TurnLimits.of(DEFAULTS),
    )


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


async def test_nl2kql_answers_from_an_adx_source_through_its_http_seam(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same tool over Azure Data Explorer: the schema read with the engine's own management
    command, the model's KQL checked here and sent as a query, the rows shown with Kusto types."""
    pytest.importorskip("azure.kusto.data", reason="the adx extra (azure-kusto-data) is not installed")
    from loom.engines import registry
    from loom.engines.kql.adx.engine import AdxEngine
    from loom.engines.sources import AdxSource
    from tests.engines.test_adx import CLUSTER, FakeCredential, FakeKusto, query_reply, schema_reply

    fake = FakeKusto(
        answer=lambda sent: schema_reply() if sent.body["csl"].startswith(".show") else query_reply()
    )
    monkeypatch.setitem(
        registry.OPENERS,
        ("adx", "kql"),
        lambda s, _: AdxEngine(s.location, "Samples", credential=FakeCredential(), transport=fake),
    )
    source = AdxSource(name="storms", kind="adx", location=CLUSTER, database="Samples", allow=("*",))
    model = ScriptedModel().queue(
        tool_call("nl2kql", {"question": "Events per state?"}),
        kql_block("StormEvents | summarize n = count() by State"),
        text("Texas had 12."),
    )
    agent = agent_over(model, store, registry.EnginePool(), source)
    events = await events_of(agent, "Events per state?")
    assert "- StormEvents: StartTime: datetime" in model.calls[1].messages[0].content  # ADX's schema
    assert [s.body["csl"] for s in fake.sent] == [
        ".show database ['Samples'] schema as json",
        "StormEvents | summarize n = count() by State",
    ]
    [result] = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]
    assert result["result"]["columns"] == [{"name": "State", "type": "string"}, {"name": "n", "type": "long"}]
    assert result["result"]["rows"] == [["TEXAS", 12]]


async def test_a_data_tool_asked_of_a_source_in_another_language_runs_the_tool_that_answers_it(
    lakehouse: Path, store: SqliteConversationStore, engines: EnginePool
) -> None:
    # The local 1.5B model asked nl2sql of the KQL source and told the user the data was not there.
    sales = DuckDBSource(name="sales", location=str(lakehouse), description="sales")
    stores = DuckDBSource(name="stores", location=str(lakehouse), description="stores", languages=("kql",))
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "Number of stores", "source": "stores"}),
        kql_block("dim_store | count"),
        text("Done."),
    )
    agent = agent_over(model, store, engines, sales, stores)
    events = await events_of(agent, "How many stores?")
    [result] = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]
    assert result["language"] == "kql" and result["query"] == "dim_store | count"
    [table] = [e.value for e in events if e.type == EventType.CUSTOM and e.name == RESULT_TABLE]
    assert table["tool"] == "nl2kql"  # the client is told which tool answered


@pytest.mark.parametrize(
    ("name", "arguments", "runs"),
    [
        ("nl2sql", {"source": "stores"}, "nl2kql"),
        ("nl2kql", {"source": "sales"}, "nl2sql"),
        ("nl2sql", {"source": "sales"}, "nl2sql"),  # its own language's source: as written
        ("nl2sql", {"source": "nowhere"}, "nl2sql"),  # no such source: its own error says so
        ("nl2sql", {}, "nl2sql"),
        ("nl2dax", {"source": "stores"}, "nl2kql"),
    ],
)
def test_only_a_source_named_in_another_language_changes_the_tool(
    lakehouse: Path, engines: EnginePool, name: str, arguments: dict[str, str], runs: str
) -> None:
    sales = DuckDBSource(name="sales", location=str(lakehouse), description="sales")
    stores = DuckDBSource(name="stores", location=str(lakehouse), description="stores", languages=("kql",))
    ctx = ToolContext(principal=DEV_PRINCIPAL, sources=[sales, stores], engines=engines)
    (call,) = tool_call(name, arguments).tool_calls
    (sent,) = to_answering_tools([call], ctx, {t.name: t for t in TOOLS})
    assert sent.name == runs and sent.id == call.id and sent.arguments == call.arguments
