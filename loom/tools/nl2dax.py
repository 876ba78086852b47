"""`nl2dax`: a question about a Power BI semantic model → one checked DAX query → rows.

Power BI's executeQueries in Azure; locally, a model folder (the embedded engine, `engines/dax`).
The shared loop (`querygen`) does the rest: verified DAX queries, examples, validation, limits and
repair. The result names the model's measures the answer used, so the user can see which business
definitions it stands on.
"""

from __future__ import annotations

import asyncio

from loom.engines.contracts import QueryError
from loom.engines.dax.parser import is_query, parse_query
from loom.engines.dax.references import bracket_names
from loom.engines.dax.tidy import tidy_dax
from loom.tools.base import Effect, ToolContext, define
from loom.tools.dax_schema import dax_schema_for
from loom.tools.querygen import Prompts, QueryLanguage, QueryResult, QuestionArgs, answer

DAX = QueryLanguage(
    name="dax",
    fence="dax",
    prompts=Prompts.packaged("nl2dax"),
    schema_for=dax_schema_for,
    tidy=tidy_dax,
    is_query=is_query,  # a small model passes a whole query as the question
)

GUIDANCE = """
- `nl2dax`: call it first for any question about figures a Power BI semantic model holds (its
  measures: revenue, counts, rates). Pass the question in plain words and the model's source name;
  it writes and runs the DAX itself, using the model's own measures, and returns the rows.
"""


async def run(ctx: ToolContext, args: QuestionArgs) -> QueryResult:
    """Look up figures in a Power BI semantic model (or a local model folder). Pass the user's
    question in plain words; this tool writes and runs one DAX query itself, using the model's own
    measures, and returns the rows, the query and the measures it used. Call it before stating any
    number."""
    result = await answer(ctx, DAX, args)
    engine = ctx.engines.engine(ctx.source(result.source, DAX.name), DAX.name)
    catalog = await asyncio.to_thread(engine.catalog)  # loaded already: answering read it
    known = [m.name for m in catalog.measures]
    return result.model_copy(update={"measures": used_measures(result.query, known)})


def used_measures(query: str, known: list[str]) -> list[str]:
    """The model's measures the query names, in the order written."""
    try:
        tree = parse_query(query)
    except QueryError:
        return []
    names = {m.lower(): m for m in known}
    found = [names[b.lower()] for e in tree.evaluates for b in bracket_names(e.table) if b.lower() in names]
    found += [names[b.lower()] for d in tree.defines for b in bracket_names(d.expr) if b.lower() in names]
    return list(dict.fromkeys(found))


TOOL = define(run, effect=Effect.READ, language="dax", guidance=GUIDANCE)
