"""A suite run end to end: recorded from a model over real HTTP, replayed with no model at all.

The model is the OpenAI-compatible test server (tests/support/openai_server.py): it calls the first
tool offered with the question, writes `default_sql` when asked for SQL, and answers from the tool
result. The agent, engines and store are the real ones over a small seeded lakehouse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from loom.evals.harness import EvalError, RunSpec, run_suite
from loom.evals.runner import RunOptions
from loom.evals.suite import load_suite
from loom.lakehouse.seed import seed_lakehouse
from loom.settings import Settings
from tests.support.openai_server import OpenAICompatServer

COUNT = "SELECT COUNT(*) AS customers FROM gold.dim_customer"
CASES: list[dict[str, Any]] = [
    {
        "id": "customers",
        "question": "How many customers are there?",
        "tags": ["nl2sql"],
        "expect": {
            "tools": ["nl2sql"],
            "contains": ["found"],
            "gold": "SELECT COUNT(*) FROM gold.dim_customer",
        },
    },
    {
        "id": "follow-up",
        "tags": ["multi-turn"],
        "turns": [
            {"question": "Count the customers", "expect": {"tools": ["nl2sql"]}},
            {"question": "Again please", "expect": {"tools": ["nl2sql"]}},
        ],
    },
    {
        "id": "wrong-gold",
        "question": "How many stores?",
        "expect": {"gold": "SELECT COUNT(*) FROM gold.dim_store"},
    },
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evalhome")
    seed_lakehouse(root / "lakehouse", orders=300)
    return root


def suite_file(folder: Path, cases: list[dict[str, Any]] = CASES) -> Path:
    path = folder / "mini.yaml"
    path.write_text(yaml.safe_dump({"name": "mini", "cases": cases}))
    return path


def spec(path: Path, out: Path, **fields: Any) -> RunSpec:
    return RunSpec(
        suite=load_suite(path), suite_path=path, out=out, options=RunOptions(concurrency=2), **fields
    )


def settings(home: Path, model_url: str | None = None) -> Settings:
    model: dict[str, Any] = (
        {"openai_base_url": model_url, "openai_api_key": "k", "model": "m"} if model_url else {}
    )
    return Settings(home=home, sources_file=home / "none.yaml", **model)


async def test_recorded_once_then_replayed_offline_with_the_same_scores(home: Path, tmp_path: Path) -> None:
    path = suite_file(tmp_path)
    with OpenAICompatServer(default_sql=COUNT) as model:
        recorded = await run_suite(
            spec(path, tmp_path / "rec", mode="record"), settings(home, model.base_url)
        )
        calls = len(model.requests)
    assert recorded["cases"] == 3 and recorded["passed"] == 2
    assert recorded["execution_accuracy"] == 0.5  # the store count is not the customer count
    cassette = tmp_path / "cassettes" / "mini.jsonl"
    assert cassette.exists() and "Authorization" not in cassette.read_text()

    replayed = await run_suite(spec(path, tmp_path / "rep"), settings(home))  # no model configured at all
    assert json.loads((tmp_path / "rep" / "config.json").read_text())["mode"] == "replay"
    for figure in ("cases", "passed", "execution_accuracy", "answered_from_a_query", "failed_checks"):
        assert replayed[figure] == recorded[figure], figure
    assert calls == 1 + 3 * 4  # the model check, then three calls for each of the four turns
    cases = [json.loads(line) for line in (tmp_path / "rep" / "cases.jsonl").read_text().splitlines()]
    wrong = next(c for c in cases if c["id"] == "wrong-gold")
    assert wrong["status"] == "failed" and wrong["failures"][0]["check"] == "gold"
    assert (tmp_path / "rep" / "report.html").read_text().startswith("<!doctype html>")


async def test_a_question_never_recorded_is_a_replay_miss_naming_the_case(home: Path, tmp_path: Path) -> None:
    path = suite_file(tmp_path)
    with OpenAICompatServer(default_sql=COUNT) as model:
        await run_suite(spec(path, tmp_path / "rec", mode="record"), settings(home, model.base_url))
    changed: list[dict[str, Any]] = [{**CASES[0], "question": "How many customers do we have?"}]
    summary = await run_suite(spec(suite_file(tmp_path, changed), tmp_path / "rep"), settings(home))
    case = json.loads((tmp_path / "rep" / "cases.jsonl").read_text().splitlines()[0])
    assert summary["statuses"] == {"replay_miss": 1}
    assert (
        case["failures"][0]["check"] == "replay"
        and "no recorded model answer" in case["failures"][0]["reason"]
    )


async def test_a_live_run_needs_a_model_that_answers_before_any_case_runs(home: Path, tmp_path: Path) -> None:
    path = suite_file(tmp_path)
    with pytest.raises(EvalError, match="no model is configured"):
        await run_suite(spec(path, tmp_path / "a", mode="live"), settings(home))
    with pytest.raises(EvalError, match="does not answer"):
        await run_suite(spec(path, tmp_path / "b", mode="live"), settings(home, "http://127.0.0.1:9/v1"))
    assert not (tmp_path / "b" / "cases.jsonl").exists()


async def test_a_server_that_does_not_answer_is_one_clear_error_before_any_case(
    home: Path, tmp_path: Path
) -> None:
    # Probe 13 (R13-8): --url with nothing listening ended in a 391-line ConnectError traceback.
    path = suite_file(tmp_path)
    with OpenAICompatServer(default_sql=COUNT) as model:
        with pytest.raises(EvalError, match=r"the server at http://127.0.0.1:9 cannot be reached"):
            await run_suite(
                spec(path, tmp_path / "u", url="http://127.0.0.1:9"), settings(home, model.base_url)
            )
    assert not (tmp_path / "u" / "cases.jsonl").exists()


async def test_a_server_lost_mid_run_fails_the_case_and_a_proxy_page_is_read() -> None:
    import httpx

    from loom.evals.drivers import OverHttp

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-lost"):
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(502, text="<html>Bad gateway</html>")

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://loom.test")
    proxied = [e async for e in OverHttp(client).turn(None, "q", None)]
    assert proxied == [{"type": "RUN_ERROR", "code": "http_502", "message": "<html>Bad gateway</html>"}]
    client.headers["x-lost"] = "1"
    lost = [e async for e in OverHttp(client).turn(None, "q", None)]
    assert lost[0]["code"] == "unreachable" and "connection refused" in lost[0]["message"]
    await client.aclose()


async def test_a_case_naming_an_unknown_source_or_tool_is_refused_before_running(
    home: Path, tmp_path: Path
) -> None:
    bad: list[dict[str, Any]] = [
        {"id": "x", "question": "q", "source": "nowhere", "expect": {"tools": ["nl2kql_typo"]}}
    ]
    with pytest.raises(
        EvalError, match=r"case x: unknown source 'nowhere'.*case x: unknown tool 'nl2kql_typo'"
    ):
        await run_suite(
            spec(suite_file(tmp_path, bad), tmp_path / "o"), settings(home, "http://127.0.0.1:9/v1")
        )


async def test_the_direct_path_asks_the_data_tool_without_the_chat_model(home: Path, tmp_path: Path) -> None:
    path = suite_file(tmp_path, CASES[:1])
    with OpenAICompatServer(default_sql=COUNT) as model:
        summary = await run_suite(
            spec(path, tmp_path / "d", mode="live", direct=True), settings(home, model.base_url)
        )
        asked = model.requests[1:]  # after the model check
    assert summary["execution_accuracy"] == 1.0 and summary["failed_checks"] == {
        "contains": 1
    }  # no answer text
    assert len(asked) == 1 and "tools" not in asked[0]  # only the tool's own SQL-writing call


async def test_a_case_that_passed_only_after_a_repair_is_counted_as_such(home: Path, tmp_path: Path) -> None:
    path = suite_file(tmp_path, CASES[:1])
    with OpenAICompatServer(default_sql=COUNT) as model:
        model.queue_text("ok")  # the model check
        model.queue_text("```sql\nSELECT COUNT(*) FROM gold.dim_clients\n```")  # then the repair: COUNT
        summary = await run_suite(
            spec(path, tmp_path / "r", mode="live", direct=True), settings(home, model.base_url)
        )
    assert summary["execution_accuracy"] == 1.0
    assert summary["repairs"] == {
        "gold_cases_repaired": 1,
        "passed_after_repair": 1,
        "passed_after_repair_by_code": {"unknown_table": 1},
        "passed_after_a_mend_alone": 0,
    }
    [case] = [json.loads(line) for line in (tmp_path / "r" / "cases.jsonl").read_text().splitlines()]
    assert case["turns"][0]["calls"][0]["repairs"] == ["unknown_table"]
    assert case["turns"][0]["calls"][0]["mends"] == 0


async def test_a_case_mended_without_the_model_is_counted_apart(home: Path, tmp_path: Path) -> None:
    # The mend's share of the repairs, for the reports that ask what each part adds.
    gold = (
        "SELECT COUNT(*) FROM gold.fact_sales AS f JOIN gold.dim_date AS d ON d.date_key = f.date_key "
        "WHERE d.year = 2024"
    )
    case = {"id": "orders-2024", "question": "Sales lines in 2024?", "expect": {"gold": gold}}
    path = suite_file(tmp_path, [case])
    with OpenAICompatServer(default_sql="SELECT COUNT(*) FROM gold.fact_sales WHERE year = 2024") as model:
        model.queue_text("ok")  # the model check; then the one query, mended, and no repair asked
        summary = await run_suite(
            spec(path, tmp_path / "r", mode="live", direct=True), settings(home, model.base_url)
        )
    assert summary["execution_accuracy"] == 1.0
    assert summary["repairs"]["passed_after_a_mend_alone"] == 1
    [row] = [json.loads(line) for line in (tmp_path / "r" / "cases.jsonl").read_text().splitlines()]
    assert row["turns"][0]["calls"][0]["repairs"] == ["unknown_column"]
    assert row["turns"][0]["calls"][0]["mends"] == 1


WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
}
FUNCTION_CASES: list[dict[str, Any]] = [
    {
        "id": "parallel",
        "question": "Weather in Paris and in Oslo?",
        "functions": [WEATHER],
        "expect": {"calls": [{"get_weather": {"city": ["Oslo"]}}, {"get_weather": {"city": ["Paris"]}}]},
    },
    {
        "id": "as-text",
        "question": "Weather in Rome, in fahrenheit?",
        "system": "You are terse.",
        "functions": [WEATHER],
        "expect": {"calls": [{"get_weather": {"city": ["Rome"], "unit": ["fahrenheit", "F"]}}]},
    },
    {
        "id": "irrelevant",
        "question": "Tell me a joke.",
        "functions": [WEATHER],
        "expect": {"calls": []},
    },
    {
        "id": "wrong-value",
        "question": "Weather in Lyon?",
        "functions": [WEATHER],
        "expect": {"calls": [{"get_weather": {"city": ["Lyon"], "unit": ["", "celsius"]}}]},
    },
]


async def test_function_calling_cases_offer_their_own_functions_and_score_the_calls(
    home: Path, tmp_path: Path
) -> None:
    path = suite_file(tmp_path, FUNCTION_CASES)
    with OpenAICompatServer() as model:
        model.queue_text("ready")
        model.queue_tool_calls(
            ("get_weather", {"city": "paris"}, None), ("get_weather", {"city": "Oslo"}, None)
        )
        model.queue_text(
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome", "unit": "F"}}</tool_call>'
        )
        model.queue_text("Why did the chicken cross the road?")
        model.queue_tool_call("get_weather", {"city": "Lyon", "unit": "kelvin"})
        run = RunSpec(suite=load_suite(path), suite_path=path, out=tmp_path / "f", mode="live")
        summary = await run_suite(run, settings(home, model.base_url))
        asked = model.requests[1:]
    cases = {c["id"]: c for c in map(json.loads, (tmp_path / "f" / "cases.jsonl").read_text().splitlines())}
    assert {k: c["status"] for k, c in cases.items()} == {
        "parallel": "passed",  # in any order, text compared without case
        "as-text": "passed",  # a call written as text is read as the agent reads it
        "irrelevant": "passed",
        "wrong-value": "failed",
    }
    assert "unit='kelvin'" in cases["wrong-value"]["failures"][0]["reason"]
    assert summary["passed"] == 3
    assert [t["function"]["name"] for t in asked[0]["tools"]] == ["get_weather"]  # not Loom's tools
    assert asked[1]["messages"][0] == {"role": "system", "content": "You are terse."}


async def test_the_plain_baseline_of_a_kql_case_writes_kql_from_kusto_tables(
    home: Path, tmp_path: Path
) -> None:
    # NL2KQL's cases are scored against the plain prompt too: in KQL, not SQL.
    case = {
        "id": "kql-customers",
        "source": "sales",
        "question": "How many customers are there?",
        "expect": {"tools": ["nl2kql"], "gold_language": "kql", "gold": "dim_customer | count"},
    }
    path = suite_file(tmp_path, [case])
    with OpenAICompatServer(default_sql=COUNT) as model:
        for _ in range(8):
            model.queue_text("```kql\ndim_customer | summarize count()\n```")
        summary = await run_suite(
            spec(path, tmp_path / "k", mode="live", direct=True, baseline=True),
            settings(home, model.base_url),
        )
        plain = [r for r in model.requests if "Kusto" in json.dumps(r)]
    assert summary["baseline"]["passed"] == 1 and summary["baseline"]["cases"] == 1, summary["baseline"]
    prompt = json.dumps(plain[0])
    assert ".create table dim_customer (" in prompt and "CREATE TABLE" not in prompt
