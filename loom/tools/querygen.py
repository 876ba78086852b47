"""The one query-generation loop every language tool runs on.

verified match → few-shot examples → generate → validate → execute with limits → repair (at most
`max_repairs` times) → a result that carries the query, the rows and the attempts.

A language tool says only what differs: its `QueryLanguage` (the engine language, the fence tag the
model writes in, its prompts, how its schema is shown) — `nl2sql` is a few lines on top of this.
The query is validated by the engine's parser before anything runs; this loop never judges a
query itself, it only carries the engine's verdict back to the model.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from string import Template

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

from loom.engines.bounds import MARK_ROOM, shorten, value_size
from loom.engines.contracts import (
    Catalog,
    Embedder,
    Engine,
    ForeignKey,
    Problem,
    QueryError,
    ResultSet,
    Value,
)
from loom.engines.sources import Source, VerifiedQuery
from loom.prompts import template
from loom.tools.base import ToolContext, ToolError, ToolResult
from loom.tools.fenced import extract_query
from loom.tools.result_room import RoomSpent
from loom.tools.schema_prompt import SchemaView, render_schema
from loom.tools.verified import VerifiedIndex

CANNOT = "CANNOT ANSWER"
MODEL_ROWS = 50  # rows the model reads; the user sees the whole (capped) table
MODEL_VALUE_CHARS = 500  # of one text value, for the model; the user's table keeps more
MODEL_RESULT_CHARS = 24_000  # of the rows the model reads, about (a wide row shares it out)
MODEL_COLUMNS = 100  # the columns the model reads; the user's table has them all
MODEL_NAME_CHARS = 64  # of a column's name, for the model
EXAMPLES = 3
MIN_QUERY_S = 1.0  # the least time a repair attempt is given, whatever the attempts before it used
# Failures a rewrite cannot be trusted to fix, and that cost a time limit or an engine reload each
# time, or that no query can fix (a table the source could not load): the tool stops and the model
# tells the user, instead of trying again.
# out_of_memory too: a small model mostly writes the same query again, and each try can cost the
# source's engine a restart (probe 4 saw one attack query run three times that way).
NOT_REPAIRABLE = frozenset(
    {
        "timeout",
        "engine_failed",
        "out_of_memory",
        "source_busy",
        "rate_limited",
        "source_unavailable",
        "source_loading",
        "table_unavailable",
    }
)


def _no_default(schema: JsonDict) -> None:
    """Declared as before, with no default: a changed declaration is a new request to the model."""
    schema.pop("default", None)


class QuestionArgs(BaseModel):
    # Required in what the model is shown, but a call without it asks the user's own message: the
    # local 1.5B model called nl2sql with only `source` and then answered that it needed one.
    model_config = ConfigDict(json_schema_extra={"required": ["question"]})

    question: str = Field(
        "",
        description="The question, written out in full so it stands on its own.",
        json_schema_extra=_no_default,
    )
    source: str | None = Field(None, description="Name of the data source; default: the first that fits.")


class Attempt(BaseModel):
    query: str
    error: Problem
    # Set when the next query is this one mended without the model (`QueryLanguage.mend`): what changed.
    mended: str | None = None


class QueryResult(ToolResult):
    """`query` is the final query as written in the source's dialect; `result.query` is what the
    engine ran (translated, with the row cap added)."""

    source: str
    language: str
    dialect: str
    query: str
    result: ResultSet
    attempts: list[Attempt] = Field(default_factory=list)
    verified: bool = False
    verified_question: str | None = None
    measures: list[str] = Field(default_factory=list)  # a semantic model's measures the query used

    def for_model(self) -> str:
        """What the model reads: the query it stands on, the first rows, and whether it is verified
        (always said, true or false: a model left to guess claims verification it does not have).
        Not the executed query or timings, which the user sees with the table."""
        result: dict[str, object] = {"columns": _model_columns(self.result)}
        result |= self.result.model_dump(include={"row_count", "truncated"})
        if self.result.truncated_by:
            result["truncated_by"] = self.result.truncated_by
        rows = _model_rows(self.result)
        result["rows"] = rows
        if len(rows) < self.result.row_count:
            result["rows_shown"] = len(rows)
        if len(self.result.columns) > MODEL_COLUMNS:
            result["columns_shown"] = MODEL_COLUMNS
        shown = self.model_dump(include={"source", "language", "dialect", "query", "verified"})
        if self.attempts:
            shown["attempts"] = [
                a.model_dump(exclude={"error": {"suggestions"}}, exclude_none=True) for a in self.attempts
            ]
        if self.verified_question:
            shown["verified_question"] = self.verified_question
        if self.measures:
            shown["measures_used"] = self.measures
        return json.dumps({**shown, "result": result}, ensure_ascii=False, default=str)

    def table(self) -> ResultSet:
        return self.result

    def shown_query(self) -> str:
        return self.query


def _model_columns(result: ResultSet) -> list[dict[str, str]]:
    """The first `MODEL_COLUMNS` columns, names cut to `MODEL_NAME_CHARS` (probe 9: a 10 MB name)."""
    return [
        {"name": shorten(c.name, MODEL_NAME_CHARS), "type": c.type}  # type: ignore[dict-item]
        for c in result.columns[:MODEL_COLUMNS]
    ]


def _model_rows(result: ResultSet) -> list[list[Value]]:
    """The first rows of the first `MODEL_COLUMNS` columns, each value cut to its share of
    `MODEL_RESULT_CHARS`, as many as fit in it (at least one, at most `MODEL_ROWS`): probe 8's
    3,000-column row was 1.7 MB of model input."""
    width = min(len(result.columns), MODEL_COLUMNS)
    most = max(20, min(MODEL_VALUE_CHARS, MODEL_RESULT_CHARS // max(width, 1) - MARK_ROOM))
    rows: list[list[Value]] = []
    size = 0
    for row in result.rows[:MODEL_ROWS]:
        shown = [shorten(v, most) for v in row[:MODEL_COLUMNS]]
        size += sum(value_size(v) for v in shown)
        if rows and size > MODEL_RESULT_CHARS:
            break
        rows.append(shown)
    return rows


@dataclass(frozen=True)
class SchemaContext:
    """What the prompt shows of a source, and the whole catalog (for saying what exists)."""

    text: str
    catalog: Catalog
    keys: tuple[ForeignKey, ...] = ()  # between its tables, for repair hints (`key_hints`)


# The schema for the prompt, as the view asks (`schema_prompt`); runs in a worker thread (it may
# read the source).
SchemaFor = Callable[[Source, Engine, str, Embedder | None, SchemaView], SchemaContext]
# The same when it needs no work (the engine's catalog is in hand), else None; runs on the loop.
KnownSchema = Callable[[Source, Engine, SchemaView], SchemaContext | None]
# A reply with no fenced block that is, whole, one query in the dialect: that query, else None.
BareQuery = Callable[[str, str], str | None]
# What to add to a failed query's error for its repair (query, dialect, schema), else None.
RepairHint = Callable[[str, str, SchemaContext], str | None]
# The model's query with slips that leave no doubt mended (a missing `;`), before it is checked.
Tidy = Callable[[str], str]
# After a failure: the query mended without the model where the schema allows one reading only,
# and what changed (query, dialect, schema → (query, change)), else None.
Mend = Callable[[str, str, SchemaContext], tuple[str, str] | None]
# Whether a tool's `question` argument is a query in the language rather than a question.
IsQuery = Callable[[str], bool]


def whole_schema(
    source: Source, engine: Engine, question: str, embedder: Embedder | None, view: SchemaView
) -> SchemaContext:
    catalog = engine.catalog()
    return SchemaContext(render_schema(catalog, form=view.form), catalog)


def no_known_schema(source: Source, engine: Engine, view: SchemaView) -> SchemaContext | None:
    return None


def no_bare_query(reply: str, dialect: str) -> str | None:
    return None


def no_repair_hint(query: str, dialect: str, schema: SchemaContext) -> str | None:
    return None


def as_written(query: str) -> str:
    return query


def no_mend(query: str, dialect: str, schema: SchemaContext) -> tuple[str, str] | None:
    return None


def never_a_query(text: str) -> bool:
    return False


@dataclass(frozen=True)
class Prompts:
    """`generate` is the system prompt for writing a query; `repair` the message after a failure.

    Placeholders: `$language $dialect $fence $source $description $instructions $schema $examples`
    in `generate`; `$fence $question $query $code $error` in `repair` (`string.Template`, so query
    braces need no escaping)."""

    generate: Template
    repair: Template

    @classmethod
    def packaged(cls, name: str) -> Prompts:
        """`prompts/<name>.md` and `prompts/<name>_repair.md`."""
        return cls(template(name), template(f"{name}_repair"))

    @classmethod
    def of(cls, generate: str, repair: str) -> Prompts:
        return cls(Template(generate), Template(repair))


# What to check when a query returns nothing, by language (the tabular languages share SQL's).
EMPTY_HINT = (
    "a condition that rows must meet together on one column (`x = 'A' AND x = 'B'`, for 'both A and "
    "B') can never match, so use INTERSECT or GROUP BY … HAVING; compare text with values as the "
    "column spells them (see the sample values); check that each filter is on the right column."
)


@dataclass(frozen=True)
class QueryLanguage:
    name: str  # the engine language: "sql"
    fence: str  # the tag of the fenced block the model writes the query in
    prompts: Prompts
    schema_for: SchemaFor = whole_schema
    known_schema: KnownSchema = no_known_schema
    bare_query: BareQuery = no_bare_query
    repair_hint: RepairHint = no_repair_hint
    tidy: Tidy = as_written
    mend: Mend = no_mend
    is_query: IsQuery = never_a_query
    empty_hint: str = EMPTY_HINT  # what to check when a query returns nothing


async def answer(ctx: ToolContext, language: QueryLanguage, args: QuestionArgs) -> QueryResult:
    """The loop: a verified query when one matches, else generated, validated and repaired."""
    source = ctx.source(args.source, language.name)
    engine = _engine(ctx, source, language)
    library = source.verified_for(language.name)
    question = await asyncio.to_thread(_asked, ctx, language, args.question)
    ranked = VerifiedIndex.of(library).rank(question)
    if ranked and ranked[0].score >= ctx.limits.verified_threshold:
        return await _run_verified(ctx, engine, source, language, ranked[0].verified)
    if ctx.model is None:
        raise _no_model(library)
    examples = [m.verified for m in ranked[:EXAMPLES] if m.score > 0]
    return await _Generation(ctx, engine, source, language).run(question, examples)


def _asked(ctx: ToolContext, language: QueryLanguage, question: str) -> str:
    """The question to write the query for. A small model often passes a query it wrote itself as
    the `question` (seen from Qwen2.5-Coder-1.5B: `SELECT channel, COUNT(*) FROM sales …`, over
    tables that do not exist); the user's own words are then the better question, as they are
    when it passed none."""
    if ctx.asked.strip() and (not question.strip() or language.is_query(question)):
        return ctx.asked
    if not question.strip():
        raise ToolError("invalid_arguments", "The question is empty: say what to ask of the data.")
    return question


def _engine(ctx: ToolContext, source: Source, language: QueryLanguage) -> Engine:
    try:
        return ctx.engines.engine(source, language.name)
    except QueryError as e:
        raise ToolError(e.code, e.message) from e


def _no_model(library: Sequence[VerifiedQuery]) -> ToolError:
    listed = "; ".join(v.question for v in library) or "none"
    return ToolError(
        "no_model",
        "No language model is configured and no verified query matches this question closely "
        f"enough; verified questions for this source: {listed}",
    )


async def _execute(
    ctx: ToolContext, source: Source, engine: Engine, query: str, dialect: str, spent_s: float = 0.0
) -> ResultSet:
    """Run `query` with what is left of the query time limit after `spent_s` (earlier attempts),
    and of the turn's room for results (`result_room`), taken once the query has its place."""
    limits = ctx.limits
    room = ctx.results

    def run() -> ResultSet:
        allowed = room.take(limits.max_bytes) if room is not None else limits.max_bytes
        result = engine.execute(
            query,
            max_rows=limits.max_rows,
            max_bytes=allowed,
            timeout_s=max(limits.timeout_s - spent_s, MIN_QUERY_S),
            dialect=dialect,
        )
        if room is not None:
            room.settle(allowed, result.size_bytes or None)
        return result

    try:
        return await ctx.run_on(source.name, run)
    except RoomSpent as e:
        raise ToolError("result_budget", str(e)) from e


async def _run_verified(
    ctx: ToolContext, engine: Engine, source: Source, language: QueryLanguage, verified: VerifiedQuery
) -> QueryResult:
    dialect = verified.dialect or source.dialect_for(language.name)
    try:
        result = await _execute(ctx, source, engine, verified.query, dialect)
    except QueryError as e:
        raise ToolError(e.code, f"the verified query for {verified.question!r} failed: {e.message}") from e
    return QueryResult(
        source=source.name,
        language=language.name,
        dialect=dialect,
        query=verified.query.strip(),
        result=result,
        verified=True,
        verified_question=verified.question,
    )


@dataclass
class _Tries:
    """One question's attempts so far, the prompt for the next, and a query that ran and found
    nothing (the fallback while a repair looks for rows)."""

    question: str
    attempts: list[Attempt] = field(default_factory=list)
    empty: tuple[str, ResultSet] | None = None
    prompt: str = ""
    spent_s: float = 0.0  # running its queries, over every attempt
    mends: int = 0  # attempts mended without the model (they use no repair)

    def __post_init__(self) -> None:
        self.prompt = self.question

    def failed(self, query: str, error: Problem, prompt: str, mended: str | None = None) -> None:
        self.attempts.append(Attempt(query=query, error=error, mended=mended))
        self.prompt = prompt


@dataclass
class _Generation:
    """One question's generate → validate → execute → repair loop."""

    ctx: ToolContext
    engine: Engine
    source: Source
    language: QueryLanguage

    @property
    def dialect(self) -> str:
        return self.source.dialect_for(self.language.name)

    async def run(self, question: str, examples: list[VerifiedQuery]) -> QueryResult:
        assert self.ctx.model is not None
        schema = await self._schema(question)
        system = self._system_prompt(schema.text, examples)
        tries = _Tries(question)
        for _ in range(self.ctx.limits.max_repairs + 1):
            reply = await self.ctx.model.complete_text(system, tries.prompt)
            done = await self._attempt(reply, schema, tries)
            if done is not None:
                return done
            if tries.spent_s >= self.ctx.limits.timeout_s:
                break  # repairs may not add up to more than one query's time (probe 8: 59 s of 30)
        if tries.empty is not None:
            return self._result(*tries.empty, tries.attempts)
        raise _failed(tries.attempts, tries.spent_s >= self.ctx.limits.timeout_s)

    async def _schema(self, question: str) -> SchemaContext:
        view = self.ctx.limits.schema
        schema = self.language.known_schema(self.source, self.engine, view)
        if schema is not None:
            return schema
        # On the query workers, not the loop's shared threads: reading a schema may load the
        # source, and a load that hangs must hold one tenant's place, not every thread.
        return await self.ctx.run_query(
            self.language.schema_for, self.source, self.engine, question, self.ctx.embedder, view
        )

    async def _attempt(self, reply: str, schema: SchemaContext, tries: _Tries) -> QueryResult | None:
        """One reply of the model: the result to return, or None with the next prompt set."""
        # Parses: off the event loop (probe 12: R12-8 held every request; probe 30: R30-3).
        query = extract_query(reply, self.language.fence)
        if query is None:
            query = await asyncio.to_thread(self.language.bare_query, reply, self.dialect)
        if query is not None:
            query = await asyncio.to_thread(self.language.tidy, query)
        if query is None and CANNOT in reply.upper():
            raise _not_in_source(self.source, schema.catalog, reply)
        if query is None:
            fence = self.language.fence
            tries.failed(
                reply[:2000],
                _no_block(fence),
                f"{tries.question}\n\nReply with the query in a fenced ```{fence} block only.",
            )
            return None
        if tries.empty is not None and query == tries.empty[0]:  # the model stands by it: no rows it is
            return self._result(*tries.empty, tries.attempts)
        repeated = next((a for a in tries.attempts if a.query == query), None)
        if repeated is not None:  # the same failure again: say so rather than run it again
            return self._retry(tries, query, _repeated(repeated.error))
        return await self._run(query, schema, tries)

    async def _run(
        self, query: str, schema: SchemaContext, tries: _Tries, mend: bool = True
    ) -> QueryResult | None:
        """Run one query: its result, or None with the next prompt set. A failed query is mended
        once without the model when the schema allows (`QueryLanguage.mend`), and the mend runs."""
        started = time.monotonic()
        try:
            result = await _execute(self.ctx, self.source, self.engine, query, self.dialect, tries.spent_s)
        except QueryError as e:
            if e.code in NOT_REPAIRABLE:
                raise ToolError(e.code, e.message) from e
            error = await asyncio.to_thread(self._hinted, e.problems[0], query, schema)
            mended = (
                await asyncio.to_thread(self.language.mend, query, self.dialect, schema) if mend else None
            )
            if mended is None or any(a.query == mended[0] for a in tries.attempts):
                return self._retry(tries, query, error)
            tries.failed(query, error, tries.prompt, mended=mended[1])
            tries.mends += 1
            return await self._run(mended[0], schema, tries, mend=False)
        finally:
            tries.spent_s += time.monotonic() - started
        if result.row_count == 0 and tries.empty is None and self._may_retry_empty(tries):
            tries.empty = (query, result)
            empty = _empty(self.language.empty_hint)
            return self._retry(tries, query, await asyncio.to_thread(self._hinted, empty, query, schema))
        if result.row_count == 0 and tries.empty is not None:
            return self._result(*tries.empty, tries.attempts)  # nothing either way: the first stands
        return self._result(query, result, tries.attempts)

    def _retry(self, tries: _Tries, query: str, error: Problem) -> QueryResult | None:
        """Record the failure and ask for a repair next: no result yet (None)."""
        tries.failed(query, error, self._repair_prompt(tries.question, query, error))
        return None

    def _hinted(self, error: Problem, query: str, schema: SchemaContext) -> Problem:
        """`error` with the language's hint for `query` after it, when it has one."""
        hint = self.language.repair_hint(query, self.dialect, schema)
        if hint is None:
            return error
        return error.model_copy(update={"message": f"{error.message}\n{hint}"})

    def _may_retry_empty(self, tries: _Tries) -> bool:
        """An empty result is asked about once, when a repair is left: a query that cannot match
        (`x = 'A' AND x = 'B'` for "both A and B", a value spelled as no row spells it) runs without
        error, so only its empty result shows it."""
        return (
            self.ctx.limits.repair_empty and len(tries.attempts) - tries.mends < self.ctx.limits.max_repairs
        )

    def _system_prompt(self, schema: str, examples: Sequence[VerifiedQuery]) -> str:
        fence, source = self.language.fence, self.source
        shots = "".join(f"Q: {v.question}\n```{fence}\n{v.query}\n```\n" for v in examples)
        return self.language.prompts.generate.substitute(
            language=self.language.name,
            dialect=self.dialect,
            fence=fence,
            source=source.name,
            description=source.description,
            instructions=source.instructions,
            schema=schema,
            examples=f"Verified examples:\n{shots}" if shots else "",
        )

    def _repair_prompt(self, question: str, query: str, error: Problem) -> str:
        return self.language.prompts.repair.substitute(
            fence=self.language.fence, question=question, query=query, code=error.code, error=error.message
        )

    def _result(self, query: str, result: ResultSet, attempts: list[Attempt]) -> QueryResult:
        return QueryResult(
            source=self.source.name,
            language=self.language.name,
            dialect=self.dialect,
            query=query,
            result=result,
            attempts=attempts,
        )


def _repeated(error: Problem) -> Problem:
    return Problem(
        code=error.code,
        message=f"{error.message} (This is the query that already failed: write a different one.)",
        suggestions=error.suggestions,
    )


def _empty(hint: str) -> Problem:
    return Problem(
        code="empty_result",
        message="The query ran but returned no rows. If the question is right to expect some: "
        f"{hint} If no rows is the right answer, write the same query again.",
    )


def _no_block(fence: str) -> Problem:
    return Problem(code="no_query", message=f"the reply had no ```{fence} block")


def _failed(attempts: list[Attempt], out_of_time: bool = False) -> ToolError:
    last = attempts[-1].error
    why = " (their running time used up the query time limit)" if out_of_time else ""
    return ToolError(
        "query_failed",
        f"no valid query after {len(attempts)} attempts{why}; last error ({last.code}): {last.message}",
    )


def _not_in_source(source: Source, catalog: Catalog, reply: str) -> ToolError:
    """The model says the data cannot answer: say which tables exist rather than guess."""
    start = reply.upper().index(CANNOT) + len(CANNOT)
    reason = reply[start:].strip(" :.\n") or "no reason given"
    tables = ", ".join(t.name for t in catalog.tables)
    return ToolError("not_in_source", f"{source.name} cannot answer this ({reason}). Its tables: {tables}")
