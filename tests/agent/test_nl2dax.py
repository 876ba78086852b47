"""`nl2dax` through the agent, on the sample lakehouse's semantic model: offered for a model source,
the model's measures shown first, a failed query repaired with the engine's error, the result naming
the measures the answer stands on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ag_ui.core import EventType

from loom.agent.sources import SALES_MODEL
from loom.agent.testing import ScriptedModel, text, tool_call
from loom.agent.turns import TurnRequest
from loom.engines.sources import ModelSource
from loom.identity import DEV_PRINCIPAL
from tests.agent.conftest import AgentFactory

GOOD = 'EVALUATE SUMMARIZECOLUMNS(Store[Channel], "Revenue", [Revenue], "AOV", [Average Order Value])'


@pytest.fixture
def source(lakehouse: Path) -> ModelSource:
    return ModelSource(kind="model", name="sales-model", location=str(SALES_MODEL), lakehouse=str(lakehouse))


def dax_block(query: str) -> Any:
    return text(f"```dax\n{query}\n```")


async def test_a_dax_question_is_written_repaired_and_answered_with_the_measures_named(
    make_agent: AgentFactory,
) -> None:
    model = ScriptedModel().queue(
        tool_call("nl2dax", {"question": "Revenue and average order value per channel?"}),
        dax_block(GOOD.replace("[Average Order Value]", "[Avg Order Value]")),  # not a measure
        dax_block(GOOD),
        text("Done."),
    )
    agent = make_agent(model)
    events = [e async for e in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message="Revenue per channel?"))]
    assert [t["function"]["name"] for t in model.calls[0].tools] == ["nl2dax"]

    system = model.calls[1].messages[0].content
    assert "one DAX query" in system and "- [Revenue] (in 'Sales'): Net revenue" in system
    assert "[Channel] string" in system and "- 'Sales' → 'Store' (many to one)" in system
    assert "[StoreKey]" not in system  # hidden
    repair = model.calls[2].messages[-1].content
    assert "Error (unknown_measure)" in repair and "Average Order Value" in repair  # the close match named

    [result] = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]  # type: ignore[attr-defined]
    assert result["language"] == "dax" and result["query"] == GOOD
    assert result["measures_used"] == ["Revenue", "Average Order Value"]
    assert [c["name"] for c in result["result"]["columns"]] == ["Store[Channel]", "[Revenue]", "[AOV]"]
    assert result["result"]["row_count"] == 2


def test_every_verified_dax_query_of_the_sample_model_runs(lakehouse: Path) -> None:
    from loom.agent.sources import _sales_model
    from loom.engines.dax.engine import DaxEngine
    from loom.engines.sql.limits import LocalLimits

    model = _sales_model(lakehouse)
    assert len(model.verified_queries) >= 7
    engine = DaxEngine(model, LocalLimits(isolated=False))
    for verified in model.verified_queries:
        result = engine.execute(verified.query, max_rows=100, timeout_s=60)
        assert result.row_count > 0, verified.question
    engine.close()
