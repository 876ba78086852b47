"""The rest of the issue's list, each against pandas: the query shape Power BI itself generates
(`__DS0FilterTable`, `__DS0Core`, TOPN 1002), REMOVEFILTERS, the X iterators MINX/MAXX/COUNTX/
AVERAGEX, COUNTA, COUNTBLANK, ISBLANK, HASONEVALUE, PREVIOUSYEAR."""

from __future__ import annotations

import math

import pandas as pd

from loom.engines.dax.engine import DaxEngine
from tests.engines.dax.conftest import rows
from tests.engines.dax.star import Star


def near(a: object, b: float) -> bool:
    return a is not None and math.isclose(float(a), b, rel_tol=1e-9)  # type: ignore[arg-type]


def test_the_query_power_bi_generates_for_a_visual(engine: DaxEngine, star: Star) -> None:
    query = """
DEFINE
    VAR __DS0FilterTable = TREATAS({"Red", "Blue"}, 'Product'[Color])
    VAR __DS0FilterTable2 = FILTER(KEEPFILTERS(VALUES('Customer'[Country])), 'Customer'[Country] <> "JP")
    VAR __DS0Core = SUMMARIZECOLUMNS(
        'Product'[Category], __DS0FilterTable, __DS0FilterTable2,
        "Revenue", 'Sales'[Revenue], "Orders", [Orders])
EVALUATE TOPN(1002, __DS0Core, [Revenue], 0, 'Product'[Category], 1)
ORDER BY [Revenue] DESC, 'Product'[Category]
"""
    got = rows(engine, query)
    joined = star.joined()
    kept = joined[joined["Color"].isin(["Red", "Blue"]) & (joined["Country"] != "JP")]
    expected = kept.groupby("Category").agg(r=("Amount", "sum"), n=("SaleId", "count"))
    expected = expected.sort_values("r", ascending=False)
    assert [r[0] for r in got] == list(expected.index)
    for (_, revenue, orders), (_, e) in zip(got, expected.iterrows(), strict=True):
        assert near(revenue, e["r"]) and orders == e["n"]


def test_removefilters_is_all(engine: DaxEngine, star: Star) -> None:
    query = (
        'EVALUATE SUMMARIZECOLUMNS(Product[Color], "share", '
        "DIVIDE([Revenue], CALCULATE([Revenue], REMOVEFILTERS(Product[Color]))))"
    )
    joined = star.joined()
    total = joined["Amount"].sum()
    by_color = joined.groupby("Color", dropna=False)["Amount"].sum()
    got = {r[0]: r[1] for r in rows(engine, query)}
    for color, amount in by_color.items():
        assert near(got[None if pd.isna(color) else color], amount / total)


def test_x_iterators_over_a_dimension(engine: DaxEngine, star: Star) -> None:
    """Each iterates Customer, evaluating [Revenue] per customer (context transition)."""
    query = (
        'EVALUATE ROW("min", MINX(Customer, [Revenue]), "max", MAXX(Customer, [Revenue]), '
        '"n", COUNTX(Customer, [Revenue]), "avg", AVERAGEX(Customer, [Revenue]))'
    )
    lo, hi, n, avg = rows(engine, query)[0]
    per_customer = star.sales.groupby("CustomerKey")["Amount"].sum(min_count=1).dropna()
    # Customers without sales have a BLANK [Revenue]: skipped by all four.
    assert near(lo, per_customer.min()) and near(hi, per_customer.max())
    assert n == len(per_customer) and near(avg, per_customer.mean())


def test_counta_countblank_and_isblank(engine: DaxEngine, star: Star) -> None:
    query = (
        'EVALUATE ROW("a", COUNTA(Sales[Amount]), "b", COUNTBLANK(Sales[Amount]), '
        '"c", COUNTROWS(FILTER(Sales, ISBLANK(Sales[Amount]))), '
        '"d", ISBLANK(CALCULATE([Revenue], Product[ProductKey] = 12)))'
    )
    a, b, c, d = rows(engine, query)[0]
    blanks = int(star.sales["Amount"].isna().sum())
    assert blanks > 0
    assert a == len(star.sales) - blanks and b == blanks and c == blanks
    assert d is True  # product 12 has no sales


def test_hasonevalue_per_group_and_in_total(engine: DaxEngine, star: Star) -> None:
    query = (
        'EVALUATE ADDCOLUMNS(VALUES(Product[Category]), "one", CALCULATE(HASONEVALUE(Product[Category]))) '
    )
    assert {r[1] for r in rows(engine, query)} == {True}
    assert rows(engine, 'EVALUATE ROW("one", HASONEVALUE(Product[Category]))') == [[False]]


def test_previousyear_from_a_month(engine: DaxEngine, star: Star) -> None:
    query = (
        "EVALUATE CALCULATETABLE(ROW(\"py\", CALCULATE([Revenue], PREVIOUSYEAR('Date'[Date]))), "
        "'Date'[Year] = 2024, 'Date'[Month] = 5)"
    )
    sales = star.sales
    last_year = sales[sales["OrderDate"].dt.year == 2023]["Amount"].sum()
    assert near(rows(engine, query)[0][0], float(last_year))
