"""`search_documents` through the agent: offered for an index source, numbered passages read by
the model, the passages in the stream as a citations event, numbers that run on through a turn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ag_ui.core import EventType

from loom.agent.testing import ScriptedModel, text, tool_call
from loom.agent.turns import TurnRequest
from loom.engines.search.build import BuildOptions, build_index
from loom.engines.sources import IndexSource
from loom.identity import DEV_PRINCIPAL
from tests.agent.conftest import AgentFactory


@pytest.fixture
def source(tmp_path: Path) -> IndexSource:  # the source conftest's make_agent gives the agent
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text(
        "---\ndepartment: finance\n---\n# Refunds\n\nGoods may be returned within 30 days.\n"
    )
    (docs / "laptops.md").write_text(
        "---\ndepartment: hr\n---\n# Onboarding\n\nNew staff get a laptop on day one.\n"
    )
    build_index(docs, tmp_path / "index", BuildOptions(size=400, overlap=50))
    return IndexSource(
        kind="index", name="policies", location=str(tmp_path / "index"), description="policies"
    )


async def turn(make_agent: AgentFactory, model: ScriptedModel, message: str) -> list[Any]:
    agent = make_agent(model)
    return [e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=message))]


async def test_passages_come_numbered_to_the_model_and_as_citations_to_the_client(
    make_agent: AgentFactory,
) -> None:
    model = ScriptedModel().queue(
        tool_call("search_documents", {"question": "how long do customers have to return goods?"}),
        text("Within 30 days [1]."),
    )
    events = await turn(make_agent, model, "How long to return goods?")
    assert [t["function"]["name"] for t in model.calls[0].tools] == ["search_documents"]
    read = json.loads(model.calls[1].messages[-1].content)
    assert read["source"] == "policies" and read["note"].startswith("Cite the passages you use as [n]")
    assert read["passages"][0]["n"] == 1 and read["passages"][0]["document"] == "refunds.md"
    assert "Goods may be returned within 30 days." in read["passages"][0]["text"]
    [cited] = [e.value for e in events if e.type == EventType.CUSTOM and e.name == "loom.citations"]
    first = cited["citations"][0]
    assert first["n"] == 1 and first["citation"] == "policies:refunds.md#0" and first["source"] == "policies"
    assert "text" not in first


async def test_two_searches_in_a_turn_never_share_a_number(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(
        tool_call("search_documents", {"question": "return goods", "top": 1}),
        tool_call("search_documents", {"question": "laptop for new staff", "top": 1}),
        tool_call("search_documents", {"question": "returned goods days", "top": 1}),
        text("Done."),
    )
    events = await turn(make_agent, model, "Refunds and laptops?")
    numbers = [
        [(c["n"], c["id"]) for c in e.value["citations"]]
        for e in events
        if e.type == EventType.CUSTOM and e.name == "loom.citations"
    ]
    assert numbers == [[(1, "refunds.md")], [(2, "laptops.md")], [(1, "refunds.md")]]


async def test_a_bad_filter_comes_back_to_the_model_naming_the_field(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(
        tool_call("search_documents", {"question": "laptop", "filter": "departmnt eq 'hr'"}),
        text("I could not search with that filter."),
    )
    events = await turn(make_agent, model, "Laptops in HR?")
    [result] = [e.content for e in events if e.type == EventType.TOOL_CALL_RESULT]
    assert "unknown_field" in result and "department" in result
    assert not [e for e in events if e.type == EventType.CUSTOM and e.name == "loom.citations"]


async def test_a_citation_with_no_search_behind_it_is_pointed_out(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(text("Net amount is the value after discounts [1]."))
    events = await turn(make_agent, model, "What does net amount mean?")
    said = "".join(e.delta for e in events if e.type == EventType.TEXT_MESSAGE_CONTENT)
    assert "Note: [1] above cites no passage" in said


async def test_citations_of_passages_handed_out_pass_without_a_note(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(
        tool_call("search_documents", {"question": "return goods"}),
        text("Within 30 days [1]; see [the policy](https://example.com)."),
    )
    events = await turn(make_agent, model, "How long to return goods?")
    said = "".join(e.delta for e in events if e.type == EventType.TEXT_MESSAGE_CONTENT)
    assert "cites no passage" not in said  # [1] came back; a Markdown link is not a citation
