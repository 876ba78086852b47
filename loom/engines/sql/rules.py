"""What each dialect refuses, as data rather than branches.

The validator's deny-lists: functions and function families, system objects and path-reading
schemas per dialect, plus how each dialect names things (default schemas, pseudo-columns), which the
catalog checks need. A new dialect is a new record in `RULES`, not a new `if`.
"""

from __future__ import annotations

from dataclasses import dataclass

DIALECTS = ("duckdb", "tsql", "databricks", "sqlite", "spark")


@dataclass(frozen=True)
class DialectRules:
    """What one dialect may not do, and how it names things."""

    functions: frozenset[str] = frozenset()  # refused by exact (lower-case) name
    prefixes: tuple[str, ...] = ()  # refused families (`read_…`)
    allowed: frozenset[str] = frozenset()  # members of a refused family that are kept on purpose
    path_schemas: frozenset[str] = frozenset()  # `parquet.`/x``: the "schema" is a file format
    system_schemas: frozenset[str] = frozenset()  # `sys.objects`
    system_catalogs: frozenset[str] = frozenset()  # `master.dbo.x`, `master..x`
    system_tables: frozenset[str] = frozenset()  # system views, in whatever schema
    # Views of view definitions, in every dialect: a view's SQL is not data, and it names the paths
    # and servers the view reads (a broken view the catalog left out, too). `schema.name`.
    definitions: frozenset[str] = frozenset(
        {"information_schema.views", "main.sqlite_master", "main.sqlite_schema", "main.sqlite_temp_master"}
    )
    function_tables: bool = False  # a bare name may call a table function (`FROM pragma_x`)
    table_functions: frozenset[str] | None = None  # the only functions allowed in FROM (None: any)
    dot_calls: bool = True  # `x.f(…)`/`schema.f(…)` may call a function (judged by its name alone)
    forbidden_types: frozenset[str] = frozenset()  # types a query may not cast to or build
    default_schemas: frozenset[str] = frozenset()  # omitted from catalog names (`main.t` is `t`)
    pseudo_columns: frozenset[str] = frozenset()  # exist on every table without being listed
    double_quoted_strings: bool = False  # SQLite reads an unresolved "x" as the string 'x'


# Refused in every dialect: never a legitimate name elsewhere, and refusing them everywhere means a
# query transpiled from T-SQL cannot carry one through. OPENROWSET is refused outright, whatever the
# path: on Synapse Serverless the connector exposes views over OPENROWSET as tables, so a data
# question never needs it, and an OPENROWSET written by a model could read any path or URL the
# workspace identity can reach.
# DuckDB's `json_*_sql`/`json_serialize_plan` family parses, plans or runs SQL given as a string (a
# plan optimized with constants folded carried `current_setting(…)`'s value out): refused in every
# dialect, so that none reaches the embedded engine through a translation.
COMMON_FUNCTIONS = frozenset({
    "openrowset", "opendatasource", "openquery", "openxml",
    "json_serialize_plan", "json_serialize_sql", "json_deserialize_sql", "json_execute_serialized_sql",
    "version", "current_version",  # the engine's version (sqlglot reads DuckDB's as CURRENT_VERSION)
})  # fmt: skip
COMMON_PREFIXES = ("xp_",)

# `query`/`query_table` run SQL given as a string, which would bypass this validator; `arrow_scan`
# dereferences a raw memory pointer. Server state is not the data's: the `duckdb_*` family (memory,
# logs, settings, secrets, databases with their paths, variables…) is refused but for the functions
# that describe only the queryable catalog, and so are `current_setting` (it names the secret
# directory), `current_query` and `getvariable`. Every `read_*` is a file reader (csv, json,
# parquet, text, blob, xlsx…); the other families scan files or other databases; `pragma_*` table
# functions show the database file paths.
DUCKDB = DialectRules(
    functions=COMMON_FUNCTIONS | frozenset({
        "glob", "getenv", "query", "query_table", "sniff_csv", "st_read", "st_read_meta",
        "st_readosm", "load_aws_credentials", "which_secret",
        "checkpoint", "force_checkpoint", "arrow_scan", "arrow_scan_dumb", "load_extension",
        "current_setting", "current_query", "getvariable",
        "current_database", "current_catalog",  # the database file's name
        "pg_get_viewdef",  # a view's SQL, over duckdb_views()
    }),
    prefixes=COMMON_PREFIXES + (
        "read_", "parquet_", "delta_", "iceberg_", "sqlite_", "postgres_", "mysql_", "http_",
        "pragma_", "ducklake_", "azure_", "duckdb_",
    ),
    allowed=frozenset({
        "duckdb_tables", "duckdb_columns", "duckdb_schemas", "duckdb_constraints",
        "duckdb_types", "duckdb_functions", "duckdb_keywords",
    }),
    # DuckDB keeps adding table functions, and many are not about the data: `histogram('pg_settings',
    # …)` reads any table named in a string, `truncate_duckdb_logs()` changes server state,
    # `duckdb_views()` shows view SQL with file paths. So in FROM only these may be called.
    table_functions=frozenset({
        "range", "generate_series", "unnest", "generate_subscripts",
        "duckdb_tables", "duckdb_columns", "duckdb_schemas", "duckdb_constraints",
        "duckdb_types", "duckdb_functions", "duckdb_keywords",
    }),
    system_schemas=frozenset({"pg_catalog"}),
    # `'x'.repeat(n)` and `main.repeat(…)` are calls the checks on repeat() would not see.
    dot_calls=False,
    # Parsing a long text into an arbitrary-precision integer takes quadratic time and ignores the
    # interrupt (3 million digits: 45 s past a 5 s limit); no question about data needs one.
    forbidden_types=frozenset({"VARINT", "BIGNUM"}),
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


def is_forbidden(name: str, rules: DialectRules) -> bool:
    if name in rules.allowed:
        return False
    return name in rules.functions or name.startswith(rules.prefixes)
