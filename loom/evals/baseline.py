"""The plain baseline: the same model, the whole schema as CREATE TABLE statements and the question,
one shot, no linking, no examples, no repair — what the agent's pipeline must clearly beat."""

from __future__ import annotations

from loom.agent.model import ChatMessage, ChatModel, ModelError
from loom.engines.contracts import Catalog
from loom.evals.cassettes import CASE
from loom.evals.checks import Failure, GoldCheck
from loom.evals.suite import Case
from loom.tools.fenced import extract_query
from loom.tools.schema_prompt import create_tables as render_create

SYSTEM = (
    "You write one SQLite query that answers the question from the database below. "
    "Answer with the query in a ```sql block and nothing else."
)


def create_tables(catalog: Catalog) -> str:
    """The catalog as CREATE TABLE statements, with its declared foreign keys, no sample values."""
    return render_create(catalog, catalog.relationships, samples=False)


async def plain_case(case: Case, model: ChatModel, schema: str, gold: GoldCheck) -> list[Failure]:
    """What the plain prompt got wrong on a case with a gold query (empty: it matched)."""
    CASE.set(f"{case.id}#plain")
    question = case.all_turns[0].question + (f"\n\nHint: {case.evidence}" if case.evidence else "")
    messages = [
        ChatMessage(role="system", content=SYSTEM),
        ChatMessage(role="user", content=f"{schema}\n\nQuestion: {question}"),
    ]
    try:
        reply = await model.complete(messages)
    except ModelError as e:
        return [Failure("error", f"model_error: {e}")]
    query = extract_query(reply.text, "sql") or reply.text.strip()
    expected = case.all_turns[0].expect
    assert expected.gold is not None
    verdict = await gold(case.source, expected.gold, query, expected)
    if not verdict.scoreable:
        return [Failure("unscoreable", verdict.reason)]
    return [] if verdict.match else [Failure("gold", verdict.reason)]
