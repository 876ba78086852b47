"""Tree rules: what a parsed query may not contain, whatever the catalog.

Write and management statements anywhere in the tree, functions that reach files, the network or
system state, system objects, and tables named by a file path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from sqlglot import exp
from sqlglot.tokens import Token

from loom.engines.contracts import Problem
from loom.engines.sql.rules import DialectRules, is_forbidden

READ_ONLY_ROOTS: tuple[type[exp.Expr], ...] = (exp.Select, exp.SetOperation, exp.Values)

# Statement nodes refused anywhere in the tree (a CTE may hide `DELETE … RETURNING`). Looked up by
# name so a sqlglot release that renames one does not break the import; exp.Command is sqlglot's
# fallback for statements it does not model (LOAD, CALL, VACUUM, ADD JAR…), so it is refused too.
_WRITE_NODE_NAMES = (
    "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable", "Copy",
    "Attach", "Detach", "Install", "Pragma", "Set", "Use", "Execute", "ExecuteSql", "Command",
    "Transaction", "Commit", "Rollback", "LoadData", "Grant", "Revoke", "Refresh", "Analyze", "Cache",
    "Uncache", "Comment", "Export", "Declare", "Kill",
)  # fmt: skip
WRITE_NODES: tuple[type[exp.Expr], ...] = tuple(getattr(exp, n) for n in _WRITE_NODE_NAMES if hasattr(exp, n))

# DuckDB reads a file when a table name looks like one (`FROM '/etc/passwd'`, `FROM "x.csv"`);
# after parsing, a string literal and a quoted identifier look the same, so the name is judged.
_PATH_CHARACTERS = frozenset("/\\:~.*?")


def unique(problems: Iterable[Problem]) -> Iterator[Problem]:
    seen: set[str] = set()
    for problem in problems:
        if problem.message not in seen:
            seen.add(problem.message)
            yield problem


def write_problem(
    expr: exp.Expr, nodes: Sequence[exp.Expr], tokens: Sequence[Token], dialect: str
) -> Problem | None:
    root = expr.this if isinstance(expr, exp.Subquery) else expr
    if not isinstance(root, READ_ONLY_ROOTS):
        # Not a query at all (DBCC, LIST, a bare procedure name…): name it as the user wrote it.
        return Problem(code="not_read_only", message=not_read_only_message(tokens[0].text.upper()))
    offender = next((n for n in nodes if _is_write(n)), None)
    if offender is None:
        return None
    return Problem(code="not_read_only", message=not_read_only_message(_statement_kind(offender, dialect)))


def not_read_only_message(kind: str) -> str:
    return (
        "Only read-only queries may run (SELECT, WITH … SELECT, UNION/INTERSECT/EXCEPT, VALUES); "
        f"this query contains {kind}, which is refused."
    )


def _statement_kind(node: exp.Expr, dialect: str) -> str:
    """How a user would name the statement: its first keyword (DROP, INSERT, LOAD, PRAGMA…)."""
    if isinstance(node, exp.Select) and node.args.get("into"):
        return "SELECT … INTO"
    words = node.sql(dialect=dialect).split(maxsplit=1)
    return words[0].upper() if words else type(node).__name__.upper()


def _is_write(node: exp.Expr) -> bool:
    return isinstance(node, WRITE_NODES) or (isinstance(node, exp.Select) and bool(node.args.get("into")))


def access_problems(nodes: Sequence[exp.Expr], rules: DialectRules) -> Iterator[Problem]:
    for node in nodes:
        problem = _problem_of(node, rules)
        if problem is not None:
            yield problem


def _problem_of(node: exp.Expr, rules: DialectRules) -> Problem | None:
    if isinstance(node, exp.Func):
        name = _forbidden_name(node, rules)
        return Problem(code="forbidden_function", message=forbidden_message(name)) if name else None
    if isinstance(node, exp.Table):
        return _table_access_problem(node, rules)
    if isinstance(node, exp.Lateral) and isinstance(node.this, exp.Func):  # `, LATERAL f(…)`
        return _table_function_problem(node.this, rules)
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
        return _dot_call_problem(node, node.expression, rules)
    if isinstance(node, exp.DataType) and _type_name(node) in rules.forbidden_types:
        return Problem(
            code="forbidden_type",
            message=f"{_type_name(node)} values are not allowed: converting long text into one takes "
            "time no limit can stop. Use BIGINT, HUGEINT or DECIMAL.",
        )
    return None


def _dot_call_problem(node: exp.Dot, function: exp.Func, rules: DialectRules) -> Problem | None:
    owner = node.this.name.lower() if isinstance(node.this, exp.Identifier | exp.Column) else ""
    if owner in rules.system_schemas:  # `sys.fn_…(…)` in a SELECT list
        return _system_problem(f"{owner}.{function.name}")
    if rules.dot_calls:
        return None
    return Problem(
        code="forbidden_syntax",
        message=f"Call {function.name}() as {function.name}(x, …): calls written x.f(…) or "
        "schema.f(…) are not allowed.",
    )


def _type_name(node: exp.DataType) -> str:
    kind = node.args.get("kind")
    return str(kind).upper() if kind else node.this.name.upper() if hasattr(node.this, "name") else ""


def forbidden_message(name: str) -> str:
    return (
        f"The function {name}() is not allowed: it reaches files, other databases, the network or "
        "system state. Query the source's tables instead."
    )


def _forbidden_name(node: exp.Func, rules: DialectRules) -> str | None:
    # The name in the query's own dialect; the engine re-checks the DuckDB SQL it will run with
    # DuckDB's rules, so a function that transpiles into a DuckDB reader is caught there.
    names = {node.sql_name().lower()}
    if isinstance(node, exp.Anonymous):
        names.add(node.name.lower())
    return next((name for name in sorted(names) if is_forbidden(name, rules)), None)


def _table_access_problem(table: exp.Table, rules: DialectRules) -> Problem | None:
    schema, catalog, name = table.db.lower(), table.catalog.lower(), table.name.lower()
    if f"{schema or 'main'}.{name}" in rules.definitions:
        return Problem(
            code="system_object",
            message=f"{table.sql()} holds views' definitions, not data; ask about the tables themselves.",
        )
    if schema in rules.system_schemas or catalog in rules.system_catalogs or name in rules.system_tables:
        name = table.name or table.this.name  # a table function has no name of its own
        return _system_problem(".".join(p for p in (table.catalog, table.db, name) if p))
    if isinstance(table.this, exp.Func):
        return _table_function_problem(table.this, rules)
    if not isinstance(table.this, exp.Identifier):
        return None
    if rules.function_tables and is_forbidden(name, rules):
        return Problem(code="forbidden_function", message=forbidden_message(name))
    if schema in rules.path_schemas:
        return Problem(
            code="file_access",
            message=f"{table.db}.`{table.name}` reads the path {table.name!r} as a {table.db} file; "
            "queries may read only the source's tables, never files.",
        )
    if looks_like_path(table):
        return Problem(
            code="file_access",
            message=f"{table.name!r} looks like a file path; queries may read only the source's tables, "
            "never files.",
        )
    return None


def _table_function_problem(function: exp.Func, rules: DialectRules) -> Problem | None:
    """A function called in FROM, judged by name like any function and, where the dialect keeps a
    list of the table functions a query may call, refused when it is not on it."""
    name = function.name.lower() if isinstance(function, exp.Anonymous) else function.sql_name().lower()
    if rules.table_functions is None or name in rules.table_functions or is_forbidden(name, rules):
        return None  # allowed, or refused by name with the other functions of the tree
    allowed = ", ".join(sorted(f for f in rules.table_functions if not f.startswith("duckdb_")))
    return Problem(
        code="forbidden_function",
        message=f"The table function {name}() is not allowed: in FROM a query may call only {allowed}, "
        "besides the source's tables.",
    )


def _system_problem(name: str) -> Problem:
    return Problem(
        code="system_object",
        message=f"{name} is a system object; queries may read only the source's own tables "
        "(their names and columns are in the catalog).",
    )


def looks_like_path(table: exp.Table) -> bool:
    return isinstance(table.this, exp.Identifier) and any(ch in _PATH_CHARACTERS for ch in table.name)
