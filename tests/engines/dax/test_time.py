"""Time intelligence and USERELATIONSHIP on the star schema's date table, against pandas."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from loom.engines.dax.engine import DaxEngine
from tests.engines.dax.conftest import rows
from tests.engines.dax.star import Star


def near(a: object, b: float | None) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None
    return a is not None and math.isclose(float(a), b, rel_tol=1e-9, abs_tol=1e-6)  # type: ignore[arg-type]


def monthly(engine: DaxEngine, measure: str) -> dict[tuple[int, int], object]:
    query = f"EVALUATE SUMMARIZECOLUMNS('Date'[Year], 'Date'[Month], \"m\", {measure})"
    return {(int(r[0]), int(r[1])): r[2] for r in rows(engine, query)}  # type: ignore[call-overload]


def amount(
    sales: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, column: str = "OrderDate"
) -> float | None:
    kept = sales[(sales[column] >= start) & (sales[column] <= end)]["Amount"]
    return None if kept.dropna().empty else float(kept.sum())


def month_end(year: int, month: int) -> pd.Timestamp:
    return pd.Timestamp(year=year, month=month, day=1) + pd.offsets.MonthEnd(0)


def test_totalytd_inside_a_month_is_the_year_so_far(engine: DaxEngine, star: Star) -> None:
    got = monthly(engine, "TOTALYTD([Revenue], 'Date'[Date])")
    for (year, month), value in got.items():
        assert near(
            value, amount(star.sales, pd.Timestamp(year=year, month=1, day=1), month_end(year, month))
        )
    assert len(got) == 24


def test_sameperiodlastyear_and_dateadd(engine: DaxEngine, star: Star) -> None:
    last_year = monthly(engine, "CALCULATE([Revenue], SAMEPERIODLASTYEAR('Date'[Date]))")
    for (year, month), value in last_year.items():
        assert year == 2024, "2023 has no year before it in the date table: its rows are blank"
        assert near(
            value, amount(star.sales, pd.Timestamp(year=2023, month=month, day=1), month_end(2023, month))
        )
    previous = monthly(engine, "CALCULATE([Revenue], DATEADD('Date'[Date], -1, MONTH))")
    for (year, month), value in previous.items():
        start = pd.Timestamp(year=year, month=month, day=1) - pd.offsets.MonthBegin(1)
        assert near(value, amount(star.sales, start, start + pd.offsets.MonthEnd(0))), (year, month)


def test_previousmonth_and_parallelperiod(engine: DaxEngine, star: Star) -> None:
    got = monthly(engine, "CALCULATE([Revenue], PREVIOUSMONTH('Date'[Date]))")
    assert (2023, 1) not in got
    start = pd.Timestamp("2024-02-01")
    assert near(got[(2024, 3)], amount(star.sales, start, start + pd.offsets.MonthEnd(0)))
    quarter = rows(
        engine,
        'EVALUATE CALCULATETABLE(ROW("q", '
        "CALCULATE([Revenue], PARALLELPERIOD('Date'[Date], -1, QUARTER))), "
        "'Date'[Date] = DATE(2024, 5, 10))",
    )
    assert near(quarter[0][0], amount(star.sales, pd.Timestamp("2024-01-01"), pd.Timestamp("2024-03-31")))


def test_datesbetween_and_datesinperiod(engine: DaxEngine, star: Star) -> None:
    between = rows(
        engine,
        'EVALUATE ROW("b", '
        "CALCULATE([Revenue], DATESBETWEEN('Date'[Date], DATE(2023,3,5), DATE(2023,6,1))))",
    )
    assert near(between[0][0], amount(star.sales, pd.Timestamp("2023-03-05"), pd.Timestamp("2023-06-01")))
    window = rows(
        engine,
        "EVALUATE ROW(\"w\", CALCULATE([Revenue], DATESINPERIOD('Date'[Date], DATE(2024,6,30), -3, MONTH)))",
    )
    assert near(window[0][0], amount(star.sales, pd.Timestamp("2024-04-01"), pd.Timestamp("2024-06-30")))


def test_userelationship_counts_by_ship_date_instead(engine: DaxEngine, star: Star) -> None:
    query = (
        "EVALUATE SUMMARIZECOLUMNS('Date'[Year], \"ordered\", [Revenue], "
        "\"shipped\", CALCULATE([Revenue], USERELATIONSHIP(Sales[ShipDate], 'Date'[Date])))"
    )
    got = {int(r[0]): (r[1], r[2]) for r in rows(engine, query)}  # type: ignore[call-overload]
    for year in (2023, 2024):
        start, end = pd.Timestamp(year=year, month=1, day=1), pd.Timestamp(year=year, month=12, day=31)
        assert near(got[year][0], amount(star.sales, start, end, "OrderDate"))
        assert near(got[year][1], amount(star.sales, start, end, "ShipDate"))
    assert got[2023][0] != got[2023][1]  # some orders of December ship in January


def test_lastdate_as_a_value_and_as_a_filter(engine: DaxEngine, star: Star) -> None:
    got = rows(
        engine,
        'EVALUATE CALCULATETABLE(ROW("last", LASTDATE(\'Date\'[Date]), "on", CALCULATE([Revenue], '
        "LASTDATE('Date'[Date]))), 'Date'[Year] = 2023)",
    )
    assert got[0][0] == "2023-12-31T00:00:00"
    assert near(got[0][1], amount(star.sales, pd.Timestamp("2023-12-31"), pd.Timestamp("2023-12-31")))


@pytest.mark.parametrize("function", ["DATESYTD('Sales'[Quantity])", "DATEADD('Date'[Date], 1, WEEK)"])
def test_time_functions_refuse_what_is_not_a_date_or_a_unit(engine: DaxEngine, function: str) -> None:
    from loom.engines.contracts import QueryError

    with pytest.raises(QueryError):
        rows(engine, f'EVALUATE ROW("x", CALCULATE([Revenue], {function}))')


def test_year_to_date_of_counts_extremes_and_distinct_counts_by_a_second_grouping(
    engine: DaxEngine, star: Star
) -> None:
    """The aggregations that add up per date first (COUNTROWS, MAX) and one that cannot
    (DISTINCTCOUNT), with another group's filter beside the dates'."""
    query = (
        "EVALUATE SUMMARIZECOLUMNS('Date'[Year], 'Date'[Month], Product[Color], "
        "\"n\", TOTALYTD(COUNTROWS(Sales), 'Date'[Date]), "
        "\"top\", TOTALYTD(MAX(Sales[Amount]), 'Date'[Date]), "
        "\"who\", TOTALYTD(DISTINCTCOUNT(Sales[CustomerKey]), 'Date'[Date]))"
    )
    joined = star.joined()
    checked = 0
    for year, month, color, n, top, who in rows(engine, query):
        start = pd.Timestamp(year=int(year), month=1, day=1)  # type: ignore[call-overload]
        end = month_end(int(year), int(month))  # type: ignore[call-overload]
        same_color = joined["Color"].isna() if color is None else joined["Color"] == color
        kept = joined[same_color & (joined["OrderDate"] >= start) & (joined["OrderDate"] <= end)]
        assert n == len(kept), (year, month, color)
        assert near(top, None if kept["Amount"].dropna().empty else float(kept["Amount"].max()))
        assert who == kept["CustomerKey"].nunique()
        checked += 1
    assert checked >= 24 * 3
