"""The shared query-generation loop as the model meets it: what it reads back, how it is asked to
repair, and that a query it repeats is not run again."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from loom.agent.model import ModelReply
from loom.agent.testing import ScriptedModel, sql_block, text, tool_call
from loom.agent.turns import TurnRequest
from loom.engines.contracts import QueryError
from loom.identity import DEV_PRINCIPAL
from loom.tools.querygen import MIN_QUERY_S, MODEL_COLUMNS, MODEL_RESULT_CHARS
from loom.tools.registry import TOOLS
from tests.agent.conftest import AgentFactory

BAD = "SELECT region FROM gold.dim_region"
GOOD = "SELECT COUNT(*) AS stores FROM gold.dim_store"


class CountingEngines:
    """The pool, counting what reaches an engine's `execute` (`run` says how each query runs)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.executed: list[str] = []

    def run(self, engine: Any, query: str, **limits: Any) -> Any:
        self.executed.append(query)
        return engine.execute(query, **limits)

    def retriever(self, source: Any) -> Any:
        return self.pool.retriever(source)

    def engine(self, source: Any, language: str) -> Any:
        engine = self.pool.engine(source, language)
        outer = self

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(engine, name)

            def execute(self, query: str, **limits: Any) -> Any:
                return outer.run(engine, query, **limits)

        return Counting()


async def turn(agent: Any, message: str) -> None:
    [_ async for _ in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=message))]


async def test_the_model_reads_the_rows_its_query_and_verified_false_not_the_plumbing(
    make_agent: AgentFactory,
) -> None:
    model = ScriptedModel().queue(tool_call("nl2sql", {"question": "stores?"}), sql_block(GOOD), text("ok"))
    await turn(make_agent(model), "stores?")
    seen = json.loads(model.calls[-1].messages[-1].content)
    assert seen["verified"] is False  # said, not left out: a model left to guess claims it
    assert seen["query"] == GOOD
    assert set(seen["result"]) == {"columns", "rows", "row_count", "truncated"}  # no executed SQL, timings
    assert "attempts" not in seen  # nothing failed


async def test_a_repair_is_asked_with_the_question_and_a_repeated_query_is_not_run_again(
    make_agent: AgentFactory, engines: Any
) -> None:
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "How many stores are there?"}),
        sql_block(BAD),
        sql_block(BAD),  # the same query again
        sql_block(GOOD),
        text("done"),
    )
    counting = CountingEngines(engines)
    agent = make_agent(model)
    agent.engines = counting
    await turn(agent, "How many stores are there?")

    first_repair, second_repair = model.calls[2].messages[-1].content, model.calls[3].messages[-1].content
    assert "Question: How many stores are there?" in first_repair
    assert "already failed: write a different one" in second_repair
    assert counting.executed.count(BAD) == 1  # the repeat was answered from the first failure
    seen = json.loads(model.calls[-1].messages[-1].content)
    assert [a["error"]["code"] for a in seen["attempts"]] == ["unknown_table", "unknown_table"]
    sql = counting.pool.engine(agent.sources()["sales"], "sql")
    assert seen["result"]["rows"] == sql.execute(GOOD, max_rows=1, timeout_s=5).rows


def test_the_source_argument_is_an_enum_without_a_null_default() -> None:
    [nl2sql] = [t for t in TOOLS if t.name == "nl2sql"]
    source = nl2sql.schema(["sales"])["function"]["parameters"]["properties"]["source"]  # type: ignore[index]
    assert source["enum"] == ["sales"]
    assert source["type"] == "string"
    assert "default" not in source
    assert "anyOf" not in source


class FailingEngines(CountingEngines):
    """Every query fails while running with `code`."""

    def __init__(self, pool: Any, code: str) -> None:
        super().__init__(pool)
        self.code = code

    def engine(self, source: Any, language: str) -> Any:
        inner = self.pool.engine(source, language)
        code = self.code
        outer = self

        class Failing:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def execute(self, query: str, **limits: Any) -> Any:
                outer.executed.append(query)
                raise QueryError(code, f"{code} happened")

        return Failing()


async def test_a_timeout_or_an_engine_failure_is_not_sent_back_for_repair(
    make_agent: AgentFactory, engines: Any
) -> None:
    for code in ("timeout", "engine_failed"):
        model = ScriptedModel().queue(tool_call("nl2sql", {"question": "q"}), sql_block(GOOD), text("sorry"))
        agent = make_agent(model)
        agent.engines = failing = FailingEngines(engines, code)
        await turn(agent, "q")
        assert failing.executed == [GOOD]  # ran once, not three times
        assert len(model.calls) == 3  # the turn, one generation, the answer: no repair call
        assert json.loads(model.calls[-1].messages[-1].content)["error"]["code"] == code


async def test_a_huge_result_reaches_the_model_and_the_user_bounded(make_agent: AgentFactory) -> None:
    huge = "SELECT repeat('x', 5000000) AS s FROM range(40)"  # 200 MB if nothing held it back
    model = ScriptedModel().queue(tool_call("nl2sql", {"question": "q"}), sql_block(huge), text("ok"))
    events = [e async for e in make_agent(model).run_turn(DEV_PRINCIPAL, TurnRequest(message="q"))]
    seen = model.calls[-1].messages[-1].content
    assert len(seen) < 30_000  # the model reads a small view: short values, a few rows
    assert "[cut: 5,000,000 characters in all]" in seen  # it knows the values were longer
    [table] = [getattr(e, "value", {}) for e in events if getattr(e, "name", "") == "loom.result_table"]
    assert len(json.dumps(table)) < 9 * 1024 * 1024  # the user's table: within the default budget


EMPTY = "SELECT store_key FROM gold.dim_store WHERE region = 'Nowhere'"
ALSO_EMPTY = "SELECT store_key FROM gold.dim_store WHERE region = 'Elsewhere'"


async def empty_then(make_agent: AgentFactory, engines: Any, *replies: ModelReply, **limits: Any) -> Any:
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "Stores in both regions?"}), sql_block(EMPTY), *replies, text("ok")
    )
    agent = make_agent(model)
    if limits:
        agent.query_limits = replace(agent.query_limits, **limits)
    agent.engines = counting = CountingEngines(engines)
    await turn(agent, "Stores in both regions?")
    return model, counting, json.loads(model.calls[-1].messages[-1].content)


async def test_an_empty_result_is_asked_about_once_and_a_query_with_rows_replaces_it(
    make_agent: AgentFactory, engines: Any
) -> None:
    model, counting, seen = await empty_then(make_agent, engines, sql_block(GOOD))
    assert "returned no rows" in model.calls[2].messages[-1].content  # the repair prompt says why
    assert counting.executed == [EMPTY, GOOD]
    assert seen["query"] == GOOD and [a["error"]["code"] for a in seen["attempts"]] == ["empty_result"]


async def test_an_empty_result_stands_when_the_model_keeps_it_or_finds_nothing_either(
    make_agent: AgentFactory, engines: Any
) -> None:
    for again in (EMPTY, ALSO_EMPTY):
        _, counting, seen = await empty_then(make_agent, engines, sql_block(again))
        assert counting.executed == [EMPTY] if again == EMPTY else [EMPTY, ALSO_EMPTY]
        assert seen["query"] == EMPTY and seen["result"]["row_count"] == 0


async def test_without_the_empty_repair_or_a_repair_left_an_empty_result_is_the_answer(
    make_agent: AgentFactory, engines: Any
) -> None:
    for limits in ({"repair_empty": False}, {"max_repairs": 0}):
        model, counting, seen = await empty_then(make_agent, engines, **limits)
        assert counting.executed == [EMPTY] and len(model.calls) == 3
        assert seen["query"] == EMPTY and "attempts" not in seen


async def test_a_reply_that_is_only_a_bare_query_is_taken_and_prose_is_not(make_agent: AgentFactory) -> None:
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "How many stores are there?"}),
        text("Here is how I would count the stores."),  # prose: no query, a repair is asked
        text(f"{GOOD};\n"),  # the bare query, as small models sometimes write it
        text("done"),
    )
    await turn(make_agent(model), "How many stores are there?")
    assert "fenced ```sql block" in model.calls[2].messages[-1].content
    seen = json.loads(model.calls[-1].messages[-1].content)
    assert seen["query"] == f"{GOOD};" and seen["result"]["rows"][0][0] > 0
    assert [a["error"]["code"] for a in seen["attempts"]] == ["no_query"]


async def test_a_key_read_as_a_value_is_named_in_the_repair_with_the_table_it_joins(
    make_agent: AgentFactory,
) -> None:
    # What the local 1.5B model wrote three times in the smoke suite: YEAR() of an integer key.
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "How many orders in 2024?"}),
        sql_block("SELECT COUNT(DISTINCT order_id) FROM gold.fact_sales WHERE YEAR(date_key) = 2024"),
        sql_block(
            "SELECT COUNT(DISTINCT f.order_id) FROM gold.fact_sales AS f "
            "JOIN gold.dim_date AS d ON d.date_key = f.date_key WHERE d.year = 2024"
        ),
        text("done"),
    )
    await turn(make_agent(model), "How many orders in 2024?")
    repair = model.calls[2].messages[-1].content
    assert "year(INTEGER)" in repair  # the engine's own error comes first
    assert "gold.fact_sales.date_key is a key, not a value: it joins gold.dim_date.date_key" in repair
    assert "JOIN gold.dim_date AS d ON d.date_key = f.date_key" in repair and "d.year integer" in repair
    seen = json.loads(model.calls[-1].messages[-1].content)
    assert seen["result"]["row_count"] == 1


async def test_the_model_reads_a_wide_result_within_its_budget_and_is_told_how_many_rows_it_saw(
    make_agent: AgentFactory,
) -> None:
    # Probe 8: one 3,000-column row was 1.7 MB of model input. A wide result shares the budget out.
    columns = ", ".join(f"repeat('x', 400) AS c{i}" for i in range(100))
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "everything"}),
        sql_block(f"SELECT {columns} FROM range(40)"),
        text("ok"),
    )
    await turn(make_agent(model), "everything")
    seen = json.loads(model.calls[-1].messages[-1].content)
    assert len(json.dumps(seen["result"]["rows"])) < MODEL_RESULT_CHARS * 1.1
    assert seen["result"]["row_count"] == 40 and 1 <= seen["result"]["rows_shown"] < 40
    assert len(seen["result"]["rows"]) == seen["result"]["rows_shown"]


class SlowFailures(CountingEngines):
    """Every query works a while, then fails: the kind of failure a repair cannot make cheaper."""

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self.limits: list[float] = []  # the time limit each query was given

    def run(self, engine: Any, query: str, **limits: Any) -> Any:
        if not query.endswith(" AS a"):  # the value index, read through the engine too
            return engine.execute(query, **limits)
        self.executed.append(query)
        self.limits.append(limits["timeout_s"])
        time.sleep(0.7)
        raise QueryError("execution_error", "Out of Range Error: boom after work")


async def test_repairs_stop_once_the_questions_queries_have_used_the_time_limit(
    make_agent: AgentFactory, engines: Any
) -> None:
    # Probe 8: three slightly different queries that each failed after long work held a worker
    # for 59 s under a 30 s limit.
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "n?"}),
        sql_block("SELECT 1 AS a"),
        sql_block("SELECT 2 AS a"),
        sql_block("SELECT 3 AS a"),
        text("It failed."),  # the answer: no fourth query was asked for
    )
    agent = make_agent(model)
    agent.query_limits = replace(agent.query_limits, timeout_s=2.0, max_repairs=5)
    agent.engines = slow = SlowFailures(engines)
    await turn(agent, "n?")
    assert slow.executed == ["SELECT 1 AS a", "SELECT 2 AS a", "SELECT 3 AS a"]
    assert len(model.calls) == 5  # the turn, three queries, the answer: max_repairs allowed six
    first, second, third = slow.limits  # R9-4: each had what the ones before left of the limit
    assert first == 2.0 and 1.0 < second < 1.4 and third == MIN_QUERY_S
    error = json.loads(model.calls[-1].messages[-1].content)["error"]
    assert error["code"] == "query_failed" and "used up the query time limit" in error["message"]


async def test_the_model_reads_at_most_its_columns_with_short_names(make_agent: AgentFactory) -> None:
    long = "n" * 100
    columns = ", ".join(f'{i} AS "{long}{i}"' for i in range(MODEL_COLUMNS + 20))
    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "wide"}), sql_block(f"SELECT {columns}"), text("ok")
    )
    await turn(make_agent(model), "wide")
    seen = json.loads(model.calls[-1].messages[-1].content)["result"]
    assert len(seen["columns"]) == MODEL_COLUMNS == seen["columns_shown"]
    assert all(len(c["name"]) < 100 for c in seen["columns"])  # R9-1: a name is cut for the model
    assert len(seen["rows"][0]) == MODEL_COLUMNS


async def test_a_column_of_the_table_a_key_points_to_is_mended_without_asking_the_model(
    make_agent: AgentFactory,
) -> None:
    # What the 1.5B model wrote on BIRD, three times over: the dimension's column on the fact table.
    by_hand = (
        "SELECT COUNT(DISTINCT f.order_id) FROM gold.fact_sales AS f "
        "JOIN gold.dim_date AS d ON d.date_key = f.date_key WHERE d.year = 2024"
    )
    truth = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "Orders in 2024?"}), sql_block(by_hand), text("ok")
    )
    await turn(make_agent(truth), "How many orders in 2024?")
    expected = json.loads(truth.calls[-1].messages[-1].content)["result"]["rows"]

    model = ScriptedModel().queue(
        tool_call("nl2sql", {"question": "How many orders in 2024?"}),
        sql_block("SELECT COUNT(DISTINCT order_id) FROM gold.fact_sales WHERE year = 2024"),
        text("done"),  # no repair is asked: this is the answer's turn
    )
    await turn(make_agent(model), "How many orders in 2024?")
    seen = json.loads(model.calls[-1].messages[-1].content)
    assert len(model.calls) == 3
    assert (
        "(SELECT dim_date.year FROM gold.dim_date WHERE dim_date.date_key = fact_sales.date_key) = 2024"
        in seen["query"]
    )
    assert seen["result"]["rows"] == expected and expected[0][0] > 0
    [attempt] = seen["attempts"]
    assert attempt["error"]["code"] == "unknown_column"
    assert attempt["mended"].startswith(
        "year is gold.dim_date.year, looked up by key (gold.fact_sales.date_key"
    )


async def test_a_call_without_its_question_asks_the_users_own_message(make_agent: AgentFactory) -> None:
    # The local 1.5B model called nl2sql with only `source`, read "question: Field required" and
    # answered that it needed a source; the user's message is the question it meant.
    model = ScriptedModel().queue(tool_call("nl2sql", {"source": "sales"}), sql_block(GOOD), text("ok"))
    await turn(make_agent(model), "How many stores are there?")
    seen = json.loads(model.calls[-1].messages[-1].content)
    assert seen["query"] == GOOD and seen["result"]["rows"] == [[seen["result"]["rows"][0][0]]]
    assert "How many stores are there?" in model.calls[1].messages[-1].content  # asked of the SQL writer
    (declared,) = [json.dumps(t.declaration([])) for t in TOOLS if t.name == "nl2sql"]
    assert json.loads(declared)["function"]["parameters"]["required"] == ["question"]  # still asked for
