import pytest

from loom.engines.contracts import Catalog, ColumnInfo, ResultSet, TableInfo
from loom.engines.registry import EnginePool
from loom.engines.sources import DuckDBSource, Source, SynapseSource
from loom.lakehouse.seed import seed_lakehouse
from loom.tools import sql_schema
from loom.tools.schema_prompt import SchemaView


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    root = tmp_path_factory.mktemp("lake")
    seed_lakehouse(root, orders=500)
    return DuckDBSource(name="lake", location=str(root))


def test_a_small_catalog_is_shown_whole(source: Source) -> None:
    engine = EnginePool().engine(source, "sql")
    schema = sql_schema.schema_for(source, engine, "revenue by state")
    text, catalog = schema.text, schema.catalog
    assert all(f"- {t.name}:" in text for t in catalog.tables)


def test_the_create_form_shows_the_same_tables_as_statements_with_keys_and_samples(source: Source) -> None:
    engine = EnginePool().engine(source, "sql")
    lines = sql_schema.schema_for(source, engine, "revenue by state").text
    create = sql_schema.schema_for(source, engine, "revenue by state", view=SchemaView("create")).text
    tables = engine.catalog().tables
    assert all(f"CREATE TABLE {t.name} (" in create for t in tables)
    assert "FOREIGN KEY (product_key) REFERENCES gold.dim_product (product_key)" in create
    assert "-- e.g. " in create and "Joins:" not in create
    assert "Joins:" in lines and "CREATE TABLE" not in lines  # each form is kept apart
    assert sql_schema.known_whole_schema(source, engine, SchemaView("create")) is not None  # remembered


def test_a_large_catalog_is_linked_to_the_question(source: Source) -> None:
    engine = EnginePool().engine(source, "sql")
    question = "Which product category had the most revenue?"
    text = sql_schema.schema_for(source, engine, question, view=SchemaView(link_above=10)).text
    assert "gold.dim_product" in text
    assert "category" in text
    assert "gold.fact_sales" in text
    assert "product_key" in text  # joinable: the key is kept
    assert "day_name" not in text  # dim_date is not needed
    assert len(text) < len(sql_schema.render_schema(engine.catalog()))


def test_the_whole_schema_is_known_without_work_once_the_context_is_built(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path_factory.mktemp("fresh")
    seed_lakehouse(root, orders=100)
    fresh = DuckDBSource(name="fresh", location=str(root))
    engine = EnginePool().engine(fresh, "sql")
    assert sql_schema.known_whole_schema(fresh, engine) is None  # nothing built yet: the caller must

    built = sql_schema.schema_for(fresh, engine, "revenue by state")
    assert sql_schema.known_whole_schema(fresh, engine) == built

    # Too large to show whole under a lower threshold: linking is work.
    assert sql_schema.known_whole_schema(fresh, engine, SchemaView(link_above=10)) is None


class CloudEngine:
    """A cloud engine's shape: a catalog, and queries that would be billed (recorded, never run)."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        columns = [ColumnInfo(name="state", type="string"), ColumnInfo(name="amount", type="decimal")]
        self._catalog = Catalog(tables=[TableInfo(name="dbo.sales", columns=columns)])

    def catalog(self) -> Catalog:
        return self._catalog

    def execute(self, query: str, **limits: object) -> ResultSet:
        self.queries.append(query)
        raise AssertionError("a cloud source was scanned for values")


def test_a_cloud_source_is_never_scanned_for_values() -> None:
    source = SynapseSource(
        name="dw", kind="synapse", location="contoso-ondemand.sql.azuresynapse.net", database="lake"
    )
    engine = CloudEngine()
    schema = sql_schema.schema_for(source, engine, "sales in Texas")  # type: ignore[arg-type]
    assert "dbo.sales" in schema.text
    assert schema.catalog is engine.catalog()
    sql_schema.link_question(source, engine, "sales in Texas")  # type: ignore[arg-type]
    assert engine.queries == []
