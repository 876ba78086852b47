"""DAX semantics on a star schema, each answer checked against one computed with pandas.

Filter context, context transition, relationship propagation, expanded tables, CALCULATE's
overwrite and KEEPFILTERS, BLANK handling, and the refusals (an unsupported function or an unknown
name is refused by name, never answered differently).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from loom.engines.contracts import QueryError
from loom.engines.dax.engine import DaxEngine
from loom.engines.sources import ModelSource
from loom.engines.sql.limits import LocalLimits
from tests.engines.dax.star import Star, build


def run(engine: DaxEngine, query: str) -> list[list[object]]:
    return engine.execute(query, max_rows=10_000, timeout_s=30).rows


def as_dict(rows: list[list[object]]) -> dict[object, object]:
    return {row[0]: row[1] for row in rows}


def close(a: object, b: object) -> bool:
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None and (b is None or (isinstance(b, float) and math.isnan(b)))
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)  # type: ignore[arg-type]


def same(got: dict[Any, Any], expected: dict[Any, Any]) -> None:
    assert got.keys() == expected.keys()
    for key in expected:
        assert close(got[key], expected[key]), (key, got[key], expected[key])


def key(value: object) -> object:
    return (
        None if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA else value
    )


def by(frame: pd.DataFrame, column: str, value: pd.Series) -> dict[object, object]:
    sums = value.groupby(frame[column], dropna=False).sum(min_count=1)
    return {key(k): (None if pd.isna(v) else float(v)) for k, v in sums.items()}


def test_revenue_by_a_dimension_column_groups_through_the_relationship(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    got = as_dict(run(engine, 'EVALUATE SUMMARIZECOLUMNS(Product[Color], "r", [Revenue])'))
    same(got, by(joined, "Color", joined["Amount"]))


def test_a_boolean_filter_compares_text_without_case_and_overwrites_the_group(
    engine: DaxEngine, star: Star
) -> None:
    joined = star.joined()
    red = joined[joined["Color"] == "Red"]
    by_category = as_dict(run(engine, 'EVALUATE SUMMARIZECOLUMNS(Product[Category], "r", [Red Revenue])'))
    same(by_category, by(red, "Category", red["Amount"]))
    # Grouped by the column the filter names, the filter replaces the group's: every color shows red's.
    by_color = as_dict(run(engine, 'EVALUATE SUMMARIZECOLUMNS(Product[Color], "r", [Red Revenue])'))
    assert set(by_color) == {"Red", "Blue", "Green", None}
    assert all(close(v, red["Amount"].sum()) for v in by_color.values())


def test_keepfilters_intersects_instead(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    query = (
        "EVALUATE SUMMARIZECOLUMNS(Product[Color], "
        '"r", CALCULATE([Revenue], KEEPFILTERS(Product[Color] = "Red")))'
    )
    same(as_dict(run(engine, query)), {"Red": joined.loc[joined["Color"] == "Red", "Amount"].sum()})


def test_all_of_a_table_gives_the_share_of_the_total(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    total = joined["Amount"].sum()
    query = 'EVALUATE SUMMARIZECOLUMNS(Product[Category], "share", DIVIDE([Revenue], [All Products Revenue]))'
    expected = {k: v / total for k, v in by(joined, "Category", joined["Amount"]).items()}
    same(as_dict(run(engine, query)), expected)


def test_rows_whose_measures_are_all_blank_are_left_out(engine: DaxEngine, star: Star) -> None:
    got = as_dict(run(engine, 'EVALUATE SUMMARIZECOLUMNS(Product[Name], "n", [Orders])'))
    counts = star.joined().groupby("Name").size()
    assert "P12" not in got  # no sales
    same(got, {k: float(v) for k, v in counts.items()})


def test_context_transition_in_a_filter_over_customers(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    per_customer = joined.groupby(["CustomerKey", "Segment"])["Amount"].sum().reset_index()
    big = per_customer[per_customer["Amount"] > 1500]
    expected = {k: float(v) for k, v in big.groupby("Segment").size().items()}
    same(
        as_dict(run(engine, 'EVALUATE SUMMARIZECOLUMNS(Customer[Segment], "big", [Big Customers])')), expected
    )


def test_a_table_filter_on_the_fact_table_keeps_its_rows(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    kept = joined[joined["Quantity"] >= 3]
    query = (
        "EVALUATE SUMMARIZECOLUMNS(Product[Category], "
        '"r", CALCULATE([Revenue], FILTER(Sales, Sales[Quantity] >= 3)))'
    )
    same(as_dict(run(engine, query)), by(kept, "Category", kept["Amount"]))


def test_a_fact_table_filter_reaches_a_dimension_through_the_expanded_table(
    engine: DaxEngine, star: Star
) -> None:
    # CALCULATE(COUNTROWS(Product), Sales): the products that have sales (a filter on the expanded
    # Sales table filters Product too; a filter on a Sales column alone would not).
    rows = run(
        engine, 'EVALUATE ROW("sold", CALCULATE(COUNTROWS(Product), Sales), "all", COUNTROWS(Product))'
    )
    assert rows == [[star.sales["ProductKey"].nunique(), 12]]


def test_distinct_counts_count_blank_as_a_value(engine: DaxEngine) -> None:
    query = (
        'EVALUATE ROW("values", COUNTROWS(VALUES(Product[Color])), '
        '"distinct", DISTINCTCOUNT(Product[Color]), '
        '"noblank", DISTINCTCOUNTNOBLANK(Product[Color]), "counted", COUNT(Product[Color]))'
    )
    assert run(engine, query) == [[4, 4, 3, 9]]


def test_topn_keeps_the_largest(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    top = joined.groupby("Name")["Amount"].sum().sort_values(ascending=False).head(3)
    rows = run(
        engine, 'EVALUATE TOPN(3, SUMMARIZECOLUMNS(Product[Name], "r", [Revenue]), [r]) ORDER BY [r] DESC'
    )
    assert [r[0] for r in rows] == list(top.index)


def test_addcolumns_over_values_and_order_by(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    rows = run(
        engine, 'EVALUATE ADDCOLUMNS(VALUES(Customer[Country]), "r", [Revenue]) ORDER BY Customer[Country]'
    )
    assert [r[0] for r in rows] == sorted(star.customer["Country"].unique())
    same(as_dict(rows), by(joined, "Country", joined["Amount"]))


def test_selectcolumns_over_a_filtered_table(engine: DaxEngine, star: Star) -> None:
    rows = run(
        engine,
        "EVALUATE SELECTCOLUMNS(FILTER(Product, Product[List Price] > 50), "
        '"n", Product[Name], "c", Product[Category]) '
        "ORDER BY [n]",
    )
    expected = star.product[star.product["List Price"] > 50].sort_values("Name")
    assert rows == [[n, c] for n, c in zip(expected["Name"], expected["Category"], strict=True)]


def test_related_in_a_row_context(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    query = 'EVALUATE ROW("b", SUMX(FILTER(Sales, RELATED(Product[Category]) = "Bikes"), Sales[Amount]))'
    assert close(run(engine, query)[0][0], joined.loc[joined["Category"] == "Bikes", "Amount"].sum())


def test_blank_arithmetic_and_comparisons(engine: DaxEngine) -> None:
    query = (
        'EVALUATE ROW("plus", BLANK() + 1, "times", BLANK() * 2, "inf", 5 / 0, "divide", DIVIDE(5, 0), '
        '"zero", BLANK() = 0, "text", "A" = "a", "strict", BLANK() == 0, "both", BLANK() + BLANK())'
    )
    assert run(engine, query) == [[1, None, "inf", None, True, True, False, None]]


def test_counting_nothing_is_blank_not_zero(engine: DaxEngine) -> None:
    query = (
        'EVALUATE ROW("n", CALCULATE(COUNTROWS(Sales), Product[Color] = "Purple"), '
        '"s", CALCULATE([Revenue], Product[Color] = "Purple"))'
    )
    assert run(engine, query) == [[None, None]]


def test_switch_true_bands(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    revenue = joined.groupby("Name")["Amount"].sum()
    query = (
        'EVALUATE ADDCOLUMNS(VALUES(Product[Name]), "band", SWITCH(TRUE(), [Revenue] > 2500, "high", '
        '[Revenue] > 1000, "mid", "low"))'
    )
    got = as_dict(run(engine, query))
    expected = {n: "high" if v > 2500 else "mid" if v > 1000 else "low" for n, v in revenue.items()}
    expected["P12"] = "low"  # no sales: BLANK is not above 1000
    assert got == expected


def test_query_variables_and_measures(engine: DaxEngine, star: Star) -> None:
    revenue = star.joined().groupby("Name")["Amount"].sum()
    query = (
        "DEFINE VAR minimum = 2000 MEASURE Sales[Big] = IF([Revenue] > minimum, 1) "
        'EVALUATE SUMMARIZECOLUMNS(Product[Name], "b", [Big])'
    )
    assert set(as_dict(run(engine, query))) == {n for n, v in revenue.items() if v > 2000}


def test_a_filter_table_argument_of_summarizecolumns(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    kept = joined[joined["Country"].isin(["US", "DE"])]
    query = (
        "EVALUATE SUMMARIZECOLUMNS(Product[Category], "
        'FILTER(ALL(Customer[Country]), Customer[Country] IN {"US", "de"}), "r", [Revenue])'
    )
    same(as_dict(run(engine, query)), by(kept, "Category", kept["Amount"]))


def test_allexcept_keeps_the_named_column(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    per_category = joined.groupby("Category")["Amount"].sum()
    query = (
        "EVALUATE SUMMARIZECOLUMNS(Product[Name], Product[Category], "
        '"c", CALCULATE([Revenue], ALLEXCEPT(Product, Product[Category])))'
    )
    got = {r[0]: r[2] for r in run(engine, query)}
    names = star.product.set_index("Name")["Category"]
    same(got, {n: per_category[names[n]] for n in names.index})
    # Grouped by the name alone, nothing filters the category: ALLEXCEPT leaves no filter at all.
    alone = (
        'EVALUATE SUMMARIZECOLUMNS(Product[Name], "c", '
        "CALCULATE([Revenue], ALLEXCEPT(Product, Product[Category])))"
    )
    assert {close(r[1], per_category.sum()) for r in run(engine, alone)} == {True}


def test_a_condition_on_two_columns_of_one_table(engine: DaxEngine, star: Star) -> None:
    joined = star.joined()
    kept = joined[(joined["Color"] == "Red") | (joined["Category"] == "Bikes")]
    query = 'EVALUATE ROW("r", CALCULATE([Revenue], Product[Color] = "Red" || Product[Category] = "Bikes"))'
    assert close(run(engine, query)[0][0], kept["Amount"].sum())


def test_selectedvalue_in_and_out_of_a_group(engine: DaxEngine) -> None:
    rows = run(
        engine, 'EVALUATE SUMMARIZECOLUMNS(Product[Category], "c", SELECTEDVALUE(Product[Category], "many"))'
    )
    assert sorted(str(r[0]) for r in rows) == sorted(str(r[1]) for r in rows)
    assert run(engine, 'EVALUATE ROW("c", SELECTEDVALUE(Product[Category], "many"))') == [["many"]]


def test_aggregations_of_a_column(engine: DaxEngine, star: Star) -> None:
    amount = star.sales["Amount"]
    query = (
        'EVALUATE ROW("min", MIN(Sales[Amount]), "max", MAX(Sales[Amount]), "avg", AVERAGE(Sales[Amount]), '
        '"count", COUNT(Sales[Amount]), "rows", COUNTROWS(Sales), "units", [Units])'
    )
    got = run(engine, query)[0]
    expected = [
        amount.min(),
        amount.max(),
        amount.mean(),
        amount.count(),
        len(amount),
        star.sales["Quantity"].sum(),
    ]
    assert all(close(a, b) for a, b in zip(got, expected, strict=True)), (got, expected)


@pytest.mark.parametrize(
    ("query", "code", "named"),
    [
        ('EVALUATE ROW("x", PATHITEM("a|b", 1))', "unsupported_function", "PATHITEM"),
        ('EVALUATE ROW("x", SUM(Product[Colour]))', "unknown_column", "Color"),
        ('EVALUATE ROW("x", [Revenu])', "unknown_measure", "Revenue"),
        ('EVALUATE ROW("x", Sales[Amount])', "no_row_context", "Sales"),
        ('EVALUATE ROW("x", COUNTROWS(Sale))', "unknown_table", "Sales"),
        ('EVALUATE ROW("x", 1 + "a")', "type_mismatch", "string"),
    ],
)
def test_refusals_name_what_is_wrong(engine: DaxEngine, query: str, code: str, named: str) -> None:
    with pytest.raises(QueryError) as refused:
        run(engine, query)
    assert refused.value.code == code and named in refused.value.message, refused.value.message


def test_result_columns_are_named_as_power_bi_names_them(engine: DaxEngine) -> None:
    result = engine.execute(
        'EVALUATE SUMMARIZECOLUMNS(Product[Color], "Total", [Revenue])', max_rows=10, timeout_s=30
    )
    assert [c.name for c in result.columns] == ["Product[Color]", "[Total]"]
    assert result.engine == "duckdb-dax" and result.query.startswith("EVALUATE")


def test_the_row_cap_holds(engine: DaxEngine) -> None:
    result = engine.execute("EVALUATE Sales", max_rows=5, timeout_s=30)
    assert result.row_count == 5 and result.truncated and result.truncated_by == "rows"


@pytest.fixture(scope="module")
def orphaned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Star, DaxEngine]]:
    star = build(tmp_path_factory.mktemp("orphans"), orphans=True)
    dax = DaxEngine(
        ModelSource(kind="model", name="o", location=str(star.folder)), LocalLimits(isolated=False)
    )
    yield star, dax
    dax.close()


def test_sales_of_a_missing_or_blank_product_are_grouped_under_the_blank_row(
    orphaned: tuple[Star, DaxEngine],
) -> None:
    star, engine = orphaned
    joined = star.joined()
    got = as_dict(run(engine, 'EVALUATE SUMMARIZECOLUMNS(Product[Category], "r", [Revenue])'))
    expected = by(joined, "Category", joined["Amount"])
    assert None in expected  # the orphans' group
    same(got, expected)
    counts = (
        'EVALUATE ROW("values", COUNTROWS(VALUES(Product[Category])), '
        '"distinct", COUNTROWS(DISTINCT(Product[Category])), '
        '"all", COUNTROWS(ALL(Product)), "table", COUNTROWS(Product))'
    )
    assert run(engine, counts) == [[4, 3, 13, 12]]
    filtered = 'EVALUATE SUMMARIZECOLUMNS(Product[Category], Product[Color] = "Red", "r", [Revenue])'
    assert None not in as_dict(run(engine, filtered))  # the blank row is not red
