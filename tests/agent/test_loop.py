"""The turn loop with a scripted model, the real SQLite store and DuckDB over a seeded lakehouse."""

import asyncio
import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from ag_ui.core import BaseEvent, EventType
from pydantic import BaseModel

from loom.access import OPEN
from loom.agent.approval import Decision
from loom.agent.events import APPROVAL_REQUIRED, RESULT_TABLE
from loom.agent.loop import Agent
from loom.agent.model import ModelReply, ToolCall
from loom.agent.sources import SALES_MODEL
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.testing import FailingModel, ScriptedModel, sql_block, text, tool_call, tool_calls
from loom.agent.turns import TurnRequest
from loom.engines.search.build import BuildOptions, build_index
from loom.engines.sources import DuckDBSource, GraphSource, IndexSource, ModelSource, Source, VerifiedQuery
from loom.identity import DEV_PRINCIPAL, Principal
from loom.tools.base import Effect, Tool, ToolContext, ToolResult, define
from loom.tools.registry import TOOLS
from tests.agent.conftest import VERIFIED, AgentFactory

COUNT_SQL = "SELECT COUNT(*) AS orders FROM gold.fact_sales"


async def collect(agent: Any, message: str, conversation_id: str | None = None) -> list[BaseEvent]:
    request = TurnRequest(message=message, conversation_id=conversation_id)
    return [e async for e in agent.run_turn(DEV_PRINCIPAL, request)]


def types(events: list[BaseEvent]) -> list[str]:
    return [str(e.type.value) for e in events]


def custom(events: list[BaseEvent], name: str) -> list[dict[str, Any]]:
    return [e.value for e in events if e.type == EventType.CUSTOM and e.name == name]  # type: ignore[attr-defined]


def true_count(lakehouse: Any) -> int:
    from deltalake import DeltaTable

    return DeltaTable(str(lakehouse / "gold" / "fact_sales")).to_pyarrow_dataset().count_rows()


async def test_a_question_streams_a_tool_call_its_result_and_the_answer(
    make_agent: AgentFactory, store: SqliteConversationStore, lakehouse: Any
) -> None:
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "How many order lines are there?"}),
        sql_block(COUNT_SQL),
        text("There are many order lines."),
    )
    events = await collect(make_agent(model), "How many order lines are there?")

    assert types(events)[0] == "RUN_STARTED"
    assert types(events)[-1] == "RUN_FINISHED"
    for kind in (
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
        "TEXT_MESSAGE_CONTENT",
    ):
        assert kind in types(events)
    [table] = custom(events, RESULT_TABLE)
    assert table["rows"] == [[true_count(lakehouse)]]
    assert "fact_sales" in table["query"]
    # Three model calls: the turn, the tool's query generation (no tools offered), the answer.
    assert [bool(c.tools) for c in model.calls] == [True, False, True]
    stored = await store.messages(DEV_PRINCIPAL, events[0].thread_id)  # type: ignore[attr-defined]
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[2].metadata["result"]["query"] == table["query"]


async def test_the_model_sees_the_tool_result_it_asked_for(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(tool_call("nl2sql", {"question": "q"}), sql_block(COUNT_SQL), text("ok"))
    await collect(make_agent(model), "q")
    last = model.calls[-1].messages
    assert last[-2].tool_calls
    assert last[-1].role == "tool"
    assert last[-1].tool_call_id == last[-2].tool_calls[0].id
    assert json.loads(last[-1].content)["result"]["row_count"] == 1


async def test_a_failing_query_is_repaired_with_the_engine_error(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "q"}),
        sql_block("SELECT no_such_column FROM gold.fact_sales"),
        sql_block(COUNT_SQL),
        text("done"),
    )
    events = await collect(make_agent(model), "q")
    repair_prompt = model.calls[2].messages[-1].content
    assert "no_such_column" in repair_prompt  # the engine's error went back to the model
    [result] = [e for e in events if e.type == EventType.TOOL_CALL_RESULT]
    body = json.loads(result.content)  # type: ignore[attr-defined]
    assert body["attempts"][0]["query"].startswith("SELECT no_such_column")
    assert body["result"]["row_count"] == 1


async def test_unsafe_queries_are_refused_and_never_run(make_agent: AgentFactory, lakehouse: Any) -> None:
    before = true_count(lakehouse)
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "delete everything"}),
        sql_block("DELETE FROM gold.fact_sales"),
        sql_block("SELECT 1; DROP TABLE gold.fact_sales"),
        sql_block("SELECT * FROM read_csv('/etc/passwd')"),
        text("I could not do that."),
    )
    events = await collect(make_agent(model), "delete everything")
    [result] = [e for e in events if e.type == EventType.TOOL_CALL_RESULT]
    error = json.loads(result.content)["error"]  # type: ignore[attr-defined]
    assert error["code"] == "query_failed"
    assert types(events)[-1] == "RUN_FINISHED"  # the turn still completes
    assert true_count(lakehouse) == before


class BoomArgs(BaseModel):
    x: int = 0


async def boom(ctx: ToolContext, args: BoomArgs) -> ToolResult:
    """Always fails."""
    raise RuntimeError("kaput")


async def test_a_tool_that_raises_becomes_an_error_result_and_the_turn_completes(
    make_agent: AgentFactory,
) -> None:
    model = ScriptedModel().queue(tool_call("boom", {}), text("The tool failed."))
    events = await collect(make_agent(model, tools=[define(boom, effect=Effect.READ, name="boom")]), "go")
    seen = json.loads(model.calls[1].messages[-1].content)
    assert seen["error"]["code"] == "tool_failed"
    assert "kaput" in seen["error"]["message"]
    assert types(events)[-1] == "RUN_FINISHED"


async def test_invalid_arguments_and_unknown_tools_are_reported_to_the_model(
    make_agent: AgentFactory,
) -> None:
    model = ScriptedModel().queue(
        tool_calls(("nl2sql", {"question": ["not", "text"]}), ("no_such_tool", {})), text("sorry")
    )
    await collect(make_agent(model), "go")
    errors = [json.loads(m.content)["error"] for m in model.calls[1].messages if m.role == "tool"]
    assert [e["code"] for e in errors] == ["invalid_arguments", "unknown_tool"]
    why = "question: Input should be a valid string"  # by field, without pydantic's link or echoed input
    assert errors[0]["message"] == f"arguments for nl2sql are not valid: {why}"


async def test_model_failure_ends_with_run_error_and_keeps_the_message(
    make_agent: AgentFactory, store: SqliteConversationStore
) -> None:
    events = await collect(make_agent(FailingModel("endpoint down after 3 retries")), "hello?")
    assert types(events) == ["RUN_STARTED", "RUN_ERROR"]
    assert "endpoint down" in events[-1].message  # type: ignore[attr-defined]
    stored = await store.messages(DEV_PRINCIPAL, events[0].thread_id)  # type: ignore[attr-defined]
    assert [(m.role, m.content) for m in stored] == [("user", "hello?")]


class BreaksAfterACall(FailingModel):
    """Streams the start of a tool call, then fails as a dropped connection would."""

    async def stream(self, messages: Any, tools: Any = ()) -> Any:
        from loom.agent.model import ModelError, ToolCallDelta

        yield ToolCallDelta(id="call_1", name="nl2sql", arguments='{"question": ')
        raise ModelError("the connection dropped")


async def test_a_model_call_failing_part_way_ends_the_tool_call_it_opened(make_agent: AgentFactory) -> None:
    # Probe 27 (low): TOOL_CALL_START was left open before the RUN_ERROR.
    events = await collect(make_agent(BreaksAfterACall()), "hello?")
    assert types(events) == ["RUN_STARTED", "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "RUN_ERROR"]


async def test_tool_rounds_are_capped_and_the_last_call_must_answer(make_agent: AgentFactory) -> None:
    def keep_calling(messages: Any, tools: Any) -> Any:
        return tool_call("nl2sql", {"question": "again"}) if tools else text("final answer")

    model = ScriptedModel()
    for _ in range(2):
        model.queue(keep_calling, sql_block(COUNT_SQL))
    model.queue(keep_calling)
    events = await collect(make_agent(model, max_tool_rounds=2), "loop forever")
    assert [bool(c.tools) for c in model.calls] == [True, False, True, False, False]
    assert "final answer" in "".join(e.delta for e in events if e.type == EventType.TEXT_MESSAGE_CONTENT)  # type: ignore[attr-defined]


async def test_calls_made_after_the_tools_were_withdrawn_do_not_run(make_agent: AgentFactory) -> None:
    # Probe 28 (R28-3): a model that kept calling once offered no tools ran 10 rounds of queries,
    # stopped only by the model-call limit.
    model = ScriptedModel()
    for _ in range(2):
        model.queue(tool_call("nl2sql", {"question": "q"}), sql_block(COUNT_SQL))
    again = tool_call("nl2sql", {"question": "q"}).tool_calls
    model.queue(ModelReply(text="Checking once more.", tool_calls=again))
    events = await collect(make_agent(model, max_tool_rounds=2), "q")
    assert [bool(c.tools) for c in model.calls] == [True, False, True, False, False]
    assert types(events).count("TOOL_CALL_START") == 2 and types(events).count("TOOL_CALL_RESULT") == 2
    said = "".join(e.delta for e in events if e.type == EventType.TEXT_MESSAGE_CONTENT)  # type: ignore[attr-defined]
    assert said.endswith("limit of 2 tool rounds.") and "Checking once more." in said
    assert types(events)[-1] == "RUN_FINISHED"


async def test_model_calls_are_capped_per_turn(make_agent: AgentFactory) -> None:
    model = ScriptedModel()
    for _ in range(5):
        model.queue(tool_call("nl2sql", {"question": "q"}), sql_block(COUNT_SQL))
    events = await collect(make_agent(model, max_model_calls=3, max_tool_rounds=10), "q")
    assert len(model.calls) == 3
    text_out = "".join(e.delta for e in events if e.type == EventType.TEXT_MESSAGE_CONTENT)  # type: ignore[attr-defined]
    assert "limit of 3 model calls" in text_out
    assert types(events)[-1] == "RUN_FINISHED"


async def test_a_tools_own_model_call_over_the_limit_is_a_plain_tool_error(
    make_agent: AgentFactory, caplog: Any
) -> None:
    model = ScriptedModel().queue(tool_call("nl2sql", {"question": "q"}))  # the turn's only call
    with caplog.at_level("ERROR"):
        events = await collect(make_agent(model, max_model_calls=1), "q")
    [result] = [e for e in events if e.type == EventType.TOOL_CALL_RESULT]
    error = json.loads(result.content)["error"]  # type: ignore[attr-defined]
    assert error["code"] == "budget_exhausted"
    assert "limit of 1 model calls" in error["message"]
    assert types(events)[-1] == "RUN_FINISHED"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # expected, so no traceback


class WriteArgs(BaseModel):
    name: str


class WriteResult(ToolResult):
    done: bool


def workspace_tool(ran: list[str], effect: Effect = Effect.WRITE) -> Tool:
    """A tool that records each run in `ran` (a list the test owns)."""

    async def create_workspace(ctx: ToolContext, args: WriteArgs) -> WriteResult:
        """Creates a workspace."""
        ran.append(args.name)
        return WriteResult(done=True)

    return define(create_workspace, effect=effect)


async def test_a_write_tool_pauses_the_run_for_approval_without_running(make_agent: AgentFactory) -> None:
    ran: list[str] = []
    model = ScriptedModel().queue(tool_call("create_workspace", {"name": "finance"}))
    events = await collect(make_agent(model, tools=[workspace_tool(ran)]), "create a finance workspace")
    assert ran == []
    [request] = custom(events, APPROVAL_REQUIRED)
    assert request["tool"] == "create_workspace"
    assert request["effect"] == "write"
    finished = events[-1]
    assert finished.type == EventType.RUN_FINISHED
    assert finished.outcome.type == "interrupt"  # type: ignore[attr-defined]
    assert finished.outcome.interrupts[0].tool_call_id == request["tool_call_id"]  # type: ignore[attr-defined]
    assert len(model.calls) == 1  # the model is not asked to go on without the approval


class DenyAll:
    """A gate that refuses every call, whatever its effect."""

    async def decide(self, principal: Principal, tool: Tool, call: ToolCall) -> Decision:
        return Decision.DENY


async def test_a_denied_call_does_not_run_and_the_model_is_told(make_agent: AgentFactory) -> None:
    ran: list[str] = []
    tool = workspace_tool(ran, effect=Effect.READ)  # the gate decides, not the effect
    model = ScriptedModel().queue(tool_call("create_workspace", {"name": "finance"}), text("I may not."))
    agent = dataclasses.replace(make_agent(model, tools=[tool]), gate=DenyAll())

    events = await collect(agent, "create a finance workspace")

    assert ran == []
    [result] = [e for e in events if e.type == EventType.TOOL_CALL_RESULT]
    assert json.loads(result.content)["status"] == "denied"  # type: ignore[attr-defined]
    assert json.loads(model.calls[1].messages[-1].content)["status"] == "denied"
    assert custom(events, APPROVAL_REQUIRED) == []
    assert events[-1].outcome.type == "success"  # type: ignore[attr-defined]


class WaitArgs(BaseModel):
    name: str


async def test_independent_tool_calls_run_concurrently(make_agent: AgentFactory) -> None:
    both_started = asyncio.Event()
    started: list[str] = []

    async def wait_for_peer(ctx: ToolContext, args: WaitArgs) -> WriteResult:
        """Returns only once the other call has started too."""
        started.append(args.name)
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), timeout=2)
        return WriteResult(done=True)

    tool = define(wait_for_peer, effect=Effect.READ, name="wait")
    model = ScriptedModel().queue(tool_calls(("wait", {"name": "a"}), ("wait", {"name": "b"})), text("both"))
    events = await collect(make_agent(model, tools=[tool]), "go")
    results = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]  # type: ignore[attr-defined]
    assert results == [{"done": True}, {"done": True}]


async def test_history_carries_into_the_next_turn(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(text("first answer"), text("second answer"))
    agent = make_agent(model)
    first = await collect(agent, "first question")
    await collect(agent, "and a follow-up", conversation_id=first[0].thread_id)  # type: ignore[attr-defined]
    seen = [(m.role, m.content) for m in model.calls[1].messages[1:]]
    assert seen == [("user", "first question"), ("assistant", "first answer"), ("user", "and a follow-up")]


async def test_a_turn_reads_only_a_bounded_page_of_history(
    make_agent: AgentFactory, store: SqliteConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Probe 11 (R11-5): every turn read the whole conversation, result tables and all.
    reads: list[dict[str, Any]] = []
    messages = store.messages

    async def recorded(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs)
        return await messages(*args, **kwargs)

    monkeypatch.setattr(store, "messages", recorded)
    model = ScriptedModel().queue(text("one"), text("two"))
    agent = make_agent(model, history_chars=1000)
    thread = (await collect(agent, "q1"))[0].thread_id  # type: ignore[attr-defined]
    await collect(agent, "q2", conversation_id=thread)
    assert reads == [{"limit": 400, "max_bytes": 8000, "with_metadata": False}]
    assert [m.content for m in model.calls[1].messages[1:]] == ["q1", "one", "q2"]


def test_a_history_page_cut_inside_a_turn_starts_at_its_next_question() -> None:
    from loom.agent.loop import _from_a_question
    from loom.agent.store import StoredMessage

    def stored(seq: int, role: str) -> StoredMessage:
        return StoredMessage(
            id=str(seq), conversation_id="c", seq=seq, role=role, content="", created_at="2026-01-01T00:00:00"
        )

    page = [stored(5, "tool"), stored(6, "assistant"), stored(7, "user"), stored(8, "assistant")]
    assert [m.seq for m in _from_a_question(page)] == [7, 8]


async def test_a_full_conversation_takes_no_more_turns(make_agent: AgentFactory) -> None:
    from loom.agent.store import ConversationFull

    agent = make_agent(ScriptedModel().queue(text("one"), text("two")), conversation_messages=4)
    thread = (await collect(agent, "q1"))[0].thread_id  # type: ignore[attr-defined]
    await collect(agent, "q2", conversation_id=thread)  # 4 messages now
    with pytest.raises(ConversationFull):
        await collect(agent, "q3", conversation_id=thread)


async def test_a_query_passed_as_the_question_is_replaced_by_the_users_words(
    make_agent: AgentFactory,
) -> None:
    # Qwen2.5-Coder-1.5B, offered two tools, passed `SELECT channel, COUNT(*) FROM sales …` (over
    # tables that do not exist) as the question; the tool writes the query for what the user asked.
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "SELECT channel, COUNT(*) FROM sales GROUP BY channel"}),
        sql_block(COUNT_SQL),
        text("Done."),
    )
    await collect(make_agent(model), "How many orders are there in all?")
    assert model.calls[1].messages[-1].content.startswith("How many orders are there in all?")


def test_every_registered_tool_has_a_description_and_an_object_schema() -> None:
    for tool in TOOLS:
        assert tool.description, tool.name
        schema: dict[str, Any] = tool.schema()
        assert schema["function"]["parameters"]["type"] == "object", tool.name


# Arguments each registered tool runs with against the test source (no model call needed), and
# the verified queries that let a data tool answer them.
SAMPLE_ARGS: dict[str, dict[str, Any]] = {
    "nl2sql": {"question": VERIFIED[0].question},
    "nl2kql": {"question": "Number of stores"},
    "nl2dax": {"question": "Revenue by year", "source": "sales-model"},
    "graph_search": {"question": "Number of airports", "source": "routes"},
    "search_documents": {"question": "airports", "source": "docs"},
}
SAMPLE_VERIFIED = (VerifiedQuery(question="Number of stores", query="dim_store | count", language="kql"),)
GREMLIN_VERIFIED = (
    VerifiedQuery(
        question="Number of airports", query="g.V().hasLabel('airport').count()", language="gremlin"
    ),
)
DAX_VERIFIED = (
    VerifiedQuery(
        question="Revenue by year",
        query="EVALUATE SUMMARIZECOLUMNS('Date'[Year], \"Revenue\", [Revenue])",
        language="dax",
    ),
)


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
async def test_each_registered_tool_is_gated_by_its_declared_effect(
    make_agent: AgentFactory, tool: Tool, source: DuckDBSource, store: Any, engines: Any, tmp_path: Path
) -> None:
    assert tool.name in SAMPLE_ARGS, f"add arguments {tool.name} runs with to SAMPLE_ARGS"
    model = ScriptedModel().queue(tool_call(tool.name, SAMPLE_ARGS[tool.name]), text("done"))
    every = source.model_copy(
        update={"languages": ("sql", "kql"), "verified_queries": VERIFIED + SAMPLE_VERIFIED}
    )
    semantic = ModelSource(
        kind="model",
        name="sales-model",
        location=str(SALES_MODEL),
        lakehouse=every.location,
        verified_queries=DAX_VERIFIED,
    )
    (tmp_path / "nodes.csv").write_text("~id,~label,code:string\n3,airport,AUS\n")
    (tmp_path / "edges.csv").write_text("~id,~from,~to,~label\n")
    graph = GraphSource(
        kind="graph", name="routes", location=str(tmp_path), verified_queries=GREMLIN_VERIFIED
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "airports.md").write_text("# Airports\n\nAUS is Austin's airport.\n")
    build_index(tmp_path / "docs", tmp_path / "index", BuildOptions(size=400, overlap=50))
    docs = IndexSource(kind="index", name="docs", location=str(tmp_path / "index"))
    sources: dict[str, Source] = {s.name: s for s in (every, semantic, graph, docs)}
    agent = Agent(model, TOOLS, store, engines, lambda: sources, OPEN)
    events = await collect(agent, "go")

    [result] = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]  # type: ignore[attr-defined]
    approvals = custom(events, APPROVAL_REQUIRED)
    outcome = events[-1].outcome.type  # type: ignore[attr-defined]
    if tool.effect is Effect.READ:  # it ran, and the model read its result
        assert "error" not in result, result
        if tool.name == "nl2dax":
            assert result["measures_used"] == ["Revenue"] and result["result"]["row_count"] == 2
        assert "status" not in result  # not held by the gate
        assert approvals == []
        assert outcome == "success"
    else:  # it waits for a person
        assert result["status"] == "awaiting_approval"
        assert [a["tool"] for a in approvals] == [tool.name]
        assert outcome == "interrupt"


async def test_a_question_the_source_cannot_answer_gets_the_tables_that_exist(
    make_agent: AgentFactory,
) -> None:
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "How many employees do we have?"}),
        text("CANNOT ANSWER: there is no employee table"),
        text("This data has no employees."),
    )
    await collect(make_agent(model), "How many employees do we have?")
    error = json.loads(model.calls[-1].messages[-1].content)["error"]
    assert error["code"] == "not_in_source"
    assert "no employee table" in error["message"]
    assert "gold.fact_sales" in error["message"]
    assert "gold.dim_customer" in error["message"]
    assert len(model.calls) == 3  # no repair attempts were spent on it


async def test_a_blank_first_message_still_opens_a_conversation(
    make_agent: AgentFactory, store: SqliteConversationStore
) -> None:
    events = await collect(make_agent(ScriptedModel().queue(text("Ask me about your data."))), "   \n ")
    conversation = await store.get_conversation(DEV_PRINCIPAL, events[0].thread_id)  # type: ignore[attr-defined]
    assert conversation is not None
    assert conversation.title == "(empty message)"


def test_a_stored_result_keeps_its_rows_to_half_a_mebibyte_and_says_so() -> None:
    # Probe 12 (R12-5): every turn stored its result up to the 8 MiB stream bound (15 MiB/s a user).
    from loom.agent.tool_calls import MAX_STORED_ROWS_BYTES, _stored

    rows = [["x" * 1000, i] for i in range(2000)]
    stored = _stored({"query": "q", "result": {"columns": [], "rows": rows, "row_count": 2000}})
    kept = stored["result"]["rows"]
    assert rows[: len(kept)] == kept and 400 < len(kept) < 600
    assert len(json.dumps(kept)) <= MAX_STORED_ROWS_BYTES
    assert stored["result"]["stored_rows"] == {"kept": len(kept), "of": 2000}
    small = {"result": {"rows": [[1]]}}
    assert _stored(small) == small


async def test_a_turns_results_share_one_room_and_free_it_when_the_turn_ends(
    make_agent: AgentFactory,
) -> None:
    # Probe 13 (R13-7): ten parallel calls of an 8 MiB query held ~165 MiB for the turn's life, and
    # nothing bounded a turn's results as a whole. Here four calls each ask for ~1 MB, one at a
    # time (the scheduler's place per user, as in service).
    from loom.tools.result_room import ResultRoom
    from loom.tools.scheduler import QueryScheduler

    big = "SELECT repeat('x', 1000) || i AS s FROM range(1000) AS t(i)"
    calls = [("nl2sql", {"question": f"rows {i}"}) for i in range(4)]
    model = ScriptedModel().queue(tool_calls(*calls), *[sql_block(big)] * 4, text("done"))
    room = ResultRoom(per_turn=400 * 1024, per_tenant=10 * 2**20, total=10 * 2**20)
    agent = make_agent(model)
    agent = dataclasses.replace(
        agent,
        results=room,
        scheduler=QueryScheduler(workers=4, per_tenant=4, per_user=1, wait_s=30),
        query_limits=dataclasses.replace(agent.query_limits, max_bytes=200 * 1024),
    )
    events = await collect(agent, "four big ones")
    bodies = [json.loads(e.content) for e in events if e.type == EventType.TOOL_CALL_RESULT]  # type: ignore[attr-defined]
    shown = [b for b in bodies if "result" in b]
    refused = [b for b in bodies if b.get("error", {}).get("code") == "result_budget"]
    assert len(shown) == 2 and len(refused) == 2  # two of 200 KiB fill the turn's 400 KiB
    assert all(b["result"]["truncated_by"] == "bytes" for b in shown)
    assert "the most one turn may hold" in refused[0]["error"]["message"]
    tables = custom(events, RESULT_TABLE)
    assert sum(len(json.dumps(t["rows"])) for t in tables) <= 400 * 1024 + 1024  # the turn's room
    assert room.held() == 0  # the turn has ended: its room is free


async def test_a_query_that_outlives_its_turn_leaves_no_room_held(make_agent: AgentFactory) -> None:
    # Probe 15 (R15-1): the client left while a query ran; the turn gave its room back at once, and
    # the worker thread counted the result afterwards, for good. Six such disconnects refused every
    # query of that tenant, 24 every tenant's.
    import threading
    import time

    from loom.tools.result_room import ResultRoom

    started, finished = threading.Event(), threading.Event()

    class Watched:
        def __init__(self, pool: Any) -> None:
            self.pool = pool

        def __getattr__(self, name: str) -> Any:
            return getattr(self.pool, name)

        def engine(self, source: Any, language: str) -> Any:
            engine = self.pool.engine(source, language)

            class Engine:
                def __getattr__(self, name: str) -> Any:
                    return getattr(engine, name)

                def execute(self, query: str, **limits: Any) -> Any:
                    if "repeat" not in query:  # the schema's value samples
                        return engine.execute(query, **limits)
                    started.set()
                    try:
                        result = engine.execute(query, **limits)
                        time.sleep(1.0)  # a query the client does not wait for (in service: 2 s)
                        return result
                    finally:
                        finished.set()

            return Engine()

    slow = "SELECT repeat('x', 1000) || i AS s FROM range(100) AS t(i)"
    model = ScriptedModel().queue(tool_call("nl2sql", {"question": "slow"}), sql_block(slow), text("done"))
    room = ResultRoom(per_turn=2**20, per_tenant=2**20, total=2**20)
    agent = make_agent(model)
    agent = dataclasses.replace(agent, results=room, engines=Watched(agent.engines))

    async def listen() -> None:  # as the SSE response does: the stream is closed when it stops
        events = agent.run_turn(DEV_PRINCIPAL, TurnRequest(message="slow"))
        try:
            async for _ in events:
                pass
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    client = asyncio.create_task(listen())
    assert await asyncio.to_thread(started.wait, 30)
    client.cancel()  # the client leaves while the query runs
    with contextlib.suppress(asyncio.CancelledError):
        await client
    assert not finished.is_set(), "the query ended before the client left: the test proves nothing"
    assert await asyncio.to_thread(finished.wait, 60)
    await asyncio.sleep(0.5)  # the worker settles just after execute returns
    assert room.held() == 0
    again = room.for_turn(DEV_PRINCIPAL.tenant_id)
    assert again.take(2**20) == 2**20  # the tenant's next turn has all its room
