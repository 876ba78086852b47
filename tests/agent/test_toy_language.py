"""A new language plugs into the seam: its engine, its tool and prompts, its CLI command, and
nothing else changes (the toy language lives in tests/tools/toy_language.py)."""

import json
from pathlib import Path
from typing import Any

import pytest
from ag_ui.core import EventType
from typer.testing import CliRunner

from loom.access import OPEN
from loom.agent.events import RESULT_TABLE
from loom.agent.testing import ScriptedModel, text, tool_call
from loom.agent.turns import TurnRequest
from loom.engines import registry
from loom.engines.sources import DuckDBSource, SynapseSource
from loom.identity import DEV_PRINCIPAL
from loom.tools import nl2sql
from tests.agent.conftest import AgentFactory
from tests.tools import toy_language


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.OPENERS, ("duckdb", "toy"), toy_language.open_toy)


@pytest.fixture
def source(lakehouse: Path) -> DuckDBSource:
    """The sales source, with the agent offering toy as well as SQL for it (a source's `languages`)."""
    return DuckDBSource(name="sales", location=str(lakehouse), languages=("sql", "toy"))


def block(query: str) -> Any:
    return text(f"```toy\n{query}\n```")


async def events_of(agent: Any, message: str, **request: Any) -> list[Any]:
    return [e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=message, **request))]


async def test_a_toy_question_is_generated_repaired_and_run_on_the_same_data(
    toy: None, make_agent: AgentFactory
) -> None:
    model = ScriptedModel().queue(
        tool_call("toy_query", {"question": "how many stores?"}),
        block("COUNT gold.stores"),  # a wrong table: the engine's error goes back to the model
        block("COUNT gold.dim_store"),
        text("There are some stores."),
    )
    agent = make_agent(model, tools=[nl2sql.TOOL, toy_language.TOOL])
    events = await events_of(agent, "how many stores?")

    [result] = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]
    assert result["language"] == "toy"
    assert result["query"] == "COUNT gold.dim_store"
    assert result["attempts"][0]["error"]["code"] == "unknown_table"
    [table] = [e.value for e in events if e.type == EventType.CUSTOM and e.name == RESULT_TABLE]
    assert table["engine"] == "toy-duckdb"  # the user's table says which engine ran it
    sql = agent.engines.engine(agent.sources()["sales"], "sql")
    expected = sql.execute("SELECT count(*) FROM gold.dim_store", max_rows=1, timeout_s=5).rows
    assert result["result"]["rows"] == expected  # the same DuckDB data answers both languages
    generation, repair = model.calls[1], model.calls[2]
    assert "Write one toy query for source `sales`" in generation.messages[0].content
    assert "That failed (unknown_table)" in repair.messages[-1].content


async def test_the_system_prompt_and_the_tools_follow_the_sources_languages(
    toy: None, make_agent: AgentFactory
) -> None:
    model = ScriptedModel().queue(text("hello"))
    await events_of(make_agent(model, tools=[nl2sql.TOOL, toy_language.TOOL]), "hi")
    [call] = model.calls
    system = call.messages[0].content
    assert toy_language.GUIDANCE in system
    assert "answers SQL in the duckdb dialect, TOY" in system
    offered = [t["function"]["name"] for t in call.tools]
    assert offered == ["nl2sql", "toy_query"]
    source_arg = call.tools[1]["function"]["parameters"]["properties"]["source"]
    assert source_arg["enum"] == ["sales"]


async def test_a_tool_whose_language_no_source_answers_is_not_offered(
    make_agent: AgentFactory, store: Any, engines: Any
) -> None:
    from loom.agent.loop import Agent

    model = ScriptedModel().queue(text("hello"))
    # No opener for toy is registered here, so no source answers it.
    await events_of(make_agent(model, tools=[nl2sql.TOOL, toy_language.TOOL]), "hi")
    assert [t["function"]["name"] for t in model.calls[0].tools] == ["nl2sql"]
    assert "toy_query" not in model.calls[0].messages[0].content

    cloud = SynapseSource(name="dw", kind="synapse", location="h", database="lake")
    agent = Agent(
        ScriptedModel().queue(text("hi")), [toy_language.TOOL], store, engines, lambda: {"dw": cloud}, OPEN
    )
    await events_of(agent, "hi")
    assert agent.model.calls[0].tools == []  # type: ignore[attr-defined]


def test_the_cli_gets_a_query_command_for_the_language(toy: None, tmp_path: Path) -> None:
    from loom.cli.main import app, mount_subcommands
    from loom.lakehouse.seed import seed_lakehouse

    seed_lakehouse(tmp_path / "lake", orders=50)
    mount_subcommands()
    result = CliRunner().invoke(
        app, ["query", "toy", "--source", str(tmp_path / "lake"), "--format", "json", "COUNT gold.dim_store"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["engine"] == "toy-duckdb"
    refused = CliRunner().invoke(app, ["query", "toy", "--source", str(tmp_path / "lake"), "DROP it"])
    assert refused.exit_code == 2


def test_a_source_kind_that_does_not_answer_the_language_is_refused(toy: None) -> None:
    cloud = SynapseSource(name="dw", kind="synapse", location="h", database="lake")
    assert registry.languages(cloud) == ("sql",)
    assert (
        registry.languages(
            SynapseSource(name="dw", kind="synapse", location="h", database="l", languages=("toy",))
        )
        == ()
    )
    assert registry.answerable(DuckDBSource(name="l", location="x")) == ("sql", "kql", "toy")
    assert registry.languages(DuckDBSource(name="l", location="x")) == ("sql",)  # one, unless listed
    assert registry.languages(DuckDBSource(name="l", location="x", languages=("toy", "sql"))) == (
        "toy",
        "sql",
    )


async def test_each_tool_names_only_the_sources_that_answer_its_language(
    toy: None, source: Any, store: Any, engines: Any
) -> None:
    from loom.agent.loop import Agent

    cloud = SynapseSource(name="dw", kind="synapse", location="h", database="lake")
    both = {"sales": source, "dw": cloud}
    model = ScriptedModel().queue(text("hi"))
    await events_of(Agent(model, [nl2sql.TOOL, toy_language.TOOL], store, engines, lambda: both, OPEN), "hi")
    enums = {
        t["function"]["name"]: t["function"]["parameters"]["properties"]["source"]["enum"]
        for t in model.calls[0].tools
    }
    assert enums == {"nl2sql": ["sales", "dw"], "toy_query": ["sales"]}
