"""A relationship that filters both ways (Sales ↔ Product), against pandas: a filter on the many
side's other lookups (Customer) reaches Product through the sales that pass it."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator

import pytest

from loom.engines.dax.engine import DaxEngine
from tests.engines.dax.conftest import rows
from tests.engines.dax.star import Star
from tests.engines.dax.test_models import engine_for


@pytest.fixture(scope="module")
def both(star: Star, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaxEngine]:
    folder = tmp_path_factory.mktemp("both") / "m"
    shutil.copytree(star.folder, folder)
    bim = json.loads((folder / "model.bim").read_text())
    for r in bim["model"]["relationships"]:
        if r["fromTable"] == "Sales" and r["toTable"] == "Product":
            r["crossFilteringBehavior"] = "bothDirections"
    (folder / "model.bim").write_text(json.dumps(bim))
    dax = engine_for(folder)
    yield dax
    dax.close()


def bought_by(star: Star) -> dict[str, set[int]]:
    joined = star.joined().dropna(subset=["ProductKey"])
    return {k: set(g["ProductKey"].astype(int)) for k, g in joined.groupby("Country")}


def test_products_are_filtered_by_the_customers_who_bought_them(both: DaxEngine, star: Star) -> None:
    got = {
        r[0]: r[1]
        for r in rows(both, 'EVALUATE SUMMARIZECOLUMNS(Customer[Country], "n", COUNTROWS(Product))')
    }
    expected = {country: len(keys) for country, keys in bought_by(star).items()}
    assert got == expected
    names = rows(both, 'EVALUATE CALCULATETABLE(VALUES(Product[ProductKey]), Customer[Country] = "US")')
    assert {r[0] for r in names} == bought_by(star)["US"]


def test_a_measure_over_product_sees_the_cross_filter(both: DaxEngine, star: Star) -> None:
    query = 'EVALUATE SUMMARIZECOLUMNS(Customer[Segment], "p", SUM(Product[List Price]))'
    got = {r[0]: r[1] for r in rows(both, query)}
    joined = star.joined().dropna(subset=["ProductKey"])
    prices = star.product.set_index("ProductKey")["List Price"]
    for segment, frame in joined.groupby("Segment"):
        expected = float(prices.loc[sorted(set(frame["ProductKey"].astype(int)))].sum())
        assert math.isclose(got[segment], expected)  # type: ignore[arg-type]


def test_without_the_relationship_both_ways_product_is_not_filtered(engine: DaxEngine, star: Star) -> None:
    got = rows(engine, 'EVALUATE SUMMARIZECOLUMNS(Customer[Country], "n", COUNTROWS(Product))')
    # SUMMARIZECOLUMNS keeps only countries with some measure: every one, each counting all products.
    assert {r[1] for r in got} == {len(star.product)}


def test_sales_measures_are_unchanged_by_the_direction(both: DaxEngine, engine: DaxEngine) -> None:
    query = 'EVALUATE SUMMARIZECOLUMNS(Product[Color], Customer[Country], "r", [Revenue], "n", [Orders])'
    assert sorted(map(repr, rows(both, query))) == sorted(map(repr, rows(engine, query)))
