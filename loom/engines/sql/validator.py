"""Read-only SQL, decided by parsing (sqlglot), never by regex.

A query passes when it is exactly one SELECT / WITH … SELECT / UNION-INTERSECT-EXCEPT / VALUES whose
whole tree (subqueries and CTEs included) holds no write or management statement, no SELECT … INTO,
no function that reaches files, the network or system state, and no table named by a file path.
The engine runs the SQL *generated from the validated tree*, not the text it was given, so what was
checked is exactly what runs: a quirk where sqlglot and DuckDB read a string differently cannot
smuggle anything past the check.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterator

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from loom.engines.contracts import Catalog, Problem, QueryError

DIALECTS = ("duckdb", "tsql", "databricks", "sqlite", "spark")

READ_ONLY_ROOTS: tuple[type[exp.Expr], ...] = (exp.Select, exp.SetOperation, exp.Values)

# Statement nodes refused anywhere in the tree (a CTE may hide `DELETE … RETURNING`). Looked up by
# name so a sqlglot release that renames one does not break the import; exp.Command is sqlglot's
# fallback for statements it does not model (LOAD, CALL, VACUUM, EXPLAIN…), so it is refused too.
_WRITE_NODE_NAMES = (
    "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable", "Copy",
    "Attach", "Detach", "Install", "Pragma", "Set", "Use", "Execute", "Command", "Transaction",
    "Commit", "Rollback", "LoadData", "Grant", "Revoke", "Refresh", "Analyze", "Cache", "Uncache",
    "Comment", "Export",
)  # fmt: skip
WRITE_NODES: tuple[type[exp.Expr], ...] = tuple(getattr(exp, n) for n in _WRITE_NODE_NAMES if hasattr(exp, n))

# Functions refused by exact name. `query`/`query_table` run SQL given as a string, which would
# bypass this validator; the duckdb_* ones listed reveal host paths and secrets. Allowed on purpose:
# duckdb_tables/duckdb_columns/duckdb_views (they describe only the queryable catalog) and
# current_setting (one named setting; the configuration is locked, so it can only be read).
# duckdb_extensions is refused: its install_path column shows the host's home directory, and a
# data question never needs it.
FORBIDDEN_FUNCTIONS = frozenset({
    "glob", "getenv", "query", "query_table", "sniff_csv", "st_read", "load_aws_credentials",
    "duckdb_secrets", "which_secret", "duckdb_extensions", "duckdb_settings", "duckdb_databases",
    "json_execute_serialized_sql", "checkpoint", "force_checkpoint",
    "openrowset", "opendatasource", "openquery", "openxml",
})  # fmt: skip

# Whole families: every DuckDB `read_*` is a file reader (csv, json, ndjson, parquet, text, blob,
# xlsx, avro…), the scanners reach other databases or files, `xp_` are SQL Server system procedures.
FORBIDDEN_PREFIXES = (
    "read_", "parquet_", "delta_", "iceberg_", "sqlite_", "postgres_", "mysql_", "http_", "xp_",
)  # fmt: skip

# DuckDB reads a file when a table name looks like one (`FROM '/etc/passwd'`, `FROM "x.csv"`);
# after parsing, a string literal and a quoted identifier look the same, so the name is judged.
_PATH_CHARACTERS = frozenset("/\\:~.*?")

METADATA_SCHEMAS = frozenset({"information_schema", "pg_catalog"})


def parse_sql(query: str, dialect: str = "duckdb") -> exp.Expr:
    """Parse exactly one statement or raise QueryError (`parse_error`, `multiple_statements`)."""
    statements = _parse_all(query, dialect)
    if len(statements) > 1:
        second = _statement_kind(statements[1], dialect)
        raise QueryError(
            "multiple_statements",
            f"Send exactly one SQL statement; found {len(statements)} (the second is {second}).",
        )
    return statements[0]


def parse_read_only(query: str, dialect: str = "duckdb", catalog: Catalog | None = None) -> exp.Expr:
    """The parsed statement if it passes every read-only rule, else QueryError with all problems."""
    expr = parse_sql(query, dialect)
    problems = list(_tree_problems(expr, dialect, catalog))
    if problems:
        raise QueryError(problems[0].code, problems[0].message, problems)
    return expr


def validate_sql(query: str, dialect: str = "duckdb", catalog: Catalog | None = None) -> list[Problem]:
    """Every reason the query may not run (empty when it may). With a catalog, unknown tables too."""
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


# --- parsing ------------------------------------------------------------------------------------


def _parse_all(query: str, dialect: str) -> list[exp.Expr]:
    if dialect not in DIALECTS:
        raise QueryError(
            "unsupported_dialect", f"Unsupported SQL dialect {dialect!r}; use one of: {', '.join(DIALECTS)}."
        )
    try:
        parsed = sqlglot.parse(query, read=dialect)
    except ParseError as e:
        raise QueryError("parse_error", _parse_message(e, dialect)) from e
    except SqlglotError as e:  # tokenizer errors, e.g. an unterminated string
        raise QueryError("parse_error", f"Could not parse the SQL ({dialect}): {e}") from e
    statements = [s for s in parsed if s is not None]  # `SELECT 1;` leaves a trailing empty one
    if not statements:
        raise QueryError("parse_error", "The query is empty: send one SELECT statement.")
    return statements


def _parse_message(error: ParseError, dialect: str) -> str:
    if not error.errors:
        return f"Could not parse the SQL ({dialect}): {error}"
    first = error.errors[0]
    where = f" at line {first.get('line')}, column {first.get('col')}" if first.get("line") else ""
    near = f" near {first.get('highlight')!r}" if first.get("highlight") else ""
    return f"Could not parse the SQL ({dialect}): {first.get('description')}{where}{near}."


def _statement_kind(node: exp.Expr, dialect: str) -> str:
    """How a user would name the statement: its first keyword (DROP, INSERT, LOAD, PRAGMA…)."""
    if isinstance(node, exp.Select) and node.args.get("into"):
        return "SELECT … INTO"
    words = node.sql(dialect=dialect).split(maxsplit=1)
    return words[0].upper() if words else type(node).__name__.upper()


# --- rules --------------------------------------------------------------------------------------


def _tree_problems(expr: exp.Expr, dialect: str, catalog: Catalog | None) -> Iterator[Problem]:
    write = _write_problem(expr, dialect)
    if write is not None:
        yield write
        return  # a refused statement's tables and functions are beside the point
    seen: set[str] = set()
    for problem in _function_and_file_problems(expr):
        if problem.message not in seen:
            seen.add(problem.message)
            yield problem
    if catalog is not None:
        yield from _unknown_tables(expr, catalog)


def _write_problem(expr: exp.Expr, dialect: str) -> Problem | None:
    root = expr.this if isinstance(expr, exp.Subquery) else expr
    offender: exp.Expr | None = None if isinstance(root, READ_ONLY_ROOTS) else root
    if offender is None:
        offender = next((n for n in expr.walk() if _is_write(n)), None)
    if offender is None:
        return None
    kind = _statement_kind(offender, dialect)
    return Problem(
        code="not_read_only",
        message=f"Only read-only queries may run (SELECT, WITH … SELECT, UNION/INTERSECT/EXCEPT, "
        f"VALUES); this query contains {kind}, which is refused.",
    )


def _is_write(node: exp.Expr) -> bool:
    return isinstance(node, WRITE_NODES) or (isinstance(node, exp.Select) and bool(node.args.get("into")))


def _function_and_file_problems(expr: exp.Expr) -> Iterator[Problem]:
    for node in expr.walk():
        if isinstance(node, exp.Func):
            name = _forbidden_name(node)
            if name:
                yield Problem(
                    code="forbidden_function",
                    message=f"The function {name}() is not allowed: it reaches files, other databases, "
                    "the network or system state. Query the source's tables instead.",
                )
        elif isinstance(node, exp.Table) and _looks_like_path(node):
            yield Problem(
                code="file_access",
                message=f"{node.name!r} looks like a file path; queries may read only the source's "
                "tables, never files.",
            )


def _function_names(node: exp.Func) -> set[str]:
    names = {node.sql_name().lower()}
    if isinstance(node, exp.Anonymous):
        names.add(node.name.lower())
    # The name DuckDB will see: sqlglot may map a function to a class with another sql_name.
    names.add(node.sql(dialect="duckdb").split("(", 1)[0].strip().strip('"').lower())
    return names


def _forbidden_name(node: exp.Func) -> str | None:
    for name in sorted(_function_names(node)):
        if name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_PREFIXES):
            return name
    return None


def _looks_like_path(table: exp.Table) -> bool:
    if not isinstance(table.this, exp.Identifier):
        return False  # a table function; functions are judged by name
    return any(ch in _PATH_CHARACTERS for ch in table.name)


def _cte_names(expr: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in expr.find_all(exp.CTE)}


def _table_ref(table: exp.Table) -> str | None:
    """The catalog name a table reference means (`gold.fact_sales`, or `orders` for main)."""
    if not isinstance(table.this, exp.Identifier) or not table.name or _looks_like_path(table):
        return None
    schema = table.db.lower()
    if schema in METADATA_SCHEMAS:
        return None
    name = table.name.lower()
    return name if schema in ("", "main") else f"{schema}.{name}"


def _unknown_tables(expr: exp.Expr, catalog: Catalog) -> Iterator[Problem]:
    known = {t.name.lower(): t.name for t in catalog.tables}
    ctes = _cte_names(expr)
    reported: set[str] = set()
    for table in expr.find_all(exp.Table):
        ref = _table_ref(table)
        if ref is None or ref in known or ref in reported or (not table.db and ref in ctes):
            continue
        reported.add(ref)
        yield _unknown_table_problem(ref, known)


def _unknown_table_problem(ref: str, known: dict[str, str]) -> Problem:
    short = ref.rsplit(".", 1)[-1]
    same_name = [name for key, name in known.items() if key.rsplit(".", 1)[-1] == short]
    close = [known[k] for k in difflib.get_close_matches(ref, list(known), n=3, cutoff=0.6)]
    suggestions = list(dict.fromkeys(same_name + close))[:3]
    hint = f" Did you mean {' or '.join(suggestions)}?" if suggestions else ""
    listing = ", ".join(sorted(known.values())[:30]) or "none"
    return Problem(
        code="unknown_table",
        message=f"Unknown table {ref}.{hint} Known tables: {listing}.",
        suggestions=suggestions,
    )


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
