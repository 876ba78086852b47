"""The sample graph drawn from the seeded lakehouse: its answers agree with the lakehouse's, its
lineage is the lakehouse's own, and every verified traversal of `sales-graph` runs on it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable

from loom.agent.sources import GRAPH_SOURCE, _graph
from loom.engines.graph.engine import GraphEngine
from loom.engines.sql.limits import LocalLimits
from loom.lakehouse.graph import is_written, write_graph
from loom.lakehouse.seed import seed_lakehouse


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lakehouse")
    seed_lakehouse(root, orders=400)
    return root


@pytest.fixture(scope="module")
def engine(lakehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> GraphEngine:
    folder = write_graph(lakehouse, tmp_path_factory.mktemp("graph"))
    assert is_written(folder)
    return GraphEngine(_graph(folder), LocalLimits(isolated=False))


def gold(lakehouse: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    for table in ("dim_customer", "fact_sales"):
        con.register(table, DeltaTable(str(lakehouse / "gold" / table)).to_pyarrow_table())
    return con.execute(sql).fetchall()


def values(engine: GraphEngine, query: str) -> list[object]:
    return [row[0] for row in engine.execute(query, max_rows=10_000, timeout_s=30).rows]


def test_customers_by_region_agree_with_the_lakehouse(engine: GraphEngine, lakehouse: Path) -> None:
    [by_region] = values(engine, "g.V().hasLabel('customer').groupCount().by('region')")
    counted = gold(lakehouse, "SELECT region, count(*) FROM dim_customer GROUP BY 1")
    assert by_region == {str(region): count for region, count in counted}


def test_who_bought_what_agrees_with_the_lakehouse(engine: GraphEngine, lakehouse: Path) -> None:
    pairs = gold(lakehouse, "SELECT count(DISTINCT (customer_key, product_key)) FROM fact_sales")
    assert values(engine, "g.E().hasLabel('bought').count()") == [pairs[0][0]]
    [revenue] = values(engine, "g.E().hasLabel('bought').values('revenue').sum()")
    [[total]] = gold(lakehouse, "SELECT sum(net_amount) FROM fact_sales")
    assert revenue == pytest.approx(float(str(total)), abs=0.01 * len(pairs))  # each edge rounded to cents


def test_the_lineage_is_the_lakehouses_own(engine: GraphEngine) -> None:
    fed = values(
        engine, "g.V().has('table','name','bronze.orders').repeat(out('feeds')).emit().dedup().values('name')"
    )
    assert Counter(fed) == Counter(
        [
            "silver.orders",
            "gold.fact_sales",
            "gold.dim_customer",
            "gold.dim_product",
            "gold.dim_store",
            "gold.dim_date",
        ]
    )


def test_every_verified_traversal_runs_and_answers(engine: GraphEngine) -> None:
    source = _graph(Path("."))
    assert source.name == GRAPH_SOURCE and len(source.verified_queries) >= 4
    for verified in source.verified_queries:
        assert values(engine, verified.query), verified.question
