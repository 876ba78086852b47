"""The embedded engine follows its source: data written under a running server is what it answers."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from loom.engines.contracts import QueryError
from loom.engines.sources import DuckDBSource
from loom.engines.sql import duckdb_engine, freshness
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.freshness import data_version
from loom.engines.sql.limits import LocalLimits
from loom.tools import sql_schema


def lines(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": list(range(start, start + n)), "state": ["TX"] * n})


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    write_deltalake(str(tmp_path / "gold" / "sales"), lines(3))
    (tmp_path / "notes.csv").write_text("id\n1\n")
    return tmp_path


@pytest.fixture
def always_look(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every query looks at the source again (the window is a second in the product)."""
    monkeypatch.setattr(duckdb_engine, "FRESH_FOR_S", 0.0)


def count(engine: DuckDBEngine, table: str = "gold.sales") -> int:
    rows = engine.execute(f"SELECT count(*) FROM {table}", max_rows=1, timeout_s=5).rows
    value = rows[0][0]
    assert isinstance(value, int)
    return value


def test_the_version_changes_with_a_write_and_not_with_a_read(lake: Path) -> None:
    before = data_version(lake)
    engine = DuckDBEngine(DuckDBSource(name="lake", location=str(lake)))
    assert count(engine) == 3
    assert data_version(lake) == before  # loading and querying leave no trace

    write_deltalake(str(lake / "gold" / "sales"), lines(2, 3), mode="append")
    after_append = data_version(lake)
    assert after_append != before
    (lake / "notes.csv").write_text("id\n1\n2\n")
    assert data_version(lake) != after_append
    engine.close()


def test_a_delta_append_is_answered_on_the_next_query(lake: Path, always_look: None) -> None:
    engine = DuckDBEngine(DuckDBSource(name="lake", location=str(lake)))
    assert count(engine) == 3
    write_deltalake(str(lake / "gold" / "sales"), lines(2, 3), mode="append")
    assert count(engine) == 5
    engine.close()


def test_a_new_table_is_in_the_catalog_and_passes_validation(lake: Path, always_look: None) -> None:
    engine = DuckDBEngine(DuckDBSource(name="lake", location=str(lake)))
    assert engine.validate("SELECT * FROM gold.returns")[0].code == "unknown_table"
    write_deltalake(str(lake / "gold" / "returns"), lines(1))

    assert engine.validate("SELECT * FROM gold.returns") == []
    assert "gold.returns" in {t.name for t in engine.catalog().tables}
    assert count(engine, "gold.returns") == 1
    engine.close()


def test_within_the_window_the_source_is_not_looked_at_again(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks: list[Path] = []

    def looked(location: Path) -> freshness.Version:
        looks.append(location)
        return freshness.data_version(location)

    monkeypatch.setattr(duckdb_engine, "data_version", looked)
    monkeypatch.setattr(duckdb_engine, "FRESH_FOR_S", 3600.0)
    engine = DuckDBEngine(DuckDBSource(name="lake", location=str(lake)))
    assert count(engine) == 3
    write_deltalake(str(lake / "gold" / "sales"), lines(2, 3), mode="append")
    for _ in range(5):
        assert count(engine) == 3  # the load of a moment ago, as promised for FRESH_FOR_S
    assert len(looks) == 1  # the version read with the first load; no stat per query
    engine.close()


def test_a_removed_source_is_reported_until_it_is_back(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_engine, "FRESH_FOR_S", 0.0)
    engine = DuckDBEngine(DuckDBSource(name="lake", location=str(lake)))
    assert count(engine) == 3
    moved = lake.with_name(lake.name + "-moved")
    shutil.move(lake, moved)
    with pytest.raises(QueryError) as raised:
        count(engine)
    assert raised.value.code == "source_unavailable"
    assert "loom data seed" in raised.value.message

    monkeypatch.setattr(duckdb_engine, "FRESH_FOR_S", 3600.0)
    with pytest.raises(QueryError):  # a failed load is not followed by a window of the old data
        count(engine)
    shutil.move(moved, lake)
    assert count(engine) == 3
    engine.close()


def test_a_replaced_sqlite_file_is_loaded_again(tmp_path: Path, always_look: None) -> None:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER)")
        db.execute("INSERT INTO orders VALUES (1)")
    engine = DuckDBEngine(DuckDBSource(name="shop", location=str(path), dialect="sqlite"))
    assert count(engine, "orders") == 1
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO orders VALUES (2)")
    assert count(engine, "orders") == 2
    engine.close()


def test_the_schema_the_model_sees_follows_the_data(lake: Path, always_look: None) -> None:
    source = DuckDBSource(name="lake-schema", location=str(lake))
    engine = DuckDBEngine(source)
    text = sql_schema.schema_for(source, engine, "returns by state").text
    assert "gold.returns" not in text
    write_deltalake(str(lake / "gold" / "returns"), lines(1))

    assert sql_schema.known_whole_schema(source, engine) is None  # stale: the caller must look again
    schema = sql_schema.schema_for(source, engine, "returns by state")
    text, catalog = schema.text, schema.catalog
    assert "gold.returns" in text
    assert "gold.returns" in {t.name for t in catalog.tables}
    engine.close()


def test_a_reload_does_not_hold_up_queries_on_the_previous_load(
    lake: Path, always_look: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = DuckDBEngine(DuckDBSource(name="lake", location=str(lake)))
    previous = engine._loaded()
    loading, release = threading.Event(), threading.Event()
    real_load = duckdb_engine._load_state

    def slow_load(source: DuckDBSource, limits: LocalLimits) -> Any:
        loading.set()
        release.wait(30)
        return real_load(source, limits)

    monkeypatch.setattr(duckdb_engine, "_load_state", slow_load)
    write_deltalake(str(lake / "gold" / "sales"), lines(2, 3), mode="append")
    with ThreadPoolExecutor(2) as pool:
        reloading = pool.submit(count, engine)  # sees the change and starts loading it again
        assert loading.wait(10)
        running = pool.submit(engine._run, previous, "SELECT count(*) FROM gold.sales", 2, 10_000, 5)
        try:
            assert running.result(timeout=10)[1].rows == [[3]]  # answered while the load is still going
        finally:
            release.set()
        assert reloading.result(timeout=30) == 5
    engine.close()
