"""Schema linking on small schemas: values, foreign-key closure, budget, keys, the CLI, and recall."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from loom.cli.catalog import catalog_app
from loom.engines.contracts import Catalog, ForeignKey
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.keys import foreign_keys
from loom.engines.sql.linking import LinkBudget, LinkedSchema, ValueIndex, link
from loom.engines.sql.linking_values import engine_fetcher
from loom.lakehouse.seed import seed_lakehouse
from loom.tools.schema_prompt import render_schema
from tests.engines.test_keys import school_sqlite

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


class Source_:
    def __init__(self, location: Path) -> None:
        engine = DuckDBEngine(DuckDBSource(name="t", location=str(location)))
        self.location = location
        self.catalog: Catalog = engine.catalog()
        self.keys: list[ForeignKey] = foreign_keys(location, self.catalog)
        self.values = ValueIndex.build(self.catalog, engine_fetcher(engine))


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Source_:
    root = tmp_path_factory.mktemp("lh") / "lakehouse"
    seed_lakehouse(root, orders=1000)
    return Source_(root)


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Source_:
    return Source_(school_sqlite(tmp_path_factory.mktemp("school") / "school.sqlite"))


def _columns(linked: LinkedSchema) -> set[str]:
    return {f"{t.name}.{c.name}" for t in linked.tables for c in t.columns}


def test_a_cell_value_finds_its_table(lakehouse: Source_) -> None:
    linked = link(
        "How many customers live in Texas?", lakehouse.catalog, lakehouse.keys, values=lakehouse.values
    )
    assert "gold.dim_customer.state" in _columns(linked)
    assert any("'tx'" in r for r in linked.scores["gold.dim_customer"].columns["state"].reasons)


def test_without_values_the_value_is_not_found(lakehouse: Source_) -> None:
    linked = link("How many live in Texas?", lakehouse.catalog, lakehouse.keys)
    assert "gold.dim_customer.state" not in _columns(linked)


def test_closure_adds_the_bridge_table(school: Source_) -> None:
    linked = link("Which student names and course titles go together?", school.catalog, school.keys)
    assert [t.name for t in linked.tables] == ["course", "enrollment", "student"]
    assert "joins the chosen tables" in linked.scores["enrollment"].reasons
    assert {"enrollment.student_id", "enrollment.course_id", "student.id", "course.id"} <= _columns(linked)
    assert len(linked.foreign_keys) == 2


def test_key_columns_of_kept_tables_are_kept(lakehouse: Source_) -> None:
    linked = link(
        "Total net amount by product category", lakehouse.catalog, lakehouse.keys, values=lakehouse.values
    )
    columns = _columns(linked)
    assert {"gold.fact_sales.net_amount", "gold.dim_product.category"} <= columns
    assert {"gold.fact_sales.product_key", "gold.dim_product.product_key"} <= columns


def test_budget_is_respected(lakehouse: Source_) -> None:
    budget = LinkBudget(max_tables=2, max_columns=6)
    question = "net amount by product category, customer segment, store region and month name"
    linked = link(question, lakehouse.catalog, lakehouse.keys, values=lakehouse.values, budget=budget)
    assert len(linked.tables) <= 2
    assert sum(len(t.columns) for t in linked.tables) <= 6


def test_prunes_and_renders(lakehouse: Source_) -> None:
    linked = link("revenue by store channel", lakehouse.catalog, lakehouse.keys, values=lakehouse.values)
    total = sum(len(t.columns) for t in lakehouse.catalog.tables)
    assert sum(len(t.columns) for t in linked.tables) < total / 2
    text = render_schema(linked.to_catalog())
    assert "gold.dim_store" in text
    assert "channel" in text


class FakeEmbedder:
    """Puts texts about weekends (by name or by day) on one axis, the rest on another: no model."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [
            [1.0, 0.0] if ("weekend" in t.lower() or "saturday" in t.lower()) else [0.0, 1.0] for t in texts
        ]


def test_an_embedder_is_used_when_given(lakehouse: Source_) -> None:
    linked = link("Saturday and Sunday orders", lakehouse.catalog, lakehouse.keys, embedder=FakeEmbedder())
    assert "gold.dim_date.is_weekend" in _columns(linked)


def test_cli_json_shape(school: Source_) -> None:
    app = typer.Typer()
    app.add_typer(catalog_app, name="catalog")
    args = ["catalog", "link", "--source", str(school.location), "--question", "titles of courses"]
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert set(payload) == {"tables", "foreign_keys"}
    table = next(t for t in payload["tables"] if t["name"] == "course")
    assert set(table) == {"name", "score", "why", "columns"}
    assert {"name", "type", "score", "why"} == set(table["columns"][0])
    assert "title" in [c["name"] for c in table["columns"]]


def test_cli_unknown_source(tmp_path: Path) -> None:
    app = typer.Typer()
    app.add_typer(catalog_app, name="catalog")
    result = CliRunner().invoke(app, ["catalog", "link", "--source", str(tmp_path / "nope"), "-q", "x"])
    assert result.exit_code == 2
    assert json.loads(result.output)["error"]["code"] == "unknown_source"


SPIDER = DATA / "nl2sql_spider_dev"


@pytest.mark.skipif(not (SPIDER / "dev.json").exists(), reason=f"Spider dev data absent at {SPIDER}")
def test_recall_on_a_spider_sample() -> None:
    """The first 60 dev questions (concert_singer, pets_1): a fixed, small slice of the benchmark."""
    from benchmarks.schema_linking import database_opener, evaluate, spider

    loaded = spider(DATA)
    assert not isinstance(loaded, str)
    questions, root = loaded
    tallies = evaluate(questions[:60], database_opener(root))
    full = tallies["full"].summary()
    assert full["table_recall"] >= 0.95
    assert full["column_recall"] >= 0.9
    assert full["kept_mean"] < 0.8


def test_a_column_whose_values_cannot_be_read_is_left_out_of_the_value_index() -> None:
    from loom.engines.contracts import QueryError
    from loom.engines.sql.linking_values import engine_fetcher

    class Failing:
        dialect = "duckdb"

        def execute(self, query: str, **limits: object) -> object:
            raise QueryError("timeout", "stopped after the 5 s time limit")

    # Probe 7: the error reached the turn as tool_failed; values are a hint, the question goes on.
    assert engine_fetcher(Failing())("gold.dim_store", "region", 10) == []  # type: ignore[arg-type]
