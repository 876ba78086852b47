"""Table functions over the star schema, against pandas: CROSSJOIN, UNION, GENERATE, TREATAS,
DATATABLE, SUMMARIZE, RELATEDTABLE, CONCATENATEX."""

from __future__ import annotations

import math

from loom.engines.dax.engine import DaxEngine
from tests.engines.dax.conftest import rows
from tests.engines.dax.star import Star


def test_crossjoin_of_two_columns(engine: DaxEngine, star: Star) -> None:
    got = rows(engine, "EVALUATE CROSSJOIN(VALUES(Customer[Segment]), VALUES(Product[Category]))")
    assert len(got) == star.customer["Segment"].nunique() * star.product["Category"].nunique()


def test_union_keeps_duplicates_and_filters_by_lineage(engine: DaxEngine, star: Star) -> None:
    both = rows(engine, 'EVALUATE UNION(ROW("c", "US"), ROW("c", "US"), ROW("c", "JP"))')
    assert sorted(r[0] for r in both) == ["JP", "US", "US"]  # type: ignore[type-var]
    filtered = rows(
        engine,
        'EVALUATE ROW("r", CALCULATE([Revenue], UNION('
        'FILTER(VALUES(Customer[Country]), Customer[Country] = "US"), '
        'FILTER(VALUES(Customer[Country]), Customer[Country] = "JP"))))',
    )
    joined = star.joined()
    assert math.isclose(filtered[0][0], joined.loc[joined["Country"].isin(["US", "JP"]), "Amount"].sum())  # type: ignore[arg-type]


def test_generate_runs_the_second_table_per_row_of_the_first(engine: DaxEngine, star: Star) -> None:
    query = (
        "EVALUATE GENERATE(VALUES(Product[Category]), "
        'TOPN(1, CALCULATETABLE(SUMMARIZECOLUMNS(Customer[Country], "r", [Revenue])), [r]))'
    )
    got = {r[0]: (r[1], r[2]) for r in rows(engine, query)}
    joined = star.joined()
    for category, frame in joined.groupby("Category"):
        per_country = frame.groupby("Country")["Amount"].sum()
        assert got[category][0] == per_country.idxmax()
        assert math.isclose(got[category][1], per_country.max())  # type: ignore[arg-type]


def test_treatas_filters_the_column_it_names(engine: DaxEngine, star: Star) -> None:
    got = rows(engine, 'EVALUATE ROW("r", CALCULATE([Revenue], TREATAS({"DE", "FR"}, Customer[Country])))')
    joined = star.joined()
    assert math.isclose(got[0][0], joined.loc[joined["Country"].isin(["DE", "FR"]), "Amount"].sum())  # type: ignore[arg-type]


def test_datatable_has_typed_rows(engine: DaxEngine) -> None:
    got = rows(
        engine, 'EVALUATE DATATABLE("Name", STRING, "N", INTEGER, {{"a", 1}, {"b", 2}}) ORDER BY [N] DESC'
    )
    assert got == [["b", 2], ["a", 1]]


def test_summarize_groups_through_lookups_and_adds_columns(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    got = rows(engine, 'EVALUATE SUMMARIZE(Sales, Product[Category], Customer[Segment], "r", [Revenue])')
    expected = joined.groupby(["Category", "Segment"])["Amount"].sum()
    assert len(got) == len(expected)
    for category, segment, revenue in got:
        assert math.isclose(revenue, expected[(category, segment)])  # type: ignore[arg-type]
    only_big = rows(engine, "EVALUATE SUMMARIZE(FILTER(Sales, Sales[Quantity] = 5), Product[Category])")
    assert sorted(r[0] for r in only_big) == sorted(joined.loc[joined["Quantity"] == 5, "Category"].unique())  # type: ignore[type-var]


def test_relatedtable_counts_each_customers_sales(engine: DaxEngine, star: Star) -> None:
    got = {
        r[0]: r[1]
        for r in rows(
            engine, 'EVALUATE ADDCOLUMNS(VALUES(Customer[CustomerKey]), "n", COUNTROWS(RELATEDTABLE(Sales)))'
        )
    }
    counts = star.sales.groupby("CustomerKey").size()
    assert got == {**{int(k): int(v) for k, v in counts.items()}, 8: None}


def test_concatenatex_joins_in_order(engine: DaxEngine, star: Star) -> None:
    got = rows(
        engine,
        'EVALUATE ROW("c", CONCATENATEX(VALUES(Customer[Country]), Customer[Country], ", ", '
        "Customer[Country], DESC))",
    )
    assert got == [[", ".join(sorted(star.customer["Country"].unique(), reverse=True))]]
