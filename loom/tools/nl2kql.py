"""`nl2kql`: a question about a source that answers KQL → one checked read-only KQL query → rows.

Azure Data Explorer in Azure; locally, a folder or the lakehouse whose source lists `kql` among its
`languages` (the embedded engine, `engines/kql`). The shared loop (`querygen`) does the rest:
verified KQL queries, few-shot examples, validation, limits and repair.
"""

from __future__ import annotations

from loom.engines.kql.tidy import is_kql, tidy_kql
from loom.tools.base import Effect, ToolContext, define
from loom.tools.kql_schema import known_kql_schema, kql_schema_for
from loom.tools.querygen import Prompts, QueryLanguage, QueryResult, QuestionArgs, answer

KQL = QueryLanguage(
    name="kql",
    fence="kql",
    prompts=Prompts.packaged("nl2kql"),
    schema_for=kql_schema_for,
    known_schema=known_kql_schema,
    tidy=tidy_kql,
    is_query=is_kql,
)

GUIDANCE = """
- `nl2kql`: call it first for any question about the data in a source that answers KQL (events,
  telemetry, logs). Pass the question in plain words, written out in full, and the source's name;
  it writes and runs the KQL itself and returns the rows.
"""


async def run(ctx: ToolContext, args: QuestionArgs) -> QueryResult:
    """Look up figures in a data source that answers KQL (Azure Data Explorer, or a local source
    set up for it). Pass the user's question in plain words; this tool writes and runs one
    read-only KQL query itself and returns the rows, the query and whether it was verified. Call it
    before stating any number."""
    return await answer(ctx, KQL, args)


TOOL = define(run, effect=Effect.READ, language="kql", guidance=GUIDANCE)
