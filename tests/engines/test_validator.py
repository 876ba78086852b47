"""The read-only validator: hostile SQL is refused by parsing, legitimate analytics passes."""

from __future__ import annotations

import datetime as dt

import pytest

from loom.engines.contracts import Catalog, QueryError, TableInfo
from loom.engines.sql.validator import (
    apply_row_cap,
    parse_read_only,
    parse_sql,
    pin_now,
    transpile,
    validate_sql,
)

REFUSALS = {"parse_error", "multiple_statements", "not_read_only", "forbidden_function", "file_access"}

# (query, dialect, the code it must be refused with, or None for "any refusal")
HOSTILE = [
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
    ("RESET lock_configuration", "duckdb", None),
    ("CALL pragma_version()", "duckdb", "not_read_only"),
    ("USE other", "duckdb", "not_read_only"),
    ("CHECKPOINT", "duckdb", "not_read_only"),
    ("VACUUM", "duckdb", "not_read_only"),
    ("EXPORT DATABASE '/tmp/dump'", "duckdb", None),
    ("IMPORT DATABASE '/tmp/dump'", "duckdb", None),
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
    ("SELECT * FROM OPENROWSET(BULK 'c:/secrets.txt', SINGLE_CLOB) AS a", "tsql", None),
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
    "SELECT current_setting('threads')",
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
    assert "DROP" in problem.message and "2" in problem.message


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
