"""One bad query must not take a source down: a fatal engine error costs that query and a reload.

The first test runs the real attack that used to invalidate DuckDB's whole in-memory database (a
4 GiB string: ~20 s, ~4 GB, then an INTERNAL error); its count is now checked before the string is
built (`builders.py`), so the attack costs nothing. The others inject the driver's own exception
classes (the INTERNAL error among them) to check each mapping and the reload quickly.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from loom.engines.contracts import QueryError
from loom.engines.errors import public_text
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.limits import LocalLimits
from loom.lakehouse.seed import seed_lakehouse

COUNT = "SELECT count(*) FROM gold.dim_store"
STRING_BOMB = "SELECT length(s || s) FROM (SELECT repeat('x', 2147483648) AS s)"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("healing")
    seed_lakehouse(root, orders=100)
    return root


def stores(engine: DuckDBEngine) -> list[list[object]]:
    return engine.execute(COUNT, max_rows=1, timeout_s=30).rows


def test_the_string_that_invalidated_the_database_is_refused_before_it_is_built(lake: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="heal", location=str(lake)))
    before = stores(engine)
    started = time.perf_counter()
    with pytest.raises(QueryError) as failed:
        engine.execute(STRING_BOMB, max_rows=10, timeout_s=120)
    assert time.perf_counter() - started < 5  # was ~20 s and ~4 GB
    assert failed.value.code == "execution_error"
    assert "repeat() would build a value of more than 16,000,000 characters or items" in failed.value.message
    assert "Stack Trace" not in failed.value.message  # no native frames or server paths
    assert engine._loaded() is not None and stores(engine) == before  # the same load answers


class Raising:
    """A connection whose cursors raise `error` on execute, standing in for a failing engine."""

    def __init__(self, real: Any, error: Exception) -> None:
        self.real, self.error = real, error

    def cursor(self) -> Any:
        error = self.error

        class Cursor:
            def execute(self, sql: str) -> None:
                raise error

            def interrupt(self) -> None: ...

            def close(self) -> None: ...

        return Cursor()

    def close(self) -> None:
        self.real.close()


def break_with(engine: DuckDBEngine, error: Exception) -> Any:
    state = engine._loaded()
    state.conn = Raising(state.conn, error)  # type: ignore[assignment]
    return state


@pytest.mark.parametrize("error", [duckdb.FatalException("FATAL Error: boom"), duckdb.InternalException("x")])
def test_a_fatal_error_drops_the_load_and_the_next_query_reloads(lake: Path, error: Exception) -> None:
    engine = DuckDBEngine(DuckDBSource(name="heal", location=str(lake)))
    broken = break_with(engine, error)
    with pytest.raises(QueryError) as failed:
        engine.execute(COUNT, max_rows=1, timeout_s=5)
    assert failed.value.code == "engine_failed"
    assert engine._state is None  # dropped, not left for the next query
    assert stores(engine) != []
    assert engine._state is not broken


class LateFatal(Raising):
    """Raises `error` only after the engine's time limit has fired, as a slow query that ends in an
    INTERNAL error does (`repeat('x', 2147483648)` cannot be interrupted midway)."""

    def cursor(self) -> Any:
        error = self.error
        interrupted = threading.Event()

        class Cursor:
            def execute(self, sql: str) -> None:
                interrupted.wait(5)
                raise error

            def interrupt(self) -> None:
                interrupted.set()

            def close(self) -> None: ...

        return Cursor()


def test_a_fatal_error_after_the_time_limit_still_drops_the_load(lake: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="heal", location=str(lake)))
    state = engine._loaded()
    state.conn = LateFatal(state.conn, duckdb.InternalException("INTERNAL Error: x"))  # type: ignore[assignment]
    with pytest.raises(QueryError) as failed:
        engine.execute(COUNT, max_rows=1, timeout_s=0.2)
    assert failed.value.code == "engine_failed"  # not "timeout": the database is gone either way
    assert "INTERNAL" not in failed.value.message  # the engine's own text stays in the log (R34-5)
    assert engine._state is None
    assert stores(engine) != []


def test_out_of_memory_is_its_own_code_and_keeps_the_load(lake: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="heal", location=str(lake)))
    kept = break_with(engine, duckdb.OutOfMemoryException("Out of Memory Error: could not allocate"))
    with pytest.raises(QueryError) as failed:
        engine.execute(COUNT, max_rows=1, timeout_s=5)
    assert failed.value.code == "out_of_memory"
    assert engine._state is kept  # nothing fatal: the database is still good


def test_a_native_stack_trace_never_reaches_the_message(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = DuckDBEngine(DuckDBSource(name="heal", location=str(lake)))
    trace = "Binder Error: no such thing\n\nStack Trace:\n/usr/lib/python3/site-packages/duckdb.so(+0x1)"
    break_with(engine, duckdb.BinderException(trace))
    with pytest.raises(QueryError) as failed:
        engine.execute(COUNT, max_rows=1, timeout_s=5)
    assert failed.value.code == "execution_error"
    assert failed.value.message == "Binder Error: no such thing"
    assert public_text(str(duckdb.Error("x" * 2000))).endswith("…")


def test_a_server_path_in_an_engine_error_is_cut_to_its_last_part_and_logged_in_full(
    lake: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="loom")
    engine = DuckDBEngine(DuckDBSource(name="heal", location=str(lake)))
    error = 'IO Error: Cannot open file "/srv/loom/home/lakehouse/gold/fact_sales.parquet": Permission denied'
    break_with(engine, duckdb.IOException(error))
    with pytest.raises(QueryError) as failed:
        engine.execute(COUNT, max_rows=1, timeout_s=5)
    assert failed.value.message == 'IO Error: Cannot open file "…/fact_sales.parquet": Permission denied'
    assert "/srv/loom/home/lakehouse/gold/fact_sales.parquet" in caplog.text


def test_a_query_over_the_memory_limit_fails_cleanly_and_the_source_keeps_serving(
    lake: Path, tmp_path: Path
) -> None:
    limits = LocalLimits(memory_limit="64MB", threads=1, temp_directory=str(tmp_path), max_temp_size="16MB")
    engine = DuckDBEngine(DuckDBSource(name="small", location=str(lake)), limits)
    settings = engine._connection().execute(
        "SELECT current_setting('memory_limit'), current_setting('threads'), "
        "current_setting('temp_directory')"
    )
    limit, threads, spill = settings.fetchone() or ()
    assert (limit, threads, Path(spill).parent.parent) == ("61.0 MiB", 1, tmp_path)  # its folder in it
    hungry = "SELECT length(string_agg(repeat('x', 200) || range, ',')) FROM range(3000000)"
    with pytest.raises(QueryError) as failed:
        engine.execute(hungry, max_rows=1, timeout_s=60)
    assert failed.value.code == "out_of_memory"
    assert stores(engine) != []  # the same load answers the next query
