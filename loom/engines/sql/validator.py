"""Read-only SQL, decided by parsing (sqlglot), never by regex.

A query passes when it is exactly one SELECT / WITH … SELECT / UNION-INTERSECT-EXCEPT / VALUES whose
whole tree (subqueries and CTEs included) holds no write or management statement, no SELECT … INTO,
no function that reaches files, the network or system state, no system object and no table named by
a file path. What each dialect refuses is data (`RULES`), in the way sqlglot keeps a dialect's
differences in tables rather than in `if dialect == …` branches.

The engine runs the SQL *generated from the validated tree*, not the text it was given, so what was
checked is exactly what runs: a quirk where sqlglot and DuckDB read a string differently cannot
smuggle anything past the check. The text is still screened first, at the token level, for what a
tree cannot show: a second statement, input too large or too deep to parse safely, and invisible or
look-alike characters.

With a catalog, table and column names are checked too; the problems carry the closest existing
names, because they go back to the model in the repair loop.

This module is the entry points and the glue; the pieces are `rules` (what each dialect refuses),
`screen` (the token screen before parsing), `access` (the tree rules) and `qualify` (the catalog
checks).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.tokens import Token

from loom.engines.contracts import Catalog, Problem, QueryError
from loom.engines.sql.access import READ_ONLY_ROOTS, WRITE_NODES, access_problems, unique, write_problem
from loom.engines.sql.qualify import METADATA_SCHEMAS, CatalogNames, unknown_columns, unknown_tables
from loom.engines.sql.rules import (
    COMMON_FUNCTIONS,
    COMMON_PREFIXES,
    DATABRICKS,
    DIALECTS,
    DUCKDB,
    RULES,
    SQLITE,
    TSQL,
    DialectRules,
)
from loom.engines.sql.screen import (
    MAX_NESTING,
    MAX_QUERY_CHARS,
    MAX_TOKENS,
    input_limits,
    screen_tokens,
    split_statements,
    token_refusal,
    too_complex,
)

__all__ = [
    "COMMON_FUNCTIONS",
    "COMMON_PREFIXES",
    "DATABRICKS",
    "DIALECTS",
    "DUCKDB",
    "MAX_NESTING",
    "MAX_QUERY_CHARS",
    "MAX_TOKENS",
    "METADATA_SCHEMAS",
    "READ_ONLY_ROOTS",
    "RULES",
    "SQLITE",
    "TSQL",
    "WRITE_NODES",
    "DialectRules",
    "apply_row_cap",
    "parse_read_only",
    "parse_sql",
    "pin_now",
    "transpile",
    "validate_sql",
]


# --- public entry points ----------------------------------------------------------------------


def parse_sql(query: str, dialect: str = "duckdb") -> exp.Expr:
    """Parse exactly one statement or raise QueryError (`parse_error`, `multiple_statements`,
    `too_complex`, `unsupported_dialect`, or a more precise refusal when parsing fails on one)."""
    return _parse(query, dialect)[0]


def parse_read_only(query: str, dialect: str = "duckdb", catalog: Catalog | None = None) -> exp.Expr:
    """The parsed statement if it passes every read-only rule, else QueryError with all problems.

    With a catalog, unknown tables are problems; so are unknown columns of tables whose columns the
    catalog lists (a table listed without columns is only checked by name)."""
    expr, tokens = _parse(query, dialect)
    problems = list(_tree_problems(expr, tokens, dialect, catalog))
    if problems:
        raise QueryError(problems[0].code, problems[0].message, problems)
    return expr


def validate_sql(query: str, dialect: str = "duckdb", catalog: Catalog | None = None) -> list[Problem]:
    """Every reason the query may not run (empty when it may). With a catalog, unknown names too."""
    try:
        parse_read_only(query, dialect, catalog)
    except QueryError as e:
        return e.problems
    return []


def transpile(query: str, from_dialect: str) -> str:
    """The one statement in `query`, rewritten from `from_dialect` into DuckDB SQL."""
    return parse_sql(query, from_dialect).sql(dialect="duckdb")


def apply_row_cap(expr: exp.Expr, max_rows: int) -> exp.Expr:
    """Limit the query to `max_rows + 1` rows, so one extra row tells that the answer was truncated.

    The cap goes into the SQL (rather than only fetching fewer rows) because then DuckDB plans a
    top-N instead of a full sort and stops scanning early; the engine still fetches at most
    `max_rows + 1`, which bounds memory whatever the query says.
    """
    cap = max_rows + 1
    if isinstance(expr, exp.Subquery):  # `(SELECT …)` as a whole statement
        expr = expr.this
    limit = expr.args.get("limit")
    if isinstance(expr, exp.Select | exp.SetOperation):
        if limit is None:
            return expr.limit(cap, copy=True)
        if isinstance(limit, exp.Limit) and _is_plain_limit(limit):
            current = int(limit.expression.this)
            return expr.limit(cap, copy=True) if current > cap else expr
    # VALUES, LIMIT n%, LIMIT (subquery)…: cap the whole statement from outside (DuckDB keeps a
    # subquery's ORDER BY order through a plain LIMIT).
    capped = exp.select("*").from_(exp.Subquery(this=expr.copy(), alias=exp.TableAlias(this="_capped")))
    return capped.limit(cap)


def pin_now(expr: exp.Expr, now: dt.datetime) -> exp.Expr:
    """Replace CURRENT_DATE / NOW() & co. by literals, so relative dates answer as of `now`."""

    def swap(node: exp.Expr) -> exp.Expr:
        kind = _clock_kind(node)
        if kind == "date":
            return exp.cast(exp.Literal.string(now.date().isoformat()), "DATE")
        if kind == "time":
            return exp.cast(exp.Literal.string(now.time().isoformat()), "TIME")
        if kind == "timestamp":
            stamp = now.replace(tzinfo=None).isoformat(sep=" ")
            return exp.cast(exp.Literal.string(stamp), "TIMESTAMP")
        return node

    return expr.transform(swap, copy=True)


# --- parsing: the token screen, then exactly one statement ------------------------------------


def _parse(query: str, dialect: str) -> tuple[exp.Expr, list[Token]]:
    if dialect not in DIALECTS:
        raise QueryError(
            "unsupported_dialect", f"Unsupported SQL dialect {dialect!r}; use one of: {', '.join(DIALECTS)}."
        )
    most = input_limits().chars
    if len(query) > most:
        raise too_complex(f"it has {len(query):,} characters; the limit is {most:,}")
    reader = Dialect.get_or_raise(dialect)
    tokens = _tokenize(reader, query, dialect)
    screen_tokens(tokens)
    statements = split_statements(tokens)
    if len(statements) > 1:
        raise QueryError(
            "multiple_statements",
            f"Send exactly one SQL statement; found {len(statements)} "
            f"(the second is {statements[1][0].text.upper()}).",
        )
    if not statements:
        raise QueryError("parse_error", "The query is empty: send one SELECT statement.")
    return _parse_tokens(reader, statements[0], query, dialect), statements[0]


def _tokenize(reader: Dialect, query: str, dialect: str) -> list[Token]:
    try:
        return reader.tokenize(query)
    except SqlglotError as e:  # e.g. an unterminated string or comment
        raise QueryError("parse_error", f"Could not parse the SQL ({dialect}): {e}") from e


def _parse_tokens(reader: Dialect, tokens: list[Token], query: str, dialect: str) -> exp.Expr:
    try:
        parsed = reader.parser().parse(tokens, query)
    except ParseError as e:
        raise token_refusal(tokens, dialect) or QueryError("parse_error", _parse_message(e, dialect)) from e
    except SqlglotError as e:
        raise QueryError("parse_error", f"Could not parse the SQL ({dialect}): {e}") from e
    except RecursionError as e:  # nesting the token screen did not count (NOT NOT NOT …)
        raise too_complex("the parser ran out of stack") from e
    statement = next((s for s in parsed if s is not None), None)
    if statement is None:
        raise QueryError("parse_error", "The query is empty: send one SELECT statement.")
    return statement


def _parse_message(error: ParseError, dialect: str) -> str:
    if not error.errors:
        return f"Could not parse the SQL ({dialect}): {error}"
    first = error.errors[0]
    where = f" at line {first.get('line')}, column {first.get('col')}" if first.get("line") else ""
    near = f" near {first.get('highlight')!r}" if first.get("highlight") else ""
    return f"Could not parse the SQL ({dialect}): {first.get('description')}{where}{near}."


# --- tree rules ---------------------------------------------------------------------------------


def _tree_problems(
    expr: exp.Expr, tokens: Sequence[Token], dialect: str, catalog: Catalog | None
) -> Iterator[Problem]:
    nodes = list(expr.walk())  # one walk, shared by every rule
    rules = RULES[dialect]
    write = write_problem(expr, nodes, tokens, dialect)
    if write is not None:
        yield write
        return  # a refused statement's tables and functions are beside the point
    yield from unique(access_problems(nodes, rules))
    if catalog is not None:
        names = CatalogNames(catalog, rules)
        yield from unknown_tables(expr, names.ref, names.names, names.unavailable)
        if names.has_columns:
            yield from unknown_columns(expr, names, rules)


# --- clock and row cap helpers ------------------------------------------------------------------


def _clock_kind(node: exp.Expr) -> str | None:
    if isinstance(node, exp.CurrentDate):
        return "date"
    if isinstance(node, exp.CurrentTime):
        return "time"
    if isinstance(node, exp.CurrentTimestamp | exp.Localtimestamp):
        return "timestamp"
    if isinstance(node, exp.Anonymous) and node.name.lower() in _CLOCK_FUNCTIONS:
        return _CLOCK_FUNCTIONS[node.name.lower()]
    return None


_CLOCK_FUNCTIONS = {
    "now": "timestamp",
    "get_current_timestamp": "timestamp",
    "transaction_timestamp": "timestamp",
    "today": "date",
    "getdate": "timestamp",
    "sysdatetime": "timestamp",
}


def _is_plain_limit(limit: exp.Limit) -> bool:
    value = limit.expression
    options = limit.args.get("limit_options")
    return isinstance(value, exp.Literal) and value.is_int and not (options and options.args.get("percent"))
