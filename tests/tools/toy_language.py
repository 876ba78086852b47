"""A toy query language, plugged in the way nl2kql, nl2dax and graph_search will be: an engine
opener for a kind of source, a tool module on the shared generation loop with its own prompts and
guidance, and (through the registry) a `loom query toy` command. Nothing in the loop, the pool or
other tools' prompts knows about it.

The language: `COUNT <table>` or `TOP <n> <table>`, over the same DuckDB data as SQL.
"""

from __future__ import annotations

import datetime as dt

from loom.engines.contracts import Catalog, Problem, QueryError, ResultSet, unsupported_dialect
from loom.engines.registry import CloudAccess
from loom.engines.sources import DuckDBSource, Source
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.tools.base import Effect, ToolContext, define
from loom.tools.querygen import Prompts, QueryLanguage, QueryResult, QuestionArgs, answer

VERBS = ("COUNT", "TOP")


class ToyEngine:
    """Parses a toy query into (verb, n, table), checks it against the catalog, runs it as SQL."""

    name = "toy-duckdb"
    language = "toy"
    dialect = "toy"
    dialects = frozenset({"toy"})

    def __init__(self, source: DuckDBSource) -> None:
        self._sql = DuckDBEngine(source)

    def execute(
        self,
        query: str,
        *,
        max_rows: int,
        timeout_s: float,
        now: dt.datetime | None = None,
        dialect: str | None = None,
        max_bytes: int | None = None,
    ) -> ResultSet:
        if dialect not in (None, "toy"):
            raise unsupported_dialect(self, dialect)
        sql = self._compile(query)
        result = self._sql.execute(
            sql, max_rows=max_rows, max_bytes=max_bytes, timeout_s=timeout_s, now=now, dialect="duckdb"
        )
        return result.model_copy(update={"engine": self.name})

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        try:
            self._compile(query)
        except QueryError as e:
            return e.problems
        return []

    def catalog(self) -> Catalog:
        return self._sql.catalog()

    def loaded_catalog(self) -> Catalog | None:
        return self._sql.loaded_catalog()

    def problem(self) -> str | None:
        return self._sql.problem()

    def close(self) -> None:
        self._sql.close()

    def _compile(self, query: str) -> str:
        words = query.split()
        if not words or words[0].upper() not in VERBS:
            raise QueryError("parse_error", f"a toy query starts with one of {', '.join(VERBS)}")
        verb, args = words[0].upper(), words[1:]
        if verb == "COUNT" and len(args) == 1:
            return f"SELECT count(*) AS n FROM {self._table(args[0])}"
        if verb == "TOP" and len(args) == 2 and args[0].isdigit():
            return f"SELECT * FROM {self._table(args[1])} LIMIT {int(args[0])}"
        raise QueryError("parse_error", "write COUNT <table> or TOP <n> <table>")

    def _table(self, name: str) -> str:
        known = {t.name.lower(): t.name for t in self.catalog().tables}
        if name.lower() not in known:
            raise QueryError(
                "unknown_table", f"Unknown table {name}. Known tables: {', '.join(known.values())}."
            )
        return known[name.lower()]


def open_toy(source: Source, access: CloudAccess) -> ToyEngine:
    assert isinstance(source, DuckDBSource)
    return ToyEngine(source)


TOY = QueryLanguage(
    name="toy",
    fence="toy",
    prompts=Prompts.of(
        generate="Write one $language query for source `$source`.\nTables:\n$schema\n$examples\n"
        "Reply with a ```$fence block: COUNT <table> or TOP <n> <table>.",
        repair="That failed ($code): $error\n```$fence\n$query\n```\nReply with a corrected ```$fence block.",
    ),
)

GUIDANCE = "- To count a table's rows or peek at it, call `toy_query` with the question."


async def run(ctx: ToolContext, args: QuestionArgs) -> QueryResult:
    """Answer a question by writing a toy query (COUNT or TOP) and running it."""
    return await answer(ctx, TOY, args)


TOOL = define(run, effect=Effect.READ, name="toy_query", language="toy", guidance=GUIDANCE)
