"""`nl2sql`: a question about a SQL source → one validated read-only query → rows.

A verified query that matches the question closely enough is run as it is and labelled verified;
otherwise the model writes the query in the source's dialect, with the schema linked to the
question (`sql_schema`), and the shared loop (`querygen`) validates, runs and repairs it.
"""

from __future__ import annotations

from sqlglot import exp

from loom.engines.contracts import QueryError
from loom.engines.sql.mend import mend_columns
from loom.engines.sql.validator import parse_sql
from loom.tools.base import Effect, ToolContext, define
from loom.tools.key_hints import key_hints
from loom.tools.querygen import Prompts, QueryLanguage, QueryResult, QuestionArgs, SchemaContext, answer
from loom.tools.sql_schema import known_whole_schema, schema_for


def bare_sql(reply: str, dialect: str) -> str | None:
    """The reply itself when it parses, whole, as one query: a small model asked for a fenced
    block sometimes writes the bare query (Spider: 1 of 60 questions failed on that alone). Parsing
    only decides that this is the query; the engine's validator still decides whether it may run."""
    text = reply.strip()
    try:
        tree = parse_sql(text, dialect)
    except QueryError:
        return None
    return text if isinstance(tree, exp.Query) else None


def is_sql(text: str) -> bool:
    """Whether `text` is a SQL query (parsed, generic dialect) rather than a question. Only text
    that starts like a query is parsed: this is asked on every turn."""
    words = text.split(None, 1)
    return bool(words) and words[0].upper() in ("SELECT", "WITH") and bare_sql(text, "duckdb") is not None


def sql_key_hints(query: str, dialect: str, schema: SchemaContext) -> str | None:
    return key_hints(query, dialect, schema.catalog, schema.keys)


def sql_mend(query: str, dialect: str, schema: SchemaContext) -> tuple[str, str] | None:
    mended = mend_columns(query, dialect, schema.catalog, schema.keys)
    return None if mended is None else (mended.query, " ".join(mended.changes))


SQL = QueryLanguage(
    name="sql",
    fence="sql",
    prompts=Prompts.packaged("nl2sql"),
    schema_for=schema_for,
    known_schema=known_whole_schema,
    bare_query=bare_sql,
    repair_hint=sql_key_hints,
    mend=sql_mend,
    is_query=is_sql,
)

GUIDANCE = """
- `nl2sql`: call it first for any question about the data in a source that answers SQL. Pass the
  question in plain words, written out in full (resolve "it", "that", "same for 2024" from the
  conversation), and the source's name; it writes and runs the SQL itself and returns the rows.
"""


async def run(ctx: ToolContext, args: QuestionArgs) -> QueryResult:
    """Look up figures in a data source that answers SQL. Pass the user's question in plain words;
    this tool writes and runs one read-only SQL query itself and returns the rows, the query and
    whether it came from a verified query. Call it before stating any number."""
    return await answer(ctx, SQL, args)


TOOL = define(run, effect=Effect.READ, language="sql", guidance=GUIDANCE)
