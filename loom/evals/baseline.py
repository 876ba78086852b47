"""The plain baseline: the same model, the whole schema and the question, one shot, no linking, no
examples, no repair — what the agent's pipeline must clearly beat. In the gold query's language:
SQL with the schema as CREATE TABLE statements, KQL with it as `.create table` commands."""

from __future__ import annotations

from loom.agent.model import ChatMessage, ChatModel, ModelError
from loom.engines.contracts import Catalog
from loom.engines.kql.names import kql_catalog, shown_name
from loom.evals.cassettes import CASE
from loom.evals.checks import Failure, GoldCheck
from loom.evals.suite import Case
from loom.tools.fenced import extract_query
from loom.tools.schema_prompt import create_tables as render_create

SYSTEM = {
    "sql": "You write one SQLite query that answers the question from the database below. "
    "Answer with the query in a ```sql block and nothing else.",
    "kql": "You write one Kusto (KQL) query that answers the question from the tables below. "
    "Answer with the query in a ```kql block and nothing else.",
}


def create_tables(catalog: Catalog) -> str:
    """The catalog as CREATE TABLE statements, with its declared foreign keys, no sample values."""
    return render_create(catalog, catalog.relationships, samples=False)


def kusto_tables(catalog: Catalog) -> str:
    """The catalog as Kusto's `.create table T (Column:type, …)` commands."""
    tables = kql_catalog(catalog).tables
    listed = (", ".join(f"{shown_name(c.name)}:{c.type}" for c in t.columns) for t in tables)
    return "\n".join(
        f".create table {shown_name(t.name)} ({columns})" for t, columns in zip(tables, listed, strict=True)
    )


def plain_schema(catalog: Catalog, language: str) -> str:
    return kusto_tables(catalog) if language == "kql" else create_tables(catalog)


async def plain_case(case: Case, model: ChatModel, schema: str, gold: GoldCheck) -> list[Failure]:
    """What the plain prompt got wrong on a case with a gold query (empty: it matched)."""
    CASE.set(f"{case.id}#plain")
    language = case.all_turns[0].expect.gold_language
    question = case.all_turns[0].question + (f"\n\nHint: {case.evidence}" if case.evidence else "")
    messages = [
        ChatMessage(role="system", content=SYSTEM.get(language, SYSTEM["sql"])),
        ChatMessage(role="user", content=f"{schema}\n\nQuestion: {question}"),
    ]
    try:
        reply = await model.complete(messages)
    except ModelError as e:
        return [Failure("error", f"model_error: {e}")]
    query = extract_query(reply.text, language) or reply.text.strip()
    expected = case.all_turns[0].expect
    assert expected.gold is not None
    verdict = await gold(case.source, expected.gold, query, expected)
    if not verdict.scoreable:
        return [Failure("unscoreable", verdict.reason)]
    return [] if verdict.match else [Failure("gold", verdict.reason)]
