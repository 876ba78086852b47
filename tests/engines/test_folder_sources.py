"""A folder source serves what is inside it, and one table (or view) it cannot read does not take the rest:
the others serve, and whoever asks for that one is told which it is and why."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import duckdb
import pytest

from loom.engines.contracts import QueryError
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.tools.schema_prompt import render_schema


def engine_over(folder: Path) -> DuckDBEngine:
    return DuckDBEngine(DuckDBSource(name="folder", location=str(folder)))


def tables(engine: DuckDBEngine) -> list[str]:
    return [t.name for t in engine.catalog().tables]


def test_a_link_out_of_the_folder_is_not_a_table(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "passwd.csv"
    secret.parent.mkdir()
    secret.write_text("user,hash\nroot,x\n")
    folder = tmp_path / "source"
    (folder / "gold").mkdir(parents=True)
    (folder / "stores.csv").write_text("id,name\n1,a\n")
    (folder / "passwd.csv").symlink_to(secret)
    (folder / "gold" / "leak.csv").symlink_to(secret)
    (folder / "elsewhere").symlink_to(secret.parent, target_is_directory=True)
    engine = engine_over(folder)
    assert tables(engine) == ["stores"]
    with pytest.raises(QueryError) as refused:
        engine.execute("SELECT * FROM passwd", max_rows=5, timeout_s=5)
    assert refused.value.code == "unknown_table"


def test_a_link_inside_the_folder_is_followed(tmp_path: Path) -> None:
    folder = tmp_path / "source"
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "stores.csv").write_text("id,name\n1,a\n")
    (folder / "stores.csv").symlink_to(folder / "raw" / "stores.csv")
    assert "stores" in tables(engine_over(folder))


def test_a_table_that_cannot_load_is_left_out_and_the_others_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "stores.csv").write_text("id,name\n1,a\n")
    (folder / "orders.parquet").write_bytes(b"not parquet at all")
    (folder / "stores.parquet").write_bytes(b"PAR1 and a name that is already taken")
    engine = engine_over(folder)
    assert engine.execute("SELECT count(*) FROM stores", max_rows=1, timeout_s=5).rows == [[1]]
    assert tables(engine) == ["stores"]
    assert str(folder / "orders.parquet") in caplog.text  # the log names what was left out, in full
    left_out = {u.name: u.reason for u in engine.catalog().unavailable}
    assert set(left_out) == {"orders", "stores.parquet"}
    assert left_out["orders"].startswith("orders.parquet cannot be read as a table: ")
    assert left_out["stores.parquet"] == "not loaded: stores.csv already makes the table stores"
    assert engine.problem() is None  # the source serves: not a readiness failure
    assert all(str(tmp_path) not in reason for reason in left_out.values())


def test_a_query_on_a_table_that_could_not_load_names_it_and_why(tmp_path: Path) -> None:
    folder = tmp_path / "source"
    (folder / "gold").mkdir(parents=True)
    (folder / "gold" / "stores.csv").write_text("id,name\n1,a\n")
    (folder / "gold" / "orders.parquet").write_bytes(b"not parquet at all")
    engine = engine_over(folder)
    for query in ("SELECT count(*) FROM gold.orders", "SELECT * FROM gold.stores JOIN gold.orders ON true"):
        with pytest.raises(QueryError) as refused:
            engine.execute(query, max_rows=5, timeout_s=5)
        assert refused.value.code == "table_unavailable"
        message = refused.value.message
        assert message.startswith("The table gold.orders is in the source but could not be loaded")
        assert "orders.parquet cannot be read as a table" in message
        assert "Tables that can be queried: gold.stores." in message
        assert str(tmp_path) not in message
    with pytest.raises(QueryError) as unknown:
        engine.execute("SELECT * FROM gold.returns", max_rows=5, timeout_s=5)
    assert unknown.value.code == "unknown_table"  # what the source never had is still unknown
    schema = render_schema(engine.catalog())
    assert schema.splitlines()[0].startswith("- gold.stores: ")
    assert "- gold.orders: orders.parquet cannot be read as a table: " in schema


def test_one_bad_view_in_a_duckdb_file_is_left_out_and_the_rest_serves(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE stores AS SELECT 1 AS id, 'a' AS name")
        conn.execute("CREATE TABLE gone AS SELECT 1 AS id")
        conn.execute("CREATE VIEW store_names AS SELECT name FROM stores")
        conn.execute("CREATE VIEW broken AS SELECT * FROM gone")
        conn.execute("DROP TABLE gone")  # DuckDB keeps the view, which now cannot be read
    engine = engine_over(path)
    assert tables(engine) == ["store_names", "stores"]
    assert engine.execute("SELECT name FROM store_names", max_rows=5, timeout_s=5).rows == [["a"]]
    (left_out,) = engine.catalog().unavailable
    assert (left_out.name, left_out.reason.split(":")[0]) == ("broken", "the view cannot be read")
    assert "gone" in left_out.reason
    with pytest.raises(QueryError) as refused:
        engine.execute("SELECT * FROM broken", max_rows=5, timeout_s=5)
    assert refused.value.code == "table_unavailable"
    assert "broken" in refused.value.message
    assert engine.problem() is None


def test_one_bad_view_in_a_sqlite_file_is_left_out_and_the_rest_serves(tmp_path: Path) -> None:
    path = tmp_path / "shop.sqlite"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE stores (id INTEGER, name TEXT)")
        conn.execute("INSERT INTO stores VALUES (1, 'a')")
        conn.execute("CREATE TABLE gone (id INTEGER)")
        conn.execute("CREATE VIEW broken AS SELECT * FROM gone")
        conn.execute("DROP TABLE gone")
        conn.commit()
    engine = engine_over(path)
    assert tables(engine) == ["stores"]
    assert [u.name for u in engine.catalog().unavailable] == ["broken"]
    with pytest.raises(QueryError) as refused:
        engine.execute("SELECT * FROM broken", max_rows=5, timeout_s=5)
    assert refused.value.code == "table_unavailable"


def test_a_view_of_a_duckdb_file_that_reads_a_file_is_left_out(tmp_path: Path) -> None:
    secret = tmp_path / "passwd.csv"
    secret.write_text("user,hash\nroot,x\n")
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE stores AS SELECT 1 AS id")
        conn.execute(f"CREATE VIEW leak AS SELECT * FROM read_csv('{secret}')")
    engine = engine_over(path)
    assert tables(engine) == ["stores"]  # the view was bound with file access already off
    assert [t.name for t in engine.catalog().unavailable] == ["leak"]
    assert str(secret) not in engine.catalog().unavailable[0].reason


def test_a_fifo_named_like_a_table_is_not_read(tmp_path: Path) -> None:
    import os

    (tmp_path / "stores.csv").write_text("id\n1\n")
    os.mkfifo(tmp_path / "blocked.csv")  # reading it would wait for a writer for ever
    assert tables(engine_over(tmp_path)) == ["stores"]


def test_a_query_waits_for_a_hung_load_only_so_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from loom.engines.sql import duckdb_engine

    (tmp_path / "stores.csv").write_text("id\n1\n")
    engine = engine_over(tmp_path)
    release = threading.Event()
    real = duckdb_engine._load_state

    def hangs(*args: object) -> object:
        release.wait(10)  # a stalled mount
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(duckdb_engine, "_load_state", hangs)
    monkeypatch.setattr(duckdb_engine, "LOAD_WAIT_S", 0.2)
    loading = threading.Thread(target=engine.catalog)
    loading.start()
    try:
        with pytest.raises(QueryError) as waited:
            engine.execute("SELECT 1", max_rows=1, timeout_s=5)
        assert waited.value.code == "source_loading"
    finally:
        release.set()
        loading.join()
    assert engine.execute("SELECT id FROM stores", max_rows=1, timeout_s=5).rows == [[1]]


def test_a_duckdb_file_opens_with_every_limit_set(tmp_path: Path) -> None:
    # The limits (temp directory among them) must be set before file access is turned off, or
    # DuckDB refuses them and the whole source fails (a regression the second probe run found).
    from loom.engines.sql.limits import LocalLimits

    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE stores AS SELECT 1 AS id")
    limits = LocalLimits(memory_limit="256MB", threads=1, temp_directory=str(tmp_path / "spill"))
    engine = DuckDBEngine(DuckDBSource(name="shop", location=str(path)), limits)
    assert engine.execute("SELECT id FROM stores", max_rows=1, timeout_s=5).rows == [[1]]
    setting = engine._loaded().conn.execute("SELECT current_setting('memory_limit')").fetchone()
    assert setting is not None and str(setting[0]).startswith("2")
