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
"""

from __future__ import annotations

import datetime as dt
import difflib
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.tokens import Token, TokenType

from loom.engines.contracts import Catalog, Problem, QueryError, TableInfo

DIALECTS = ("duckdb", "tsql", "databricks", "sqlite", "spark")

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

# Input limits. sqlglot's parser recurses ~24 Python frames per nesting level and fails near 40
# levels at the default recursion limit; the caller's own stack counts too, so 20 leaves room. Gold
# benchmark queries reach depth 7, 123 tokens and 819 characters: the limits are far above real use
# and keep the worst case to a few milliseconds.
MAX_QUERY_CHARS = 20_000
MAX_TOKENS = 5_000
MAX_NESTING = 20

# --- what each dialect refuses (data, not branches) ----------------------------------------------


@dataclass(frozen=True)
class DialectRules:
    """What one dialect may not do, and how it names things."""

    functions: frozenset[str] = frozenset()  # refused by exact (lower-case) name
    prefixes: tuple[str, ...] = ()  # refused families (`read_…`)
    path_schemas: frozenset[str] = frozenset()  # `parquet.`/x``: the "schema" is a file format
    system_schemas: frozenset[str] = frozenset()  # `sys.objects`
    system_catalogs: frozenset[str] = frozenset()  # `master.dbo.x`, `master..x`
    system_tables: frozenset[str] = frozenset()  # system views, in whatever schema
    function_tables: bool = False  # a bare name may call a table function (`FROM pragma_x`)
    default_schemas: frozenset[str] = frozenset()  # omitted from catalog names (`main.t` is `t`)
    pseudo_columns: frozenset[str] = frozenset()  # exist on every table without being listed
    double_quoted_strings: bool = False  # SQLite reads an unresolved "x" as the string 'x'


# Refused in every dialect: never a legitimate name elsewhere, and refusing them everywhere means a
# query transpiled from T-SQL cannot carry one through. OPENROWSET is refused outright, whatever the
# path: on Synapse Serverless the connector exposes views over OPENROWSET as tables, so a data
# question never needs it, and an OPENROWSET written by a model could read any path or URL the
# workspace identity can reach.
COMMON_FUNCTIONS = frozenset({"openrowset", "opendatasource", "openquery", "openxml"})
COMMON_PREFIXES = ("xp_",)

# `query`/`query_table` run SQL given as a string, which would bypass this validator; the duckdb_*
# ones listed reveal host paths and secrets; `arrow_scan` dereferences a raw memory pointer. Allowed
# on purpose: duckdb_tables/duckdb_columns/duckdb_views (they describe only the queryable catalog)
# and current_setting (one named setting; the configuration is locked, so it can only be read).
# Every `read_*` is a file reader (csv, json, parquet, text, blob, xlsx…); the other families
# scan files or other databases; `pragma_*` table functions show the database file paths.
DUCKDB = DialectRules(
    functions=COMMON_FUNCTIONS | frozenset({
        "glob", "getenv", "query", "query_table", "sniff_csv", "st_read", "st_read_meta",
        "st_readosm", "load_aws_credentials", "duckdb_secrets", "which_secret", "duckdb_extensions",
        "duckdb_settings", "duckdb_databases", "duckdb_temporary_files", "json_execute_serialized_sql",
        "checkpoint", "force_checkpoint", "arrow_scan", "arrow_scan_dumb", "load_extension",
    }),
    prefixes=COMMON_PREFIXES + (
        "read_", "parquet_", "delta_", "iceberg_", "sqlite_", "postgres_", "mysql_", "http_",
        "pragma_", "ducklake_", "azure_",
    ),
    system_tables=frozenset({"pragma_database_list", "duckdb_databases", "duckdb_logs", "pg_settings"}),
    default_schemas=frozenset({"main"}),
    pseudo_columns=frozenset({"rowid"}),
)  # fmt: skip

# `sp_`/`xp_` are SQL Server system procedures; the fn_ functions listed read trace, audit or log
# files. `sys` and the system databases describe the server, not the data: refused.
TSQL = DialectRules(
    functions=COMMON_FUNCTIONS | frozenset({
        "fn_get_audit_file", "fn_xe_file_target_read_file", "fn_dblog", "fn_dump_dblog",
        "fn_trace_gettable", "fn_virtualfilestats",
    }),
    prefixes=COMMON_PREFIXES + ("sp_",),
    system_schemas=frozenset({"sys"}),
    system_catalogs=frozenset({"master", "msdb", "tempdb", "model", "mssqlsystemresource"}),
    default_schemas=frozenset({"dbo"}),
    pseudo_columns=frozenset({"$identity", "$rowguid"}),
)  # fmt: skip

# Every `read_*` (read_files, read_kafka, read_kinesis…) reads files or streams; java_method and
# reflect call arbitrary JVM methods; the ai_* functions and http_request reach the network; the
# `system` catalog holds audit logs and billing. `parquet.`/path`` & co. read a path as a table.
DATABRICKS = DialectRules(
    functions=COMMON_FUNCTIONS | frozenset({
        "java_method", "reflect", "try_reflect", "http_request", "secret", "try_secret",
        "list_secrets", "cloud_files_state", "vector_search",
    }),
    prefixes=COMMON_PREFIXES + ("read_", "ai_"),
    path_schemas=frozenset({
        "csv", "parquet", "delta", "json", "text", "orc", "avro", "binaryfile", "xml", "jdbc",
        "libsvm", "image",
    }),
    system_catalogs=frozenset({"system"}),
    default_schemas=frozenset({"default"}),
    pseudo_columns=frozenset({"_metadata"}),
)  # fmt: skip

# load_extension runs native code; readfile/writefile/edit/fsdir/zipfile come from the fileio
# extensions; fts3_tokenizer has been a memory-corruption vector; sqlite_dbpage and dbstat read raw
# pages. SQLite also calls a table-valued function by its bare name (`FROM pragma_database_list`),
# so table names are judged by these rules too.
SQLITE = DialectRules(
    functions=COMMON_FUNCTIONS | frozenset({
        "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "fsdir", "zipfile",
        "sqlar_compress", "sqlar_uncompress", "sqlite_dbpage", "dbstat",
    }),
    prefixes=COMMON_PREFIXES + ("pragma_",),
    function_tables=True,
    default_schemas=frozenset({"main"}),
    pseudo_columns=frozenset({"rowid", "oid", "_rowid_"}),
    double_quoted_strings=True,
)  # fmt: skip

RULES: dict[str, DialectRules] = {
    "duckdb": DUCKDB,
    "tsql": TSQL,
    "databricks": DATABRICKS,
    "spark": DATABRICKS,
    "sqlite": SQLITE,
}

# Words that begin a statement sqlglot may not parse at all (WAITFOR, BULK INSERT, EXPORT…): when
# parsing fails on one, the answer is "not read-only", which tells the model more than a syntax error.
_STATEMENT_WORDS = frozenset({
    "add", "alter", "analyze", "attach", "backup", "begin", "bulk", "cache", "call", "checkpoint",
    "clear", "copy", "create", "dbcc", "deallocate", "declare", "delete", "deny", "detach", "drop",
    "exec", "execute", "export", "fsck", "grant", "import", "insert", "install", "kill", "list",
    "load", "merge", "msck", "optimize", "pragma", "reconfigure", "refresh", "reset", "restore",
    "revoke", "set", "shutdown", "truncate", "uncache", "update", "use", "vacuum", "waitfor",
})  # fmt: skip

# DuckDB reads a file when a table name looks like one (`FROM '/etc/passwd'`, `FROM "x.csv"`);
# after parsing, a string literal and a quoted identifier look the same, so the name is judged.
_PATH_CHARACTERS = frozenset("/\\:~.*?")

METADATA_SCHEMAS = frozenset({"information_schema", "pg_catalog"})

_STRING_TOKENS = frozenset(t for t in TokenType if t.name.endswith("STRING"))
_OPENERS = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE})
_CLOSERS = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END})

# Letters that look like ASCII ones (Cyrillic and Greek); NFKC already folds fullwidth forms.
_HOMOGLYPHS = str.maketrans(
    "АВЕЅІЈКМНОРСТХУаеіјосрхуѕԁһӏΑΒΕΖΗΙΚΜΝΟΡΤΥΧοικνρτυχ",
    "ABESIJKMHOPCTXYaeijocpxysdhlABEZHIKMNOPTYXoikvptux",
)


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


# --- tokens: what must be refused before parsing ----------------------------------------------


def _parse(query: str, dialect: str) -> tuple[exp.Expr, list[Token]]:
    if dialect not in DIALECTS:
        raise QueryError(
            "unsupported_dialect", f"Unsupported SQL dialect {dialect!r}; use one of: {', '.join(DIALECTS)}."
        )
    if len(query) > MAX_QUERY_CHARS:
        raise _too_complex(f"it has {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    reader = Dialect.get_or_raise(dialect)
    tokens = _tokenize(reader, query, dialect)
    _screen_tokens(tokens)
    statements = _split_statements(tokens)
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


def _screen_tokens(tokens: Sequence[Token]) -> None:
    if len(tokens) > MAX_TOKENS:
        raise _too_complex(f"it has {len(tokens):,} tokens; the limit is {MAX_TOKENS:,}")
    depth = 0
    for token in tokens:
        if token.token_type in _OPENERS:
            depth += 1
            if depth > MAX_NESTING:
                raise _too_complex(
                    f"it nests parentheses or CASE more than {MAX_NESTING} deep, at line {token.line}"
                )
        elif token.token_type in _CLOSERS:
            depth -= 1
        if token.token_type not in _STRING_TOKENS and not token.text.isascii():
            _screen_characters(token)


def _screen_characters(token: Token) -> None:
    """Invisible and look-alike characters outside string literals: they make the text a person reads
    differ from the text a parser reads, so the query is refused with where and what they are. Inside
    a quoted name a look-alike is only a name (`"area_m²"`), so only invisible ones count there."""
    quoted = token.token_type == TokenType.IDENTIFIER
    for ch in token.text:
        if unicodedata.category(ch) in ("Cf", "Cc", "Zl", "Zp"):
            raise _bad_character(token, ch, "an invisible character")
        folded = unicodedata.normalize("NFKC", ch)
        if not quoted and folded != ch and folded.isascii():
            raise _bad_character(token, ch, f"a look-alike of {folded!r}")
    skeleton = token.text.translate(_HOMOGLYPHS)
    if not quoted and skeleton != token.text and (skeleton.isascii() or _mixes_scripts(token.text)):
        raise QueryError(
            "parse_error",
            f"{token.text!r} at line {token.line}, column {token.col} mixes look-alike letters from "
            f"another alphabet (it reads like {skeleton!r}); write SQL keywords and names in plain "
            "letters, and double-quote a name that really is spelled this way.",
        )


def _mixes_scripts(word: str) -> bool:
    scripts = {unicodedata.name(ch, "?").split(" ", 1)[0] for ch in word if ch.isalpha()}
    return len(scripts) > 1


def _bad_character(token: Token, ch: str, what: str) -> QueryError:
    name = unicodedata.name(ch, "unnamed")
    return QueryError(
        "parse_error",
        f"The query contains U+{ord(ch):04X} {name}, {what}, at line {token.line}, column {token.col}; "
        "retype the query in plain text.",
    )


def _too_complex(why: str) -> QueryError:
    return QueryError(
        "too_complex",
        f"The query is too large or too deeply nested to check ({why}). Write a shorter query: "
        "name intermediate results with WITH, and filter or aggregate in fewer steps.",
    )


def _split_statements(tokens: Sequence[Token]) -> list[list[Token]]:
    """Statements separated by `;` at the token level, so a second one is refused before parsing."""
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def _parse_tokens(reader: Dialect, tokens: list[Token], query: str, dialect: str) -> exp.Expr:
    try:
        parsed = reader.parser().parse(tokens, query)
    except ParseError as e:
        raise _token_refusal(tokens, dialect) or QueryError("parse_error", _parse_message(e, dialect)) from e
    except SqlglotError as e:
        raise QueryError("parse_error", f"Could not parse the SQL ({dialect}): {e}") from e
    except RecursionError as e:  # nesting the token screen did not count (NOT NOT NOT …)
        raise _too_complex("the parser ran out of stack") from e
    statement = next((s for s in parsed if s is not None), None)
    if statement is None:
        raise QueryError("parse_error", "The query is empty: send one SELECT statement.")
    return statement


def _token_refusal(tokens: Sequence[Token], dialect: str) -> QueryError | None:
    """A refusal more useful than "syntax error" for text sqlglot cannot parse: a statement that is
    not a query (`WAITFOR DELAY …`), or a forbidden function (`OPENROWSET(BULK …)`)."""
    first = next((t.text.lower() for t in tokens if t.token_type != TokenType.L_PAREN), "")
    if first in _STATEMENT_WORDS:
        return QueryError("not_read_only", _not_read_only_message(first.upper()))
    rules = RULES[dialect]
    for token, following in zip(tokens, tokens[1:], strict=False):
        if following.token_type == TokenType.L_PAREN and _is_forbidden(token.text.lower(), rules):
            return QueryError("forbidden_function", _forbidden_message(token.text.lower()))
    return None


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
    write = _write_problem(expr, nodes, tokens, dialect)
    if write is not None:
        yield write
        return  # a refused statement's tables and functions are beside the point
    yield from _unique(_access_problems(nodes, rules))
    if catalog is not None:
        names = _CatalogNames(catalog, rules)
        yield from _unknown_tables(nodes, names)
        if names.has_columns:
            yield from _unknown_columns(expr, names, rules)


def _unique(problems: Iterable[Problem]) -> Iterator[Problem]:
    seen: set[str] = set()
    for problem in problems:
        if problem.message not in seen:
            seen.add(problem.message)
            yield problem


def _write_problem(
    expr: exp.Expr, nodes: Sequence[exp.Expr], tokens: Sequence[Token], dialect: str
) -> Problem | None:
    root = expr.this if isinstance(expr, exp.Subquery) else expr
    if not isinstance(root, READ_ONLY_ROOTS):
        # Not a query at all (DBCC, LIST, a bare procedure name…): name it as the user wrote it.
        return Problem(code="not_read_only", message=_not_read_only_message(tokens[0].text.upper()))
    offender = next((n for n in nodes if _is_write(n)), None)
    if offender is None:
        return None
    return Problem(code="not_read_only", message=_not_read_only_message(_statement_kind(offender, dialect)))


def _not_read_only_message(kind: str) -> str:
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


def _access_problems(nodes: Sequence[exp.Expr], rules: DialectRules) -> Iterator[Problem]:
    for node in nodes:
        if isinstance(node, exp.Func):
            name = _forbidden_name(node, rules)
            if name:
                yield Problem(code="forbidden_function", message=_forbidden_message(name))
        elif isinstance(node, exp.Table):
            problem = _table_access_problem(node, rules)
            if problem is not None:
                yield problem
        elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            owner = node.this.name.lower() if isinstance(node.this, exp.Identifier | exp.Column) else ""
            if owner in rules.system_schemas:  # `sys.fn_…(…)` in a SELECT list
                yield _system_problem(f"{owner}.{node.expression.name}")


def _forbidden_message(name: str) -> str:
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
    return next((name for name in sorted(names) if _is_forbidden(name, rules)), None)


def _is_forbidden(name: str, rules: DialectRules) -> bool:
    return name in rules.functions or name.startswith(rules.prefixes)


def _table_access_problem(table: exp.Table, rules: DialectRules) -> Problem | None:
    schema, catalog, name = table.db.lower(), table.catalog.lower(), table.name.lower()
    if schema in rules.system_schemas or catalog in rules.system_catalogs or name in rules.system_tables:
        name = table.name or table.this.name  # a table function has no name of its own
        return _system_problem(".".join(p for p in (table.catalog, table.db, name) if p))
    if not isinstance(table.this, exp.Identifier):
        return None  # a table function; functions are judged by name
    if rules.function_tables and _is_forbidden(name, rules):
        return Problem(code="forbidden_function", message=_forbidden_message(name))
    if schema in rules.path_schemas:
        return Problem(
            code="file_access",
            message=f"{table.db}.`{table.name}` reads the path {table.name!r} as a {table.db} file; "
            "queries may read only the source's tables, never files.",
        )
    if _looks_like_path(table):
        return Problem(
            code="file_access",
            message=f"{table.name!r} looks like a file path; queries may read only the source's tables, "
            "never files.",
        )
    return None


def _system_problem(name: str) -> Problem:
    return Problem(
        code="system_object",
        message=f"{name} is a system object; queries may read only the source's own tables "
        "(their names and columns are in the catalog).",
    )


def _looks_like_path(table: exp.Table) -> bool:
    return isinstance(table.this, exp.Identifier) and any(ch in _PATH_CHARACTERS for ch in table.name)


# --- catalog: unknown tables ----------------------------------------------------------------------


@dataclass
class _CatalogNames:
    """The catalog's tables by lower-case name, as a dialect's table references resolve to them."""

    catalog: Catalog
    rules: DialectRules
    tables: dict[str, TableInfo] = field(init=False)
    has_columns: bool = field(init=False)

    def __post_init__(self) -> None:
        self.tables = {t.name.lower(): t for t in self.catalog.tables}
        self.has_columns = any(t.columns for t in self.catalog.tables)

    def ref(self, table: exp.Table) -> str | None:
        """The catalog name a table reference means (`gold.fact_sales`, or `orders` for main.orders);
        None for what is not a catalog table (functions, paths, metadata schemas)."""
        if not isinstance(table.this, exp.Identifier) or not table.name or _looks_like_path(table):
            return None
        schema = table.db.lower()
        if schema in METADATA_SCHEMAS:
            return None
        name = table.name.lower()
        if schema in ("", *self.rules.default_schemas):
            return name
        full = f"{table.catalog.lower()}.{schema}.{name}"
        return full if table.catalog and full in self.tables else f"{schema}.{name}"

    def table(self, table: exp.Table) -> TableInfo | None:
        ref = self.ref(table)
        return None if ref is None else self.tables.get(ref)


def _unknown_tables(nodes: Sequence[exp.Expr], names: _CatalogNames) -> Iterator[Problem]:
    ctes = {n.alias_or_name.lower() for n in nodes if isinstance(n, exp.CTE)}
    reported: set[str] = set()
    for table in (n for n in nodes if isinstance(n, exp.Table)):
        ref = names.ref(table)
        if ref is None or ref in names.tables or ref in reported or (not table.db and ref in ctes):
            continue
        reported.add(ref)
        yield _unknown_table_problem(ref, names.tables)


def _unknown_table_problem(ref: str, known: dict[str, TableInfo]) -> Problem:
    short = ref.rsplit(".", 1)[-1]
    same_name = [t.name for key, t in known.items() if key.rsplit(".", 1)[-1] == short]
    close = [known[k].name for k in difflib.get_close_matches(ref, list(known), n=3, cutoff=0.6)]
    suggestions = list(dict.fromkeys(same_name + close))[:3]
    hint = f" Did you mean {' or '.join(suggestions)}?" if suggestions else ""
    listing = ", ".join(sorted(t.name for t in known.values())[:30]) or "none"
    return Problem(
        code="unknown_table",
        message=f"Unknown table {ref}.{hint} Known tables: {listing}.",
        suggestions=suggestions,
    )


# --- catalog: unknown columns ---------------------------------------------------------------------
#
# Columns are resolved through sqlglot's scopes (aliases, CTEs, derived tables, correlated
# subqueries), never by matching text. Whenever a name could mean something the catalog does not
# describe — a select alias, a struct field, a table function's or a pivot's output, a CTE with
# `SELECT *` — nothing is reported: the engine's own binder error is the fallback, and a false
# "unknown column" would send the model to repair a correct query.


@dataclass(frozen=True)
class _Source:
    """A FROM item as a column owner: its display name and columns (None when they are unknown)."""

    name: str
    columns: frozenset[str] | None


def _unknown_columns(expr: exp.Expr, names: _CatalogNames, rules: DialectRules) -> Iterator[Problem]:
    try:
        scopes = traverse_scope(expr)
    except (SqlglotError, RecursionError):
        return  # a tree sqlglot cannot scope: leave it to the engine
    resolver = _ColumnResolver(names, rules)
    problems = (
        resolver.problem(column, scope)
        for scope in scopes
        if isinstance(scope.expression, exp.Select)  # a set operation's ORDER BY names its output
        for column in _own_columns(scope)
    )
    yield from _unique(p for p in problems if p is not None)


def _own_columns(scope: Scope) -> list[exp.Column]:
    own = scope.column_index
    return [
        c for c in scope.columns if id(c) in own and not c.args.get("db") and not c.find_ancestor(exp.Lambda)
    ]


class _ColumnResolver:
    """Decides, for one column reference, whether the catalog proves it does not exist."""

    def __init__(self, names: _CatalogNames, rules: DialectRules) -> None:
        self.names = names
        self.rules = rules
        self._sources: dict[int, dict[str, _Source]] = {}

    def problem(self, column: exp.Column, scope: Scope) -> Problem | None:
        name = column.name.lower()
        if name in self.rules.pseudo_columns:
            return None
        chain = _visible_scopes(scope)
        if column.table:
            source = self._qualified(column.table.lower(), chain)
            if source is None or source.columns is None or name in source.columns:
                return None
            return _unknown_column_problem(column.name, [source])
        if self._is_alias_or_string(column, scope, chain):
            return None
        sources = [s for sc in chain for s in self.sources(sc).values()]
        if not sources or any(s.columns is None or name in s.columns for s in sources):
            return None
        return _unknown_column_problem(column.name, sources)

    def _qualified(self, alias: str, chain: Sequence[Scope]) -> _Source | None:
        for scope in chain:
            source = self.sources(scope).get(alias)
            if source is not None:
                return source
        return None  # not a FROM item: a struct column's field (`address.city`), say

    def _is_alias_or_string(self, column: exp.Column, scope: Scope, chain: Sequence[Scope]) -> bool:
        name = column.name.lower()
        if _names_an_alias(column, scope.expression):
            return True  # a select alias, usable in WHERE/GROUP BY/QUALIFY in DuckDB
        if any(name in self.sources(sc) for sc in chain):
            return True  # DuckDB reads a bare table name as the whole row
        quoted = isinstance(column.this, exp.Identifier) and bool(column.this.quoted)
        return self.rules.double_quoted_strings and quoted

    def sources(self, scope: Scope) -> dict[str, _Source]:
        cached = self._sources.get(id(scope))
        if cached is None:
            cached = {
                alias.lower(): self._describe(alias, node, source)
                for alias, (node, source) in scope.selected_sources.items()
            }
            for alias in scope.sources:  # LATERAL VIEW and other items outside the FROM list
                cached.setdefault(alias.lower(), _Source(alias, None))
            self._sources[id(scope)] = cached
        return cached

    def _describe(self, alias: str, node: exp.Expr, source: exp.Expr | Scope) -> _Source:
        renamed = _alias_columns(node)
        if renamed is not None:
            return _Source(alias, renamed)
        if isinstance(source, exp.Table):
            return self._table(source)
        if isinstance(source, Scope):
            return _Source(alias, _scope_columns(source))
        return _Source(alias, None)

    def _table(self, table: exp.Table) -> _Source:
        info = self.names.table(table)
        if info is None or not info.columns or table.args.get("pivots"):
            return _Source(table.alias_or_name, None)
        return _Source(info.name, frozenset(c.name.lower() for c in info.columns))


def _names_an_alias(column: exp.Column, query: exp.Expr) -> bool:
    """Whether the column names another select item's alias (`SELECT a AS x, x + 1`); an alias
    cannot name itself, so the column inside `revenue AS revenue` still means a table column."""
    name = column.name.lower()
    for item in query.expressions if isinstance(query, exp.Select) else ():
        if isinstance(item, exp.Alias) and item.alias.lower() == name:
            owner = column.find_ancestor(exp.Alias)
            return owner is not item
    return False


def _visible_scopes(scope: Scope) -> list[Scope]:
    """The scope, then the outer ones a correlated subquery or a lateral item can refer to."""
    chain = [scope]
    while (scope.is_subquery or scope.is_udtf or scope.is_derived_table) and scope.parent is not None:
        scope = scope.parent
        chain.append(scope)
    return chain


def _alias_columns(node: exp.Expr) -> frozenset[str] | None:
    """`FROM t AS x(a, b)` or `WITH c(a, b) AS …`: the alias renames the columns."""
    alias = node.args.get("alias")
    if isinstance(alias, exp.TableAlias) and alias.columns:
        return frozenset(c.name.lower() for c in alias.columns)
    return None


def _scope_columns(scope: Scope) -> frozenset[str] | None:
    """The output names of a CTE or derived table, when every one is known."""
    query = scope.expression
    owner = query.parent
    if isinstance(owner, exp.CTE | exp.Subquery):
        renamed = _alias_columns(owner)
        if renamed is not None:
            return renamed
    if not isinstance(query, exp.Query):
        return None  # VALUES, UNNEST, LATERAL VIEW…
    selects = query.selects
    named = query.named_selects
    if len(named) != len(selects) or any(s.is_star for s in selects):
        return None
    return frozenset(n.lower() for n in named)


def _unknown_column_problem(name: str, sources: Sequence[_Source]) -> Problem:
    known = sorted({c for s in sources for c in s.columns or ()})
    suggestions = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    owners = list(dict.fromkeys(s.name for s in sources))
    if len(owners) == 1:
        where = f"{owners[0]} has no column {name!r}"
    else:
        where = f"no table in this query ({', '.join(owners)}) has a column {name!r}"
    hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else "."
    listing = ", ".join(known[:40])
    return Problem(
        code="unknown_column",
        message=f"Unknown column: {where}{hint} Columns available: {listing}.",
        suggestions=suggestions,
    )


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
