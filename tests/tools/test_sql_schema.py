import pytest

from loom.engines.registry import EnginePool
from loom.engines.sources import Source
from loom.lakehouse.seed import seed_lakehouse
from loom.tools import sql_schema


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    root = tmp_path_factory.mktemp("lake")
    seed_lakehouse(root, orders=500)
    return Source(name="lake", location=str(root))


def test_a_small_catalog_is_shown_whole(source: Source) -> None:
    engine = EnginePool().sql_engine(source)
    text, catalog = sql_schema.schema_for(source, engine, "revenue by state")
    assert all(f"- {t.name}:" in text for t in catalog.tables)


def test_a_large_catalog_is_linked_to_the_question(source: Source, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_schema, "LINK_ABOVE", 10)
    engine = EnginePool().sql_engine(source)
    text, catalog = sql_schema.schema_for(source, engine, "Which product category had the most revenue?")
    assert "gold.dim_product" in text and "category" in text
    assert "gold.fact_sales" in text and "product_key" in text  # joinable: the key is kept
    assert "day_name" not in text  # dim_date is not needed
    assert len(text) < len(sql_schema.render_schema(catalog))
