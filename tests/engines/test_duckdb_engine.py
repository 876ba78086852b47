"""The embedded DuckDB engine over folders, Delta, Parquet, CSV, SQLite and DuckDB files."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from loom.engines.contracts import Engine, QueryError
from loom.engines.registry import EnginePool
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine

# Far too slow to finish in a test run: 10^8 × 10^6 pairs.
ENDLESS = "SELECT count(*) FROM range(100000000) AS a(i), range(1000000) AS b(j) WHERE a.i + b.j = 7"


def _engine(location: Path) -> DuckDBEngine:
    return DuckDBEngine(DuckDBSource(name="test", location=str(location)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder source: a Delta table and a CSV at the top, a gold schema with Delta and Parquet."""
    root = tmp_path_factory.mktemp("folder")
    sales = pa.table(
        {
            "id": pa.array(range(1, 101), pa.int32()),
            "day": pa.array([dt.date(2025, 1, 1) + dt.timedelta(days=i % 30) for i in range(100)]),
            "amount": pa.array([Decimal(i).scaleb(-2) for i in range(100, 200)], pa.decimal128(10, 2)),
            "state": ["TX" if i % 3 else "CA" for i in range(100)],
        }
    )
    write_deltalake(str(root / "gold" / "sales"), sales, description="Daily sales lines")
    write_deltalake(str(root / "events"), pa.table({"kind": ["open", "close"], "n": [1, 2]}))
    pq.write_table(
        pa.table({"code": ["TX", "CA"], "name": ["Texas", "California"]}), root / "gold" / "states.parquet"
    )
    (root / "notes.csv").write_text("id,note\n1,hello\n2,world\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.csv").write_text("x\n1\n")
    return root


@pytest.fixture(scope="module")
def engine(folder: Path) -> Any:
    engine = _engine(folder)
    yield engine
    engine.close()


def test_implements_the_engine_protocol(engine: DuckDBEngine) -> None:
    assert isinstance(engine, Engine)
    assert (engine.name, engine.dialect) == ("duckdb", "duckdb")


def test_folder_tables_become_schemas_and_main(engine: DuckDBEngine) -> None:
    names = [t.name for t in engine.catalog().tables]
    assert names == ["events", "notes", "gold.sales", "gold.states"]


def test_catalog_has_types_counts_samples_and_delta_description(engine: DuckDBEngine) -> None:
    sales = engine.catalog().table("gold.sales")
    assert sales is not None
    assert sales.row_count == 100
    assert sales.description == "Daily sales lines"
    types = {c.name: c.type for c in sales.columns}
    assert types == {"id": "integer", "day": "date", "amount": "decimal", "state": "string"}
    state = next(c for c in sales.columns if c.name == "state")
    assert state.sample_values == ["TX", "CA"]  # most frequent first


def test_catalog_is_computed_once(engine: DuckDBEngine) -> None:
    assert engine.catalog() is engine.catalog()


def test_execute_returns_a_json_safe_result_set(engine: DuckDBEngine) -> None:
    result = engine.execute(
        "SELECT day, amount, state FROM gold.sales WHERE id = 1", max_rows=10, timeout_s=5
    )
    assert [c.model_dump() for c in result.columns] == [
        {"name": "day", "type": "date"},
        {"name": "amount", "type": "decimal"},
        {"name": "state", "type": "string"},
    ]
    assert result.rows == [["2025-01-01", 1.0, "CA"]]
    assert result.engine == "duckdb"
    assert result.elapsed_ms >= 0
    assert json.loads(result.model_dump_json())["rows"] == [["2025-01-01", 1.0, "CA"]]


def test_delta_parquet_and_csv_tables_join(engine: DuckDBEngine) -> None:
    result = engine.execute(
        "SELECT st.name, count(*) AS n FROM gold.sales AS s JOIN gold.states AS st ON st.code = s.state "
        "GROUP BY st.name ORDER BY st.name",
        max_rows=10,
        timeout_s=5,
    )
    assert result.rows == [["California", 34], ["Texas", 66]]
    notes = engine.execute("SELECT note FROM notes ORDER BY id", max_rows=10, timeout_s=5)
    assert notes.rows == [["hello"], ["world"]]


def test_row_cap_truncates_and_says_so(engine: DuckDBEngine) -> None:
    capped = engine.execute("SELECT id FROM gold.sales ORDER BY id", max_rows=7, timeout_s=5)
    assert capped.row_count == 7
    assert capped.truncated
    assert capped.rows == [[i] for i in range(1, 8)]
    assert capped.query.endswith("LIMIT 8")  # the query as executed
    exact = engine.execute("SELECT id FROM gold.sales", max_rows=100, timeout_s=5)
    assert exact.row_count == 100
    assert not exact.truncated


def test_values_are_capped_too(engine: DuckDBEngine) -> None:
    result = engine.execute("VALUES (1), (2), (3)", max_rows=2, timeout_s=5)
    assert result.rows == [[1], [2]]
    assert result.truncated


def test_timeout_really_interrupts_and_the_engine_still_works(engine: DuckDBEngine) -> None:
    started = time.perf_counter()
    with pytest.raises(QueryError) as caught:
        engine.execute(ENDLESS, max_rows=10, timeout_s=0.3)
    elapsed = time.perf_counter() - started
    assert caught.value.code == "timeout"
    assert elapsed < 3, f"the query was not stopped: {elapsed:.1f} s"
    assert engine.execute("SELECT count(*) FROM gold.sales", max_rows=1, timeout_s=5).rows == [[100]]


def test_a_timeout_does_not_disturb_concurrent_queries(engine: DuckDBEngine) -> None:
    def short(i: int) -> Any:
        return engine.execute(f"SELECT {i} + count(*) FROM gold.sales", max_rows=1, timeout_s=10).rows

    with ThreadPoolExecutor(max_workers=9) as pool:
        slow = pool.submit(engine.execute, ENDLESS, max_rows=1, timeout_s=0.5)
        results = list(pool.map(short, range(40)))
        with pytest.raises(QueryError) as caught:
            slow.result(timeout=10)
    assert caught.value.code == "timeout"
    assert results == [[[100 + i]] for i in range(40)]


def test_concurrent_execute_from_threads(engine: DuckDBEngine) -> None:
    def run(i: int) -> Any:
        result = engine.execute(
            f"SELECT count(*) AS n, sum(id) FILTER (WHERE id <= {i}) AS s FROM gold.sales",
            max_rows=5,
            timeout_s=10,
        )
        return result.rows[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        rows = list(pool.map(run, range(1, 101)))
    assert rows == [[100, i * (i + 1) // 2] for i in range(1, 101)]


def test_unknown_columns_are_refused_with_the_closest_names(engine: DuckDBEngine) -> None:
    with pytest.raises(QueryError) as caught:
        engine.execute("SELECT s.stat FROM gold.sales AS s", max_rows=5, timeout_s=5)
    assert caught.value.code == "unknown_column"
    assert "did you mean state" in caught.value.message  # for the model's repair


def test_execution_errors_keep_duckdb_messages(engine: DuckDBEngine) -> None:
    with pytest.raises(QueryError) as caught:
        engine.execute("SELECT CAST(state AS INTEGER) FROM gold.sales", max_rows=5, timeout_s=5)
    assert caught.value.code == "execution_error"
    assert "Conversion Error" in caught.value.message


def test_unknown_table_is_refused_with_a_suggestion(engine: DuckDBEngine) -> None:
    with pytest.raises(QueryError) as caught:
        engine.execute("SELECT * FROM sales", max_rows=5, timeout_s=5)
    assert caught.value.code == "unknown_table"
    assert caught.value.problems[0].suggestions == ["gold.sales"]
    assert engine.validate("SELECT * FROM gold.sales") == []
    assert engine.validate("SELECT * FROM gold.sale")[0].code == "unknown_table"


def test_a_cte_named_like_a_system_view_cannot_read_the_view(engine: DuckDBEngine) -> None:
    # DuckDB resolves the body's `sqlite_master` to its built-in view (every table's DDL).
    query = "WITH sqlite_master AS (SELECT * FROM sqlite_master) SELECT sql FROM sqlite_master"
    with pytest.raises(QueryError) as caught:
        engine.execute(query, max_rows=5, timeout_s=5)
    assert {p.code for p in caught.value.problems} == {"system_object", "unknown_table"}
    assert "sqlite_master" in caught.value.message
    ok = "WITH s AS (SELECT * FROM gold.sales) SELECT count(*) FROM s"
    assert engine.execute(ok, max_rows=5, timeout_s=5).row_count == 1


def test_refused_queries_are_never_executed(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(folder)
    ran: list[str] = []
    real_run = engine._run

    def spy(state: Any, sql: str, *args: Any) -> Any:
        ran.append(sql)
        return real_run(state, sql, *args)

    monkeypatch.setattr(engine, "_run", spy)
    for query in [
        "SELECT 1; DROP TABLE events",
        "DROP TABLE events",
        "SELECT * FROM read_csv('/etc/passwd')",
    ]:
        with pytest.raises(QueryError):
            engine.execute(query, max_rows=5, timeout_s=5)
    assert ran == []
    assert engine.execute("SELECT count(*) FROM events", max_rows=1, timeout_s=5).rows == [[2]]
    assert len(ran) == 1
    engine.close()


def test_external_access_is_off_even_past_the_validator(engine: DuckDBEngine, folder: Path) -> None:
    cursor = engine._connection().cursor()
    with pytest.raises(duckdb.Error):
        cursor.execute(f"SELECT * FROM read_csv('{folder / 'notes.csv'}')").fetchall()
    with pytest.raises(duckdb.Error, match="locked"):
        cursor.execute("SET enable_external_access = true")
    cursor.close()


def test_tsql_dialect_is_translated(engine: DuckDBEngine) -> None:
    result = engine.execute(
        "SELECT TOP 3 [id] FROM [gold].[sales] ORDER BY [id] DESC", max_rows=10, timeout_s=5, dialect="tsql"
    )
    assert result.rows == [[100], [99], [98]]
    assert "LIMIT 3" in result.query


def test_now_pins_the_clock(engine: DuckDBEngine) -> None:
    result = engine.execute(
        "SELECT current_date AS d, now() AS t", max_rows=1, timeout_s=5, now=dt.datetime(2025, 3, 4, 5, 6)
    )
    assert result.rows == [["2025-03-04", "2025-03-04T05:06:00"]]


def test_sqlite_source_with_mixed_types(tmp_path: Path) -> None:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (id INTEGER, name TEXT, price REAL, code)")
        db.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            [(1, "pen", 1.5, 10), (2, "ink", 3.25, "X-2"), (3, None, 2.0, None)],
        )
        db.execute("CREATE VIEW cheap AS SELECT name FROM items WHERE price < 3")
    db.close()
    engine = _engine(path)
    assert [t.name for t in engine.catalog().tables] == ["cheap", "items"]
    result = engine.execute("SELECT id, name, price, code FROM items ORDER BY id", max_rows=10, timeout_s=5)
    assert [c.type for c in result.columns] == ["integer", "string", "float", "string"]
    assert result.rows == [[1, "pen", 1.5, "10"], [2, "ink", 3.25, "X-2"], [3, None, 2.0, None]]
    engine.close()


def test_duckdb_file_source_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute("CREATE SCHEMA sales; CREATE TABLE sales.t AS SELECT range AS i FROM range(5)")
        db.execute("CREATE TABLE top AS SELECT 'x' AS s")
    engine = _engine(path)
    assert [t.name for t in engine.catalog().tables] == ["top", "sales.t"]
    assert engine.execute("SELECT sum(i) FROM sales.t", max_rows=1, timeout_s=5).rows == [[10]]
    with pytest.raises(duckdb.Error):  # even past the validator, the file cannot be written
        engine._connection().cursor().execute("DELETE FROM top")
    engine.close()


def test_missing_source_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(QueryError) as caught:
        _engine(tmp_path / "nowhere").execute("SELECT 1", max_rows=1, timeout_s=5)
    assert caught.value.code == "source_unavailable"
    assert "loom data seed" in caught.value.message


def test_pool_caches_per_source_and_closes(folder: Path, tmp_path: Path) -> None:
    pool = EnginePool()
    source = DuckDBSource(name="a", location=str(folder))
    with ThreadPoolExecutor(max_workers=8) as threads:
        engines = list(threads.map(lambda _: pool.engine(source, "sql"), range(32)))
    assert all(e is engines[0] for e in engines)
    assert pool.engine(DuckDBSource(name="a", location=str(tmp_path)), "sql") is not engines[0]
    assert engines[0].execute("SELECT count(*) FROM events", max_rows=1, timeout_s=5).rows == [[2]]
    pool.close()
    assert pool.engine(source, "sql") is not engines[0]
    pool.close()


def test_empty_and_all_null_sqlite_columns_keep_their_declared_types(tmp_path: Path) -> None:
    path = tmp_path / "typed.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE empty_t (n INTEGER, price REAL, label VARCHAR(10))")
        db.execute("CREATE TABLE nulls (id INTEGER, other_details INT)")
        db.execute("INSERT INTO nulls VALUES (1, NULL)")
    engine = DuckDBEngine(DuckDBSource(name="typed", location=str(path)))
    types = {t.name: {c.name: c.type for c in t.columns} for t in engine.catalog().tables}
    assert types["empty_t"] == {"n": "integer", "price": "float", "label": "string"}
    assert types["nulls"]["other_details"] == "integer"
    result = engine.execute("SELECT SUM(n) AS s FROM empty_t", max_rows=5, timeout_s=5)
    assert result.rows == [[None]]


def test_a_view_whose_definition_a_query_could_not_run_is_left_out_with_why(tmp_path: Path) -> None:
    # Probe 9 (R9-7): a view over duckdb_settings() showed the server's temp and secret paths.
    path = tmp_path / "views.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute("CREATE TABLE good_table AS SELECT 1 AS n")
        db.execute("CREATE VIEW good AS SELECT n FROM good_table")
        db.execute("CREATE VIEW settings AS SELECT name, value FROM duckdb_settings()")
    engine = _engine(path)
    catalog = engine.catalog()
    assert [t.name for t in catalog.tables] == ["good", "good_table"]
    [left_out] = catalog.unavailable
    assert left_out.name == "settings" and "forbidden_function" in left_out.reason
    with pytest.raises(QueryError) as refused:
        engine.execute("SELECT * FROM settings", max_rows=5, timeout_s=5)
    assert refused.value.code == "table_unavailable"
    engine.close()
