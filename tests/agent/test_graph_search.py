"""`graph_search` through the agent: offered for a graph source, the graph's labels and keys shown
to the model, a failed traversal repaired with the engine's error, one row per result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ag_ui.core import EventType

from loom.agent.testing import ScriptedModel, text, tool_call
from loom.agent.turns import TurnRequest
from loom.engines.sources import GraphSource
from loom.identity import DEV_PRINCIPAL
from loom.tools.graph_search import is_gremlin
from tests.agent.conftest import AgentFactory

NODES = (
    "~id,~label,code:string,city:string\n3,airport,AUS,Austin\n8,airport,DFW,Dallas\n13,airport,IAH,Houston\n"
)
EDGES = "~id,~from,~to,~label,dist:int\n5161,3,8,route,190\n5162,8,13,route,224\n"


@pytest.fixture
def source(tmp_path: Path) -> GraphSource:  # the source conftest's make_agent gives the agent
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "edges.csv").write_text(EDGES)
    return GraphSource(kind="graph", name="routes", location=str(tmp_path), description="air routes")


def gremlin_block(query: str) -> Any:
    return text(f"```gremlin\n{query}\n```")


async def test_a_graph_question_is_written_repaired_and_answered(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(
        tool_call("graph_search", {"question": "Where can I fly from Austin with one stop?"}),
        gremlin_block("g.V().has('code','AUS').out('route').outt('route').values('city')"),
        gremlin_block("g.V().has('code','AUS').out('route').out('route').values('city')"),
        text("Houston, via Dallas."),
    )
    agent = make_agent(model)
    events: list[Any] = [
        e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message="From Austin, one stop?"))
    ]
    assert [t["function"]["name"] for t in model.calls[0].tools] == ["graph_search"]
    system = model.calls[1].messages[0].content
    assert "- airport (3): city: string e.g. 'Austin'" in system
    assert "- route (2): airport → airport; dist: long" in system
    repair = model.calls[2].messages[-1].content
    assert "Error (unknown_step)" in repair and "outt" in repair
    [result] = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]
    assert result["language"] == "gremlin"
    assert result["query"] == "g.V().has('code','AUS').out('route').out('route').values('city')"
    assert result["result"]["rows"] == [["Houston"]]


@pytest.mark.parametrize(
    ("written", "is_query"),
    [
        ("g.V().has('code','AUS').count()", True),
        ("g.V().count();", True),
        ("How many airports?", False),
        ("g.V().map{it}", False),
    ],
)
def test_a_traversal_passed_as_the_question_is_told_apart(written: str, is_query: bool) -> None:
    assert is_gremlin(written) is is_query
