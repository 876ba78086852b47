"""The sample lakehouse: deterministic, layered, consistent, and every verified query answers on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deltalake import DeltaTable

from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.lakehouse.seed import GOLD_TABLES, TABLES, is_seeded, seed_lakehouse
from loom.prompts import load_verified_queries

ORDERS = 3000


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lakehouse")
    seed_lakehouse(root, orders=ORDERS)
    return root


@pytest.fixture(scope="module")
def engine(lakehouse: Path) -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine(DuckDBSource(name="sales", location=str(lakehouse)))
    yield engine
    engine.close()


def _scalar(engine: DuckDBEngine, sql: str) -> object:
    return engine.execute(sql, max_rows=1, timeout_s=10).rows[0][0]


def test_layers_and_tables_exist(lakehouse: Path) -> None:
    for layer, name in TABLES:
        assert (lakehouse / layer / name / "_delta_log").is_dir(), f"{layer}/{name}"
    assert is_seeded(lakehouse)


def test_not_seeded_until_seeded(tmp_path: Path) -> None:
    assert not is_seeded(tmp_path)
    (tmp_path / "gold" / "fact_sales").mkdir(parents=True)
    assert not is_seeded(tmp_path)


def test_same_seed_gives_identical_tables_and_another_seed_does_not(tmp_path: Path, lakehouse: Path) -> None:
    seed_lakehouse(tmp_path / "again", orders=ORDERS)
    seed_lakehouse(tmp_path / "other", seed=8, orders=ORDERS)
    for layer, name in TABLES:
        first = DeltaTable(str(lakehouse / layer / name)).to_pyarrow_table()
        again = DeltaTable(str(tmp_path / "again" / layer / name)).to_pyarrow_table()
        assert first.equals(again), f"{layer}.{name} differs between two runs with the same seed"
    fact = DeltaTable(str(lakehouse / "gold" / "fact_sales")).to_pyarrow_table()
    other = DeltaTable(str(tmp_path / "other" / "gold" / "fact_sales")).to_pyarrow_table()
    assert not fact.equals(other)


def test_seeding_again_replaces_the_tables(tmp_path: Path) -> None:
    first = seed_lakehouse(tmp_path, orders=200)
    steps: list[tuple[str, int, int]] = []
    second = seed_lakehouse(tmp_path, orders=100, progress=lambda *step: steps.append(step))
    fact = DeltaTable(str(tmp_path / "gold" / "fact_sales"))
    assert fact.version() == 1
    assert fact.to_pyarrow_table().num_rows == next(t.rows for t in second.tables if t.name == "fact_sales")
    assert [t.rows for t in first.tables] != [t.rows for t in second.tables]
    assert steps[0] == ("generating orders", 0, len(TABLES) + 1)
    assert steps[-1][1] == steps[-1][2]


def test_report_lists_every_table(tmp_path: Path) -> None:
    report = seed_lakehouse(tmp_path, orders=100)
    assert [(t.layer, t.name) for t in report.tables] == list(TABLES)
    assert all(t.rows > 0 for t in report.tables)


def test_dimensions_cover_two_full_years(engine: DuckDBEngine) -> None:
    row = engine.execute(
        "SELECT min(date), max(date), count(*), count(DISTINCT year) FROM gold.dim_date",
        max_rows=1,
        timeout_s=5,
    ).rows[0]
    assert row == ["2024-01-01", "2025-12-31", 731, 2]
    assert _scalar(engine, "SELECT min(date_key) FROM gold.fact_sales") >= 20240101  # type: ignore[operator]


def test_every_fact_row_joins_to_its_dimensions(engine: DuckDBEngine) -> None:
    orphans = _scalar(
        engine,
        "SELECT count(*) FROM gold.fact_sales AS f "
        "LEFT JOIN gold.dim_date AS d USING (date_key) LEFT JOIN gold.dim_customer AS c USING (customer_key) "
        "LEFT JOIN gold.dim_product AS p USING (product_key) LEFT JOIN gold.dim_store AS s USING (store_key) "
        "WHERE d.date IS NULL OR c.name IS NULL OR p.name IS NULL OR s.name IS NULL",
    )
    assert orphans == 0


def test_domains_are_the_documented_ones(engine: DuckDBEngine) -> None:
    segments = engine.execute(
        "SELECT DISTINCT segment FROM gold.dim_customer ORDER BY 1", max_rows=10, timeout_s=5
    )
    assert segments.rows == [["Consumer"], ["Corporate"], ["Home Office"]]
    channels = engine.execute(
        "SELECT DISTINCT channel FROM gold.dim_store ORDER BY 1", max_rows=10, timeout_s=5
    )
    assert channels.rows == [["Online"], ["Store"]]
    regions = engine.execute(
        "SELECT DISTINCT region FROM gold.dim_customer ORDER BY 1", max_rows=10, timeout_s=5
    )
    assert regions.rows == [["Midwest"], ["Northeast"], ["South"], ["West"]]


def test_net_amount_is_quantity_times_price_less_discount(engine: DuckDBEngine) -> None:
    off = _scalar(
        engine,
        "SELECT max(abs(net_amount - round(quantity * unit_price * (1 - discount), 2))) FROM gold.fact_sales",
    )
    assert off is not None
    assert off <= 0.01  # type: ignore[operator]


def test_holiday_season_outsells_february(engine: DuckDBEngine) -> None:
    rows = engine.execute(
        "SELECT d.month, sum(f.net_amount) FROM gold.fact_sales f JOIN gold.dim_date d USING (date_key) "
        "GROUP BY 1",
        max_rows=12,
        timeout_s=5,
    ).rows
    by_month = {month: float(str(revenue)) for month, revenue in rows}
    assert by_month[12] > 1.3 * by_month[2]


def test_bronze_is_messy_and_silver_is_clean(engine: DuckDBEngine) -> None:
    assert _scalar(engine, "SELECT count(*) FROM bronze.orders WHERE unit_price LIKE '$%'")
    assert _scalar(engine, "SELECT count(*) FROM bronze.orders WHERE order_date LIKE '%/%/%'")
    duplicated = "SELECT count(*) - count(DISTINCT (order_id, line_number)) FROM {}"
    assert _scalar(engine, duplicated.format("bronze.orders"))
    assert _scalar(engine, duplicated.format("silver.orders")) == 0
    completed = _scalar(engine, "SELECT count(*) FROM silver.orders WHERE status = 'completed'")
    assert completed == _scalar(engine, "SELECT count(*) FROM gold.fact_sales")


def test_gold_tables_are_the_documented_ones(engine: DuckDBEngine) -> None:
    assert {t.name for t in engine.catalog().tables} >= {f"gold.{t}" for t in GOLD_TABLES}
    fact = engine.catalog().table("gold.fact_sales")
    assert fact is not None
    assert [c.name for c in fact.columns] == [
        "order_id", "line_number", "date_key", "customer_key", "product_key", "store_key",
        "quantity", "unit_price", "discount", "net_amount",
    ]  # fmt: skip


VERIFIED = load_verified_queries("sales")


def test_the_verified_library_is_a_demo_sized_set() -> None:
    assert 10 <= len(VERIFIED) <= 14
    assert {q["language"] for q in VERIFIED} == {"sql"}
    assert [q["question"] for q in VERIFIED if not q["question"].endswith("?")] == []


@pytest.mark.parametrize("verified", VERIFIED, ids=[q["question"] for q in VERIFIED])
def test_every_verified_query_runs_and_returns_rows(engine: DuckDBEngine, verified: dict[str, str]) -> None:
    result = engine.execute(verified["query"], max_rows=100, timeout_s=10)
    assert result.row_count > 0
    assert not result.truncated
