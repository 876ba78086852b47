"""The read-only validator: hostile SQL is refused by parsing, legitimate analytics passes."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from loom.engines.contracts import Catalog, ColumnInfo, QueryError, TableInfo
from loom.engines.sql.validator import (
    DIALECTS,
    MAX_NESTING,
    MAX_QUERY_CHARS,
    MAX_TOKENS,
    RULES,
    apply_row_cap,
    parse_read_only,
    parse_sql,
    pin_now,
    transpile,
    validate_sql,
)

REFUSALS = {
    "parse_error", "multiple_statements", "not_read_only", "forbidden_function", "file_access",
    "system_object", "too_complex",
}  # fmt: skip

# (query, dialect, the code it must be refused with, or None for "any refusal")
HOSTILE = [
    # Server state, not data (issue 8): settings name the secret directory; logs, memory, variables.
    ("SELECT current_setting('secret_directory')", "duckdb", "forbidden_function"),
    ("SELECT current_query()", "duckdb", "forbidden_function"),
    ("SELECT getvariable('token')", "duckdb", "forbidden_function"),
    ("SELECT * FROM duckdb_memory()", "duckdb", "forbidden_function"),
    ("SELECT * FROM duckdb_logs()", "duckdb", None),
    ("SELECT * FROM duckdb_variables()", "duckdb", "forbidden_function"),
    ("SELECT * FROM duckdb_settings()", "duckdb", "forbidden_function"),
    ("SELECT 1; DROP TABLE x", "duckdb", "multiple_statements"),
    ("SeLeCt 1 /* */; dRoP table t", "duckdb", "multiple_statements"),
    ("SELECT 1 -- harmless\n; DELETE FROM t", "duckdb", "multiple_statements"),
    ("DROP TABLE gold.fact_sales", "duckdb", "not_read_only"),
    ("drop view v", "duckdb", "not_read_only"),
    ("INSERT INTO t VALUES (1)", "duckdb", "not_read_only"),
    ("INSERT INTO t SELECT * FROM s", "duckdb", "not_read_only"),
    ("UPDATE t SET a = 1", "duckdb", "not_read_only"),
    ("DELETE FROM t", "duckdb", "not_read_only"),
    ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", "duckdb", "not_read_only"),
    ("CREATE TABLE x AS SELECT 1", "duckdb", "not_read_only"),
    ("CREATE MACRO m(a) AS a + 1", "duckdb", "not_read_only"),
    ("CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'x')", "duckdb", "not_read_only"),
    ("ALTER TABLE t ADD COLUMN x INT", "duckdb", "not_read_only"),
    ("TRUNCATE TABLE t", "duckdb", "not_read_only"),
    ("COPY t TO '/tmp/out.csv'", "duckdb", "not_read_only"),
    ("COPY (SELECT * FROM t) TO '/tmp/out.parquet' (FORMAT parquet)", "duckdb", "not_read_only"),
    ("ATTACH '/tmp/other.duckdb' AS other", "duckdb", "not_read_only"),
    ("DETACH other", "duckdb", "not_read_only"),
    ("INSTALL httpfs", "duckdb", "not_read_only"),
    ("LOAD httpfs", "duckdb", "not_read_only"),
    ("PRAGMA enable_profiling", "duckdb", "not_read_only"),
    ("SET enable_external_access = true", "duckdb", "not_read_only"),
    ("RESET lock_configuration", "duckdb", "not_read_only"),
    ("CALL pragma_version()", "duckdb", "not_read_only"),
    ("USE other", "duckdb", "not_read_only"),
    ("CHECKPOINT", "duckdb", "not_read_only"),
    ("VACUUM", "duckdb", "not_read_only"),
    ("EXPORT DATABASE '/tmp/dump'", "duckdb", "not_read_only"),
    ("IMPORT DATABASE '/tmp/dump'", "duckdb", "not_read_only"),
    ("BEGIN TRANSACTION", "duckdb", "not_read_only"),
    ("EXPLAIN ANALYZE SELECT 1", "duckdb", "not_read_only"),
    ("SELECT * INTO new_table FROM t", "duckdb", "not_read_only"),
    ("WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone", "duckdb", "not_read_only"),
    ("SELECT * FROM read_csv('/etc/passwd')", "duckdb", "forbidden_function"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "duckdb", "forbidden_function"),
    ("select * from read_parquet('http://x/y')", "duckdb", "forbidden_function"),
    ("SELECT * FROM parquet_scan('s3://bucket/x.parquet')", "duckdb", "forbidden_function"),
    ("SELECT * FROM read_json_auto('/x.json')", "duckdb", "forbidden_function"),
    ("SELECT * FROM read_ndjson_objects('/x.json')", "duckdb", "forbidden_function"),
    ("SELECT content FROM read_text('/etc/shadow')", "duckdb", "forbidden_function"),
    ("SELECT * FROM read_blob('/etc/hosts')", "duckdb", "forbidden_function"),
    ("SELECT * FROM glob('/home/*')", "duckdb", "forbidden_function"),
    ("SELECT * FROM delta_scan('/data/t')", "duckdb", "forbidden_function"),
    ("SELECT * FROM iceberg_scan('/data/t')", "duckdb", "forbidden_function"),
    ("SELECT * FROM sqlite_scan('/x.db', 't')", "duckdb", "forbidden_function"),
    ("SELECT * FROM postgres_scan('host=x', 'public', 't')", "duckdb", "forbidden_function"),
    ("SELECT * FROM mysql_scan('host=x', 't')", "duckdb", "forbidden_function"),
    ("SELECT * FROM query('DROP TABLE t')", "duckdb", "forbidden_function"),
    ("SELECT * FROM query_table('t')", "duckdb", "forbidden_function"),
    ("SELECT getenv('HOME')", "duckdb", "forbidden_function"),
    ("SELECT * FROM duckdb_secrets()", "duckdb", "forbidden_function"),
    ("SELECT * FROM duckdb_extensions()", "duckdb", "forbidden_function"),
    ("SELECT * FROM system.main.read_csv('/etc/passwd')", "duckdb", "forbidden_function"),
    ("SELECT * FROM \"read_csv\"('/etc/passwd')", "duckdb", "forbidden_function"),
    ("SELECT * FROM t WHERE a IN (SELECT x FROM read_csv('/etc/passwd'))", "duckdb", "forbidden_function"),
    ("WITH a AS (SELECT * FROM read_parquet('/x.parquet')) SELECT * FROM a", "duckdb", "forbidden_function"),
    ("SELECT (SELECT max(x) FROM glob('*')) AS m", "duckdb", "forbidden_function"),
    ("SELECT 1 UNION ALL SELECT * FROM read_csv('/etc/passwd')", "duckdb", "forbidden_function"),
    ("SELECT * FROM '/etc/passwd'", "duckdb", "file_access"),
    ("SELECT * FROM 'data/x.csv'", "duckdb", "file_access"),
    ('SELECT * FROM "x.parquet"', "duckdb", "file_access"),
    ("SELECT * FROM t JOIN 's3://bucket/*.parquet' AS s ON true", "duckdb", "file_access"),
    ("SELECT * FROM (SELECT * FROM '~/.ssh/id_rsa') AS k", "duckdb", "file_access"),
    ("EXEC xp_cmdshell 'dir'", "tsql", "not_read_only"),
    ("EXEC sp_configure 'show advanced options', 1", "tsql", "not_read_only"),
    ("SELECT xp_cmdshell('whoami')", "tsql", "forbidden_function"),
    ("SELECT * FROM OPENQUERY(linked, 'SELECT 1')", "tsql", "forbidden_function"),
    ("SELECT * FROM OPENROWSET('SQLNCLI', 'Server=x;', 'SELECT 1') AS a", "tsql", "forbidden_function"),
    ("SELECT * FROM OPENROWSET(BULK 'c:/secrets.txt', SINGLE_CLOB) AS a", "tsql", "forbidden_function"),
    ("SELECT * FROM OPENDATASOURCE('SQLNCLI', 'Data Source=x').db.dbo.t", "tsql", "forbidden_function"),
    ("SELECT 1 AS a INTO #tmp", "tsql", "not_read_only"),
    ("SELECT 1; SHUTDOWN", "tsql", "multiple_statements"),
    ("DROP TABLE t", "databricks", "not_read_only"),
    ("INSERT OVERWRITE TABLE t SELECT 1", "spark", "not_read_only"),
    ("ATTACH DATABASE '/tmp/x.db' AS x", "sqlite", "not_read_only"),
    ("SELEC 1", "duckdb", "parse_error"),
    ("", "duckdb", "parse_error"),
    ("-- only a comment", "duckdb", "parse_error"),
]

LEGITIMATE = [
    "SELECT 1",
    "SELECT 1;",
    "select region, sum(net_amount) as revenue from gold.fact_sales group by 1 order by 2 desc",
    "WITH t AS (SELECT 1 AS a), u AS (SELECT a + 1 AS b FROM t) SELECT * FROM u",
    "SELECT 1 AS a UNION SELECT 2 UNION ALL SELECT 3",
    "SELECT a FROM t INTERSECT SELECT a FROM u",
    "SELECT a FROM t EXCEPT SELECT a FROM u",
    "VALUES (1, 'a'), (2, 'b')",
    "(SELECT 1)",
    "FROM gold.dim_store",
    "SELECT name, rank() OVER (PARTITION BY region ORDER BY revenue DESC) AS r FROM stores",
    "SELECT * FROM stores QUALIFY row_number() OVER (PARTITION BY region ORDER BY revenue DESC) = 1",
    "SELECT * FROM range(10) AS r(i)",
    "SELECT * FROM generate_series(1, 5)",
    "SELECT unnest([1, 2, 3])",
    "SELECT date_trunc('month', order_date) AS m, count(*) FROM silver.orders GROUP BY ALL",
    "SELECT * FROM t WHERE name = 'DROP TABLE x; --'",
    "SELECT 'read_csv(''/etc/passwd'')' AS just_text",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM duckdb_tables()",
    "SELECT s.a FROM (SELECT 1 AS a) AS s WHERE EXISTS (SELECT 1)",
    "SELECT sum(x) FILTER (WHERE x > 1) FROM t",
    "SELECT * FROM t PIVOT (sum(v) FOR k IN ('a', 'b'))",
    "SELECT CASE WHEN a > 1 THEN 'big' ELSE 'small' END FROM t",
]


@pytest.mark.parametrize(("query", "dialect", "code"), HOSTILE)
def test_hostile_queries_are_refused(query: str, dialect: str, code: str | None) -> None:
    problems = validate_sql(query, dialect)
    assert problems, f"accepted: {query!r}"
    assert problems[0].code == code if code else problems[0].code in REFUSALS
    assert problems[0].message  # readable by a user and a model


def test_there_are_enough_hostile_queries() -> None:
    assert len(HOSTILE) >= 40


@pytest.mark.parametrize("query", LEGITIMATE)
def test_legitimate_queries_pass(query: str) -> None:
    assert validate_sql(query) == []


def test_a_second_statement_is_named_in_the_message() -> None:
    (problem,) = validate_sql("SELECT 1; DROP TABLE x")
    assert "DROP" in problem.message
    assert "2" in problem.message


def test_not_read_only_names_the_statement() -> None:
    (problem,) = validate_sql("INSTALL httpfs")
    assert "INSTALL" in problem.message


def test_forbidden_function_names_the_function() -> None:
    (problem,) = validate_sql("SELECT * FROM t JOIN read_csv('/etc/passwd') ON true")
    assert "read_csv" in problem.message


def test_parse_error_says_where() -> None:
    (problem,) = validate_sql("SELECT a FROM t WHERE (")
    assert problem.code == "parse_error"
    assert "line 1" in problem.message


def test_unsupported_dialect_is_a_problem() -> None:
    (problem,) = validate_sql("SELECT 1", "cobol")
    assert problem.code == "unsupported_dialect"


CATALOG = Catalog(
    tables=[
        TableInfo(name="gold.fact_sales", columns=[]),
        TableInfo(name="gold.dim_store", columns=[]),
        TableInfo(name="orders", columns=[]),
    ]
)


def test_unknown_table_suggests_close_matches() -> None:
    (problem,) = validate_sql("SELECT * FROM gold.fact_sale", catalog=CATALOG)
    assert problem.code == "unknown_table"
    assert problem.suggestions == ["gold.fact_sales"]
    assert "Did you mean gold.fact_sales?" in problem.message


def test_unqualified_name_suggests_the_schema_qualified_table() -> None:
    (problem,) = validate_sql("SELECT * FROM dim_store", catalog=CATALOG)
    assert problem.suggestions[0] == "gold.dim_store"


def test_known_tables_ctes_and_main_schema_pass_the_catalog_check() -> None:
    query = (
        "WITH recent AS (SELECT * FROM GOLD.FACT_SALES) "
        "SELECT * FROM recent JOIN main.orders ON true JOIN orders AS o2 ON true"
    )
    assert validate_sql(query, catalog=CATALOG) == []


# A CTE's name means the CTE only where the CTE is visible; anywhere else it is the real table or
# system view of that name, which the catalog check must still see (issue 8: the CTE-shadowing gap).
# Each of these read DuckDB's `sqlite_master` (the DDL of every table) before the check looked at
# scopes, because any CTE name anywhere in the query exempted every table of that name.
CTE_SHADOWS = [
    # A non-recursive CTE does not see itself: the body reads the real view.
    "WITH sqlite_master AS (SELECT * FROM sqlite_master) SELECT * FROM sqlite_master",
    "WITH duckdb_indexes AS MATERIALIZED (SELECT * FROM duckdb_indexes) SELECT * FROM duckdb_indexes",
    "WITH Sqlite_Master AS (SELECT * FROM SQLITE_MASTER) SELECT * FROM sqlite_master",
    # Nor does WITH RECURSIVE make it visible where the engine does not: in the anchor of the
    # UNION, or in a body that is no UNION at all.
    "WITH RECURSIVE sqlite_master AS (SELECT type FROM sqlite_master UNION ALL SELECT 'x') "
    "SELECT * FROM sqlite_master",
    "WITH RECURSIVE sqlite_master AS (SELECT * FROM sqlite_master) SELECT * FROM sqlite_master",
    # A CTE sees only the CTEs before it.
    "WITH a AS (SELECT * FROM sqlite_master), sqlite_master AS (SELECT 1) SELECT * FROM a",
    # A WITH inside a subquery, a derived table or another CTE does not reach outside it.
    "SELECT * FROM (WITH sqlite_schema AS (SELECT 1 AS a) SELECT * FROM sqlite_schema) AS q, sqlite_schema",
    "SELECT * FROM orders WHERE EXISTS (WITH sqlite_master AS (SELECT 1) SELECT 1) "
    "AND EXISTS (SELECT 1 FROM sqlite_master)",
    "WITH x AS (WITH sqlite_master AS (SELECT 1) SELECT 1) SELECT * FROM x, sqlite_master",
]


@pytest.mark.parametrize("query", CTE_SHADOWS)
def test_a_cte_name_does_not_hide_the_real_table_from_the_catalog_check(query: str) -> None:
    problems = [p for p in validate_sql(query, catalog=CATALOG) if p.code != "system_object"]
    assert [p.code for p in problems] == ["unknown_table"]  # (sqlite_master is refused for itself too)
    assert problems[0].message.lower().startswith(("unknown table sqlite_", "unknown table duckdb_"))


@pytest.mark.parametrize(
    "query",
    [
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r",
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL (SELECT n + 1 FROM r WHERE n < 3)) SELECT * FROM r",
        "WITH RECURSIVE a AS (SELECT 1 AS n), r AS (SELECT n FROM a UNION ALL "
        "SELECT r.n + 1 FROM r JOIN a ON true WHERE r.n < 3 AND r.n IN (SELECT n FROM r)) SELECT * FROM r",
        "WITH a AS (SELECT * FROM orders), b AS (SELECT * FROM A) SELECT * FROM b, a",
        'WITH "Recent" AS (SELECT * FROM orders) SELECT * FROM recent UNION ALL SELECT * FROM RECENT',
        "WITH a AS (SELECT * FROM orders) "
        "SELECT (SELECT count(*) FROM a) AS n, * FROM (SELECT * FROM a) AS x",
        "WITH a AS (SELECT 1 AS id), b AS (WITH a AS (SELECT * FROM a) SELECT * FROM a) SELECT * FROM b",
        "SELECT * FROM (WITH a AS (SELECT * FROM orders) SELECT * FROM a) AS q",
    ],
)
def test_ctes_visible_where_they_are_used_pass_the_catalog_check(query: str) -> None:
    assert validate_sql(query, catalog=CATALOG) == []


def test_each_unknown_table_is_reported_once() -> None:
    problems = validate_sql(
        "SELECT * FROM nope AS a JOIN nope AS b ON true JOIN gone ON true", catalog=CATALOG
    )
    assert [p.message.split(".")[0] for p in problems] == ["Unknown table nope", "Unknown table gone"]


def test_parse_read_only_raises_with_all_problems() -> None:
    with pytest.raises(QueryError) as caught:
        parse_read_only("SELECT getenv('A'), * FROM '/etc/passwd'")
    assert caught.value.code == "forbidden_function"
    assert {p.code for p in caught.value.problems} == {"forbidden_function", "file_access"}


def test_transpile_tsql_top_to_limit() -> None:
    assert transpile("SELECT TOP 3 name FROM gold.dim_product ORDER BY name", "tsql").endswith("LIMIT 3")


def test_transpile_refuses_more_than_one_statement() -> None:
    with pytest.raises(QueryError) as caught:
        transpile("SELECT 1; SELECT 2", "spark")
    assert caught.value.code == "multiple_statements"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT a FROM t", "SELECT a FROM t LIMIT 11"),
        ("SELECT a FROM t LIMIT 5", "SELECT a FROM t LIMIT 5"),
        ("SELECT a FROM t ORDER BY a LIMIT 500 OFFSET 2", "SELECT a FROM t ORDER BY a LIMIT 11 OFFSET 2"),
        ("SELECT 1 UNION SELECT 2", "SELECT 1 UNION SELECT 2 LIMIT 11"),
        ("VALUES (1), (2)", "SELECT * FROM (VALUES (1), (2)) AS _capped LIMIT 11"),
        ("(SELECT a FROM t)", "SELECT a FROM t LIMIT 11"),
    ],
)
def test_row_cap_fetches_one_more_than_allowed(query: str, expected: str) -> None:
    assert apply_row_cap(parse_sql(query), 10).sql(dialect="duckdb") == expected


def test_pin_now_replaces_clock_functions() -> None:
    expr = pin_now(parse_sql("SELECT current_date, now(), today()"), dt.datetime(2025, 6, 30, 9, 15))
    sql = expr.sql(dialect="duckdb")
    assert "CAST('2025-06-30' AS DATE)" in sql
    assert "CAST('2025-06-30 09:15:00' AS TIMESTAMP)" in sql
    assert "NOW" not in sql.upper().replace("CAST", "")


# --- dialect rules ----------------------------------------------------------------------------------


def test_every_dialect_has_rules() -> None:
    assert set(RULES) == set(DIALECTS)


@pytest.mark.parametrize(
    ("query", "dialect", "code", "named"),
    [
        ("SELECT * FROM sys.objects", "tsql", "system_object", "sys.objects"),
        ("SELECT * FROM [master].[dbo].[sysdatabases]", "tsql", "system_object", "master.dbo.sysdatabases"),
        ("SELECT * FROM master..syslogins", "tsql", "system_object", "master"),
        ("SELECT sys.fn_varbintohexstr(0x01)", "tsql", "system_object", "sys.fn_varbintohexstr"),
        (
            "SELECT * FROM sys.fn_get_audit_file('x', DEFAULT, DEFAULT)",
            "tsql",
            "system_object",
            "fn_get_audit_file",
        ),
        ("WAITFOR DELAY '00:00:10'", "tsql", "not_read_only", "WAITFOR"),
        ("BULK INSERT t FROM 'c:/x.csv'", "tsql", "not_read_only", "BULK"),
        ("DBCC CHECKDB", "tsql", "not_read_only", "DBCC"),
        ("xp_cmdshell 'dir'", "tsql", "not_read_only", "XP_CMDSHELL"),
        (
            "SELECT * FROM OPENROWSET(BULK 'https://x/y.parquet', FORMAT = 'PARQUET') AS r",
            "tsql",
            "forbidden_function",
            "openrowset",
        ),
        ("SELECT * FROM OPENXML(@h, '/root', 1)", "tsql", "forbidden_function", "openxml"),
        ("SELECT * FROM parquet.`/mnt/lake/x`", "databricks", "file_access", "/mnt/lake/x"),
        ("SELECT * FROM delta.`s3://b/t`", "databricks", "file_access", "delta"),
        ("SELECT * FROM read_files('/x')", "databricks", "forbidden_function", "read_files"),
        (
            "SELECT java_method('java.lang.Runtime', 'getRuntime')",
            "databricks",
            "forbidden_function",
            "java_method",
        ),
        (
            "SELECT reflect('java.lang.System', 'getenv', 'HOME')",
            "databricks",
            "forbidden_function",
            "reflect",
        ),
        ("COPY INTO t FROM '/x' FILEFORMAT = CSV", "databricks", "not_read_only", "COPY"),
        ("LIST '/Volumes/x'", "databricks", "not_read_only", "LIST"),
        ("ADD JAR '/tmp/x.jar'", "databricks", "not_read_only", "ADD"),
        ("REFRESH TABLE t", "databricks", "not_read_only", "REFRESH"),
        ("CACHE TABLE t", "databricks", "not_read_only", "CACHE"),
        ("SET spark.sql.ansi.enabled = false", "databricks", "not_read_only", "SET"),
        ("SELECT * FROM system.access.audit", "databricks", "system_object", "system.access.audit"),
        ("SELECT * FROM pragma_database_list", "duckdb", "system_object", "pragma_database_list"),
        ("SELECT * FROM pragma_database_list", "sqlite", "forbidden_function", "pragma_database_list"),
        ("SELECT readfile('/etc/passwd')", "sqlite", "forbidden_function", "readfile"),
        ("(DELETE FROM t)", "duckdb", "not_read_only", "DELETE"),
    ],
)
def test_dialect_specific_refusals(query: str, dialect: str, code: str, named: str) -> None:
    problems = validate_sql(query, dialect)
    assert problems, problems
    assert problems[0].code == code, problems
    assert named in problems[0].message


@pytest.mark.parametrize(
    ("query", "dialect"),
    [
        (
            "SELECT TOP 10 name, DATEADD(month, 1, created) FROM dbo.customers WITH (NOLOCK) ORDER BY 1",
            "tsql",
        ),
        ("SELECT * FROM INFORMATION_SCHEMA.TABLES", "tsql"),
        ("SELECT [order id], FORMAT(d, 'yyyy') FROM [sales].[orders]", "tsql"),
        ("SELECT * FROM main.sales.orders TIMESTAMP AS OF '2025-01-01'", "databricks"),
        ("SELECT `order id`, explode(items) AS item FROM sales.orders", "databricks"),
        ("SELECT x FROM t LATERAL VIEW explode(arr) e AS x", "databricks"),
        ("SELECT * FROM delta_lake.orders", "databricks"),
        ("SELECT name FROM singer WHERE country = \"France\" AND name GLOB 'A*'", "sqlite"),
        ("SELECT 'café', \"Straße\", 名前 FROM t WHERE x = 'ЅELECT' AND y = 'a\u200bb'", "duckdb"),
        ("SELECT\u00a0*\u3000FROM t", "duckdb"),
        ('SELECT сумма, "area_m²" FROM продажи', "duckdb"),
        ("SELECT 1 -- a comment with \u202e in it\n", "duckdb"),
        ("SELECT " + "(" * MAX_NESTING + "1" + ")" * MAX_NESTING, "duckdb"),
        ("SELECT * FROM t WHERE id IN (" + ", ".join(map(str, range(1500))) + ")", "duckdb"),
    ],
)
def test_legitimate_queries_pass_in_their_dialect(query: str, dialect: str) -> None:
    assert validate_sql(query, dialect) == []


# --- text screening: unicode tricks and size ----------------------------------------------------


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("SELECT 1\uff1b DROP TABLE t", "U+FF1B FULLWIDTH SEMICOLON"),
        ("DR\u200bOP TABLE t", "U+200B ZERO WIDTH SPACE"),
        ("SELECT * FROM t \u202e WHERE 1=1", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("SELECT * FROM t \u200f", "U+200F RIGHT-TO-LEFT MARK"),
        ("\u0405ELECT 1", "reads like 'SELECT'"),
        ("SELECT * FROM re\u0430d_csv('/etc/passwd')", "reads like 'read_csv'"),
        ("\uff33\uff25\uff2c\uff25\uff23\uff34 1", "FULLWIDTH LATIN CAPITAL LETTER S"),
    ],
)
def test_invisible_and_look_alike_characters_are_refused_with_their_name(query: str, shown: str) -> None:
    (problem,) = validate_sql(query)
    assert problem.code == "parse_error"
    assert shown in problem.message
    assert "line 1" in problem.message


@pytest.mark.parametrize(
    "query",
    [
        "SELECT '" + "x" * MAX_QUERY_CHARS + "'",
        "SELECT " + "+".join(["1"] * MAX_TOKENS),
        "SELECT " + "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1),
        "SELECT " + "CASE WHEN a THEN " * 30 + "1" + " END" * 30 + " FROM t",
        "SELECT " + "NOT " * 3000 + "true",  # no brackets to count: the parser's own limit answers
    ],
)
def test_oversized_or_deeply_nested_input_fails_fast(query: str) -> None:
    started = time.process_time()  # CPU time: a shared machine's load does not move it (wall time did)
    (problem,) = validate_sql(query)
    assert problem.code == "too_complex"
    assert time.process_time() - started < 0.5  # ~0.05 s here; the unbounded parse took seconds


# --- unknown columns --------------------------------------------------------------------------------


def _table(name: str, *columns: str) -> TableInfo:
    return TableInfo(name=name, columns=[ColumnInfo(name=c, type="string") for c in columns])


COLUMNS = Catalog(
    tables=[
        _table("gold.fact_sales", "sale_id", "store_id", "order_date", "net_amount", "quantity", "info"),
        _table("gold.dim_store", "store_id", "region", "name"),
        _table("orders", "order_id", "customer", "amount", "status"),
        TableInfo(name="untyped", columns=[]),
    ]
)


@pytest.mark.parametrize(
    ("query", "dialect", "message", "suggestions"),
    [
        ("SELECT revenue FROM gold.fact_sales", "duckdb", "gold.fact_sales has no column 'revenue'.", []),
        ("SELECT f.net_amout FROM gold.fact_sales AS f", "duckdb",
         "gold.fact_sales has no column 'net_amout'; did you mean net_amount?", ["net_amount"]),
        ("SELECT s.regoin FROM gold.fact_sales AS f JOIN gold.dim_store AS s ON f.store_id = s.store_id",
         "duckdb", "gold.dim_store has no column 'regoin'; did you mean region?", ["region"]),
        ("SELECT regoin FROM gold.fact_sales JOIN gold.dim_store USING (store_id)", "duckdb",
         "no table in this query (gold.fact_sales, gold.dim_store) has a column 'regoin'", ["region"]),
        ("WITH c AS (SELECT order_id FROM orders) SELECT c.amount FROM c", "duckdb",
         "c has no column 'amount'", []),
        ("SELECT x FROM (SELECT order_id AS x FROM orders) AS t WHERE t.y > 1", "duckdb",
         "t has no column 'y'", []),
        ("SELECT o.order_id FROM orders o WHERE EXISTS "
         "(SELECT 1 FROM gold.fact_sales f WHERE f.sale_id = o.ordr_id)", "duckdb",
         "orders has no column 'ordr_id'; did you mean order_id?", ["order_id"]),
        ("SELECT TOP 3 custmer FROM dbo.orders", "tsql", "did you mean customer?", ["customer"]),
        ("SELECT stauts FROM orders", "databricks", "did you mean status?", ["status"]),
        ("SELECT stauts FROM orders", "sqlite", "did you mean status?", ["status"]),
    ],
)  # fmt: skip
def test_unknown_columns_name_the_table_and_the_closest_columns(
    query: str, dialect: str, message: str, suggestions: list[str]
) -> None:
    (problem,) = validate_sql(query, dialect, COLUMNS)
    assert problem.code == "unknown_column"
    assert message in problem.message
    assert problem.suggestions == suggestions


@pytest.mark.parametrize(
    ("query", "dialect"),
    [
        ("SELECT f.net_amount, s.region FROM gold.fact_sales AS f "
         "JOIN gold.dim_store AS s USING (store_id)", "duckdb"),
        ("SELECT region, sum(net_amount) AS revenue FROM gold.fact_sales "
         "JOIN gold.dim_store USING (store_id) GROUP BY region HAVING revenue > 1 ORDER BY revenue",
         "duckdb"),
        ("SELECT net_amount AS x, x * 2 AS y FROM gold.fact_sales WHERE y > 1 "
         "QUALIFY row_number() OVER (PARTITION BY x ORDER BY y) = 1", "duckdb"),
        ("WITH m AS (SELECT date_trunc('month', order_date) AS month, sum(net_amount) AS rev "
         "FROM gold.fact_sales GROUP BY 1) "
         "SELECT month, rev, lag(rev) OVER (ORDER BY month) FROM m", "duckdb"),
        ("WITH m AS (SELECT * FROM gold.fact_sales) SELECT anything FROM m", "duckdb"),
        ("SELECT info.city, f.info.zip FROM gold.fact_sales AS f", "duckdb"),
        ("SELECT * FROM orders WHERE amount > (SELECT avg(amount) FROM orders AS o2 "
         "WHERE o2.customer = orders.customer)", "duckdb"),
        ("SELECT a FROM (SELECT order_id, amount FROM orders) AS t(a, b)", "duckdb"),
        ("SELECT i FROM range(10) AS r(i)", "duckdb"),
        ("SELECT anything FROM untyped", "duckdb"),
        ("SELECT list_transform([1, 2], x -> x + 1), rowid, orders FROM orders", "duckdb"),
        ("SELECT status FROM orders UNION SELECT region FROM gold.dim_store ORDER BY status", "duckdb"),
        ("SELECT * FROM orders PIVOT (sum(amount) FOR status IN ('a', 'b'))", "duckdb"),
        ("SELECT u FROM orders, unnest([1, 2]) AS t(u)", "duckdb"),
        ("SELECT customer, l.n FROM orders, LATERAL (SELECT amount * 2 AS n) AS l", "duckdb"),
        ("SELECT struct_pack(a := amount), sum(amount) OVER w FROM orders "
         "WINDOW w AS (PARTITION BY customer)", "duckdb"),
        ("SELECT ORDER_ID FROM ORDERS", "duckdb"),
        ("SELECT TOP 5 DATEADD(month, 1, order_date), DATEDIFF(day, order_date, order_date) "
         "FROM gold.fact_sales", "tsql"),
        ("SELECT total = sum(amount) FROM orders", "tsql"),
        ("SELECT date_trunc('MONTH', order_date), item FROM gold.fact_sales "
         "LATERAL VIEW explode(array(1, 2)) e AS item", "databricks"),
        ("SELECT info:city FROM gold.fact_sales", "databricks"),
        ('SELECT * FROM orders WHERE status = "done"', "sqlite"),
        # A recursive CTE's column list names its columns, in the anchor and the recursive step.
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r",
         "duckdb"),
        ("WITH c(x) AS (SELECT 1 UNION SELECT 2) SELECT x FROM c", "duckdb"),
    ],
)  # fmt: skip
def test_valid_queries_raise_no_false_unknown_column(query: str, dialect: str) -> None:
    assert validate_sql(query, dialect, COLUMNS) == []


def test_a_column_of_another_table_is_named_with_the_table_to_join() -> None:
    (problem,) = validate_sql(
        "SELECT region, sum(net_amount) FROM gold.fact_sales GROUP BY 1", "duckdb", COLUMNS
    )
    assert problem.code == "unknown_column"
    assert "'region' is a column of gold.dim_store: join that table to use it." in problem.message


def test_a_column_taken_through_the_wrong_alias_is_named_with_the_right_one() -> None:
    query = "SELECT f.region FROM gold.fact_sales AS f JOIN gold.dim_store AS s ON f.store_id = s.store_id"
    (problem,) = validate_sql(query, "duckdb", COLUMNS)
    assert (
        "'region' is a column of gold.dim_store, which this query reads as s: write s.region."
        in problem.message
    )


def test_a_catalog_without_columns_checks_table_names_only() -> None:
    assert validate_sql("SELECT no_such_column FROM gold.fact_sales", catalog=CATALOG) == []


def test_a_recursive_cte_still_reports_a_column_it_does_not_have() -> None:
    query = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT m + 1 FROM r WHERE n < 3) SELECT n FROM r"
    [problem] = validate_sql(query, "duckdb", COLUMNS)
    assert problem.code == "unknown_column"
    assert "no column 'm'" in problem.message


@pytest.mark.parametrize(
    "query",
    [
        # a local model's BIRD query: the same table joined twice without aliases (sqlglot raised
        # OptimizeError out of the validator, and the case ended with an internal error)
        "SELECT orders.order_id FROM orders JOIN orders ON orders.order_id = orders.customer",
        "SELECT o.order_id FROM orders AS o JOIN orders AS o ON o.order_id = o.customer",
    ],
)
def test_a_source_named_twice_in_one_from_is_a_problem_to_repair(query: str) -> None:
    (problem,) = validate_sql(query, "duckdb", COLUMNS)
    assert problem.code == "ambiguous_source"
    assert "Alias already used" in problem.message and "alias of its own" in problem.message
