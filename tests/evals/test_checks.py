"""Checking a turn: each expectation can fail on its own, and unrun queries in an answer always do."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loom.evals.checks import check_turn, figures_without_source, numbers_in
from loom.evals.observe import TurnObserver, TurnRecord
from loom.evals.scoring import Verdict
from loom.evals.suite import Expect


def turn(answer: str, *calls: tuple[str, dict[str, Any], dict[str, Any]]) -> TurnRecord:
    """A turn record built the way the runner builds one: from the stream's events."""
    observer = TurnObserver("q")
    observer.add({"type": "RUN_STARTED", "threadId": "conv-1", "runId": "r"})
    for i, (name, args, result) in enumerate(calls):
        observer.add({"type": "TOOL_CALL_START", "toolCallId": f"c{i}", "toolCallName": name})
        observer.add({"type": "TOOL_CALL_ARGS", "toolCallId": f"c{i}", "delta": json.dumps(args)})
        observer.add({"type": "TOOL_CALL_RESULT", "toolCallId": f"c{i}", "content": json.dumps(result)})
    observer.add({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": answer})
    return observer.record


RAN = {"query": "SELECT COUNT(*) FROM gold.dim_customer", "result": {"rows": [[500]]}}
REFUSED = {"error": {"code": "not_read_only", "message": "only SELECT"}}


async def no_gold(*_: Any) -> Verdict:
    raise AssertionError("no gold query in this case")


async def failures(record: TurnRecord, **expect: Any) -> list[str]:
    return [f.check for f in await check_turn(record, Expect(**expect), None, no_gold)]


async def test_a_grounded_answer_with_the_expected_tool_passes() -> None:
    record = turn("There are 500 customers.", ("nl2sql", {"question": "How many customers?"}, RAN))
    assert await failures(record, tools=["nl2sql"], numbers=[500], contains=["customers"]) == []
    assert record.conversation_id == "conv-1" and record.queries == [RAN["query"]]


async def test_an_answer_showing_a_query_that_never_ran_fails_whatever_else_it_got_right() -> None:
    invented = "```sql\nSELECT category, SUM(revenue) FROM sales GROUP BY 1\n```\nElectronics led with 1,200."
    assert await failures(turn(invented), numbers=[1200]) == ["grounded", "figures"]
    shown_as_run = f"I ran:\n```sql\n{RAN['query']};\n```\nThere are 500."
    assert await failures(turn(shown_as_run, ("nl2sql", {}, RAN))) == []


@pytest.mark.parametrize(
    ("expect", "check"),
    [
        ({"tools": ["nl2sql"]}, "tools"),
        ({"tools": []}, None),
        ({"contains": ["revenue"]}, "contains"),
        ({"numbers": [42]}, "numbers"),
        ({"max_latency_s": 0.0001}, None),  # latency is set by the runner; here it is 0
    ],
)
async def test_each_expectation_fails_alone(expect: dict[str, Any], check: str | None) -> None:
    got = await failures(turn("Hello, I answer questions about sales."), **expect)
    assert got == ([check] if check else [])


async def test_tool_arguments_are_matched_as_a_subset() -> None:
    record = turn("ok", ("nl2sql", {"question": "q", "source": "sales"}, RAN))
    assert await failures(record, tool_args={"nl2sql": {"source": "sales"}}) == []
    assert await failures(record, tool_args={"nl2sql": {"source": "hr"}}) == ["tool_args"]


async def test_a_refusal_passes_only_when_no_query_ran_and_something_was_said() -> None:
    refused = turn("I can only read data, so I cannot delete orders.", ("nl2sql", {}, REFUSED))
    assert await failures(refused, refuse=True) == []
    assert await failures(turn("Done.", ("nl2sql", {}, RAN)), refuse=True) == ["refuse"]
    assert await failures(turn(""), refuse=True) == ["refuse"]


async def test_a_run_error_fails_the_turn() -> None:
    record = turn("")
    record.error = {"code": "model_error", "message": "the model endpoint failed"}
    assert await failures(record) == ["error"]


async def test_gold_is_compared_on_the_last_query_that_ran() -> None:
    seen: list[str] = []

    async def gold(source: str | None, gold_query: str, predicted: str, expect: Expect) -> Verdict:
        seen.append(predicted)
        return Verdict("match" if predicted == gold_query else "mismatch", "different rows")

    second = {"query": "SELECT 2", "result": {"rows": [[2]]}}
    record = turn("2", ("nl2sql", {}, REFUSED), ("nl2sql", {}, RAN), ("nl2sql", {}, second))
    found = await check_turn(record, Expect(gold="SELECT 2"), "sales", gold)
    assert found == [] and seen == ["SELECT 2"]
    found = await check_turn(
        turn("none ran", ("nl2sql", {}, REFUSED)), Expect(gold="SELECT 2"), "sales", gold
    )
    assert [f.check for f in found] == ["gold"] and "no query ran" in found[0].reason


def test_numbers_are_read_from_prose() -> None:
    assert numbers_in("Revenue was $1,234.50 in 2025, down −3 % (see table2).") == [1234.5, 2025.0, -3.0]


async def test_a_gold_query_that_cannot_run_marks_the_case_unscoreable_not_failed_by_the_agent() -> None:
    async def broken(*_: Any) -> Verdict:
        return Verdict("unscoreable", "the gold query failed: no such table")

    found = await check_turn(turn("500", ("nl2sql", {}, RAN)), Expect(gold="SELECT x"), "s", broken)
    assert [f.check for f in found] == ["unscoreable"]


@pytest.mark.parametrize(
    ("answer", "unfounded"),
    [
        ("Revenue was 5,223,253.34 over 3 categories.", []),
        ("Revenue was about 5.2 million, or 5,223,000 rounded.", []),
        ("1. Technology: 5223253.34\n2. Furniture: 1744822.4", []),  # list markers are not figures
        ("Margin was 12.5% (0.125).", []),
        ("Revenue was 5,3 and 522,325,3.34.", ["5,3"]),  # misplaced commas read as the digits
        ("Together they made 6,968,075.74.", ["6,968,075.74"]),  # a sum the model did itself
        ("As asked for 2025:\n```sql\nSELECT 99999\n```", []),  # a shown query is not a figure
    ],
)
def test_figures_must_round_from_a_tool_result_or_the_question(answer: str, unfounded: list[str]) -> None:
    result = {"query": "SELECT …", "result": {"rows": [["Technology", 5223253.34], ["Furniture", 1744822.4]],
              "row_count": 3, "margin": 0.125}}  # fmt: skip
    record = turn(answer, ("nl2sql", {"question": "revenue in 2025?"}, result))
    assert figures_without_source(record) == unfounded


async def test_an_answer_with_a_figure_no_result_shows_fails_the_figures_check() -> None:
    record = turn("There are 512 customers.", ("nl2sql", {"question": "How many customers?"}, RAN))
    assert await failures(record) == ["figures"]
