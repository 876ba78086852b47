"""`nl2sql`: a question about a SQL source → one validated read-only query → rows.

A verified query that matches the question closely enough is run as it is and labelled verified;
otherwise the model writes the query (in the source's dialect), the engine validates it by parsing
and runs it with limits, and an error goes back to the model for at most `max_repairs` repairs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import BaseModel, Field

from loom.engines.contracts import Catalog, Engine, Problem, QueryError, ResultSet
from loom.engines.sources import Source, VerifiedQuery
from loom.prompts import render
from loom.tools.base import Effect, ToolContext, ToolError, ToolResult, define
from loom.tools.fenced import extract_query
from loom.tools.sql_schema import known_whole_schema, schema_for
from loom.tools.verified import VerifiedIndex

CANNOT = "CANNOT ANSWER"
MODEL_ROWS = 50  # rows the model reads; the user sees the whole (capped) table
EXAMPLES = 3


class Nl2SqlArgs(BaseModel):
    question: str = Field(description="The question, written out in full so it stands on its own.")
    source: str | None = Field(None, description="Name of the data source; default: the first one.")


class Attempt(BaseModel):
    query: str
    error: Problem


class Nl2SqlResult(ToolResult):
    """`query` is the final query as written in the source's dialect; `result.query` is what the
    engine ran (translated, with the row cap added)."""

    source: str
    dialect: str
    query: str
    result: ResultSet
    attempts: list[Attempt] = Field(default_factory=list)
    verified: bool = False
    verified_question: str | None = None

    def for_model(self) -> str:
        shown = self.result.model_copy(update={"rows": self.result.rows[:MODEL_ROWS]})
        return self.model_copy(update={"result": shown}).model_dump_json(exclude_defaults=True)

    def table(self) -> ResultSet:
        return self.result

    def shown_query(self) -> str:
        return self.query


async def run(ctx: ToolContext, args: Nl2SqlArgs) -> Nl2SqlResult:
    """Answer a question about data in a SQL source: writes one read-only SQL query, runs it and
    returns the rows, the query as executed and whether it came from a verified query."""
    source = ctx.source(args.source)
    engine = ctx.engines.sql_engine(source)
    index = VerifiedIndex.of(tuple(v for v in source.verified_queries if v.language == "sql"))
    ranked = index.rank(args.question)
    if ranked and ranked[0].score >= ctx.limits.verified_threshold:
        return await _run_verified(ctx, engine, source, ranked[0].verified)
    if ctx.model is None:
        raise ToolError(
            "no_model",
            "No language model is configured and no verified query matches this question closely "
            "enough; verified questions for this source: "
            + "; ".join(v.question for v in source.verified_queries),
        )
    examples = [m.verified for m in ranked[:EXAMPLES] if m.score > 0]
    return await _generate_and_run(ctx, engine, source, args.question, examples)


async def _execute(ctx: ToolContext, engine: Engine, query: str) -> ResultSet:
    return await asyncio.to_thread(
        engine.execute, query, max_rows=ctx.limits.max_rows, timeout_s=ctx.limits.timeout_s
    )


async def _run_verified(
    ctx: ToolContext, engine: Engine, source: Source, verified: VerifiedQuery
) -> Nl2SqlResult:
    try:
        result = await _execute(ctx, engine, verified.query)
    except QueryError as e:
        raise ToolError(e.code, f"the verified query for {verified.question!r} failed: {e.message}") from e
    return Nl2SqlResult(
        source=source.name,
        dialect=source.dialect,
        query=verified.query.strip(),
        result=result,
        verified=True,
        verified_question=verified.question,
    )


def _generation_prompt(source: Source, schema: str, examples: Sequence[VerifiedQuery]) -> str:
    shots = "".join(f"Q: {v.question}\n```sql\n{v.query}\n```\n" for v in examples)
    return render(
        "nl2sql",
        dialect=source.dialect,
        source=source.name,
        description=source.description,
        instructions=source.instructions,
        schema=schema,
        examples=f"Verified examples:\n{shots}" if shots else "",
    )


async def _generate_and_run(
    ctx: ToolContext, engine: Engine, source: Source, question: str, examples: list[VerifiedQuery]
) -> Nl2SqlResult:
    assert ctx.model is not None
    known = known_whole_schema(source, engine)
    if known is None:
        known = await asyncio.to_thread(schema_for, source, engine, question, ctx.embedder)
    schema, catalog = known
    system = _generation_prompt(source, schema, examples)
    attempts: list[Attempt] = []
    prompt = question
    for _ in range(ctx.limits.max_repairs + 1):
        reply = await ctx.model.complete_text(system, prompt)
        query = extract_query(reply, "sql")
        if query is None and CANNOT in reply.upper():
            raise _not_in_source(source, catalog, reply)
        if query is None:
            problem = Problem(code="no_query", message="the reply had no ```sql block")
            attempts.append(Attempt(query=reply[:2000], error=problem))
            prompt = f"{question}\n\nReply with the query in a fenced ```sql block only."
            continue
        try:
            result = await _execute(ctx, engine, query)
        except QueryError as e:
            attempts.append(Attempt(query=query, error=e.problems[0]))
            prompt = render("nl2sql_repair", query=query, code=e.code, error=e.message)
            continue
        return Nl2SqlResult(
            source=source.name, dialect=source.dialect, query=query, result=result, attempts=attempts
        )
    last = attempts[-1].error
    raise ToolError(
        "query_failed",
        f"no valid query after {len(attempts)} attempts; last error ({last.code}): {last.message}",
    )


def _not_in_source(source: Source, catalog: Catalog, reply: str) -> ToolError:
    """The model says the data cannot answer: say which tables exist rather than guess."""
    start = reply.upper().index(CANNOT) + len(CANNOT)
    reason = reply[start:].strip(" :.\n") or "no reason given"
    tables = ", ".join(t.name for t in catalog.tables)
    return ToolError("not_in_source", f"{source.name} cannot answer this ({reason}). Its tables: {tables}")


TOOL = define(run, effect=Effect.READ)
