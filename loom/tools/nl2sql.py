"""`nl2sql`: a question about a SQL source → one validated read-only query → rows.

A verified query that matches the question closely enough is run as it is and labelled verified;
otherwise the model writes the query in the source's dialect, with the schema linked to the
question (`sql_schema`), and the shared loop (`querygen`) validates, runs and repairs it.
"""

from __future__ import annotations

from loom.tools.base import Effect, ToolContext, define
from loom.tools.querygen import Prompts, QueryLanguage, QueryResult, QuestionArgs, answer
from loom.tools.sql_schema import known_whole_schema, schema_for

SQL = QueryLanguage(
    name="sql",
    fence="sql",
    prompts=Prompts.packaged("nl2sql"),
    schema_for=schema_for,
    known_schema=known_whole_schema,
)

GUIDANCE = """
- For a question about data in a SQL source, call `nl2sql` with the question written out in full
  (resolve "it", "that", "same for 2024" from the conversation) and the source name.
"""


async def run(ctx: ToolContext, args: QuestionArgs) -> QueryResult:
    """Answer a question about data in a SQL source: writes one read-only SQL query, runs it and
    returns the rows, the query as executed and whether it came from a verified query."""
    return await answer(ctx, SQL, args)


TOOL = define(run, effect=Effect.READ, language="sql", guidance=GUIDANCE)
