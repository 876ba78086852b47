"""What every document search shares: the checks on a search, and the passages as a ResultSet
(`id`, `chunk_id`, `title`, `text`, `score`, then the index's own fields), bounded like every
engine's result."""

from __future__ import annotations

from itertools import islice

from loom.engines.bounds import MAX_RESULT_BYTES, bounded_rows
from loom.engines.contracts import Column, QueryError, ResultSet, Value

MAX_QUERY_CHARS = 2_000
MAX_TOP = 1_000
PASSAGE_COLUMNS = (("id", "string"), ("chunk_id", "string"), ("title", "string"), ("text", "string"),
                   ("score", "float"))  # fmt: skip


def checked_query(query: str) -> str:
    """`query`, refused when empty or over-long (`invalid_query`)."""
    if not query.strip():
        raise QueryError("invalid_query", "the search is empty: say what to look for")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError("invalid_query", f"the search is over {MAX_QUERY_CHARS:,} characters: shorten it")
    return query


def passage_result(
    rows: list[list[Value]],
    extra: list[Column],
    *,
    engine: str,
    query: str,
    filter: str | None,
    started: float,
) -> ResultSet:
    """The passages' rows (the shared columns, then `extra`) as a bounded ResultSet; the query shown
    is the search with its filter."""
    listed = iter(rows)
    bounded = bounded_rows(
        lambda n: list(islice(listed, n)), max_rows=len(rows) or 1, max_bytes=MAX_RESULT_BYTES
    )
    columns = [Column(name=n, type=t) for n, t in PASSAGE_COLUMNS] + extra
    shown = query if not filter else f"{query}  [filter: {filter}]"
    return bounded.result(columns, engine=engine, query=shown, started=started)
