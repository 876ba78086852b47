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

# The helpers below parse in the server's own process, beside every other user's requests, with no
# time limit of their own: a mend of a 19 KB query of 330 UNION ALL branches took 0.76 s, and one
# user's four turns of such failing queries made every tenant's answers ~150x slower (probe 30:
# R30-3). Mending grows faster than the query (2.3 KB 24 ms, 4.6 KB 83 ms, 6.9 KB 175 ms), so
# past these sizes a query is not mended or hinted (the model reads the engine's error and
# repairs it), and a reply is not read as a bare query (it is asked for a fenced one).
MOST_MENDED_CHARS = 2_000  # the longest gold query of Spider and BIRD in the benchmarks is 819
MOST_BARE_CHARS = 4_000


def bare_sql(reply: str, dialect: str) -> str | None:
    """The reply itself when it parses, whole, as one query: a small model asked for a fenced
    block sometimes writes the bare query (Spider: 1 of 60 questions failed on that alone). Parsing
    only decides that this is the query; the engine's validator still decides whether it may run."""
    text = reply.strip()
    if len(text) > MOST_BARE_CHARS:
        return None
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
    if len(query) > MOST_MENDED_CHARS:
        return None
    return key_hints(query, dialect, schema.catalog, schema.keys)


def sql_mend(query: str, dialect: str, schema: SchemaContext) -> tuple[str, str] | None:
    if len(query) > MOST_MENDED_CHARS:
        return None
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
