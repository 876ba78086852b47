"""`graph_search`: a relationship question about a graph → one checked read-only Gremlin
traversal → results.

A local graph (a GraphSON file, or a folder of nodes and edges CSV files) runs on the embedded
engine (`engines/graph`). The shared loop (`querygen`) does the rest: verified Gremlin, few-shot
examples, validation, limits and repair. Each result is one row of a column `value`.
"""

from __future__ import annotations

from loom.engines.graph.gremlin import GremlinSyntaxError, parse
from loom.tools.base import Effect, ToolContext, define
from loom.tools.graph_schema import graph_schema_for, known_graph_schema
from loom.tools.querygen import Prompts, QueryLanguage, QueryResult, QuestionArgs, answer

MOST_QUERY_CHARS = 4_000  # longer text is taken for a question, not parsed


def tidy_gremlin(query: str) -> str:
    """The traversal as the model wrote it, less a trailing semicolon."""
    return query.strip().rstrip(";").strip()


def is_gremlin(text: str) -> bool:
    """Whether `text` is a traversal (`g.V()…`) rather than a question."""
    text = tidy_gremlin(text)
    if not text.startswith("g.") or len(text) > MOST_QUERY_CHARS:
        return False
    try:
        parse(text)
    except GremlinSyntaxError:
        return False
    return True


GREMLIN = QueryLanguage(
    name="gremlin",
    fence="gremlin",
    prompts=Prompts.packaged("graph_search"),
    schema_for=graph_schema_for,
    known_schema=known_graph_schema,
    tidy=tidy_gremlin,
    is_query=is_gremlin,
    empty_hint="check each edge's direction (out('e') walks from the label on the edge's left to the "
    "one on its right, in('e') back: 'what feeds X' walks in('feeds') from X); compare text with "
    "values as the graph spells them (see the sample values); check that each has() names the "
    "right label and key.",
)

GUIDANCE = """
- `graph_search`: call it first for any question about relationships in a graph source (routes,
  hops, who is connected to whom, what feeds what). Pass the question in plain words, written out
  in full, and the source's name; it writes and runs the Gremlin itself and returns the results.
"""


async def run(ctx: ToolContext, args: QuestionArgs) -> QueryResult:
    """Look up relationships in a graph source. Pass the user's question in plain words; this tool
    writes and runs one read-only Gremlin traversal itself and returns the results, the traversal
    and whether it was verified. Call it before stating any number."""
    return await answer(ctx, GREMLIN, args)


TOOL = define(run, effect=Effect.READ, language="gremlin", guidance=GUIDANCE)
