"""Microsoft's two Power BI sample models (Regional Sales, Corporate Spend): all 30 of their measures
evaluated by category, territory and month, each checked against the same definition computed
with pandas from the model's own tables."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loom.engines.dax.engine import DaxEngine
from loom.engines.sources import ModelSource
from loom.engines.sql.limits import LocalLimits

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "data" / "powerbi_semantic_models"
REGIONAL = SAMPLES / "Regional_Sales_Sample"
SPEND = SAMPLES / "Corporate_Spend"
pytestmark = pytest.mark.skipif(not REGIONAL.is_dir(), reason=f"the Power BI samples are absent at {SAMPLES}")


def engine_for(folder: Path) -> Iterator[DaxEngine]:
    engine = DaxEngine(
        ModelSource(kind="model", name=folder.name, location=str(folder)), LocalLimits(isolated=False)
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def regional() -> Iterator[DaxEngine]:
    yield from engine_for(REGIONAL)


@pytest.fixture(scope="module")
def spend() -> Iterator[DaxEngine]:
    yield from engine_for(SPEND)


def table(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / "tables" / f"{name}.csv")


def blank_sum(values: pd.Series) -> float | None:
    return None if values.dropna().empty else float(values.sum())


def plus(a: float | None, b: float | None) -> float | None:
    return None if a is None and b is None else (a or 0.0) + (b or 0.0)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None:
        return None
    return math.inf if not b else a / b


def mround(x: float, m: float) -> float:
    return math.floor(x / m + 0.5) * m  # halves away from zero (x is never negative here)


def regional_measures(rows: pd.DataFrame) -> dict[str, object]:
    """The 15 measures of Regional Sales, as its dax_measures.csv defines them, over `rows`."""
    won = rows[rows["Status"] == "Won"]
    lost = rows[rows["Status"] == "Lost"]
    open_ = rows[rows["Status"] == "Open"]
    stage = pd.to_numeric(open_["Sales Stage"].str[:1], errors="coerce")
    pipeline = blank_sum(open_.loc[stage >= 2, "Value"])
    revenue_won = blank_sum(won["Value"])
    count_won = len(won) or None
    count_lost = len(lost) or None
    close = ratio(count_won, plus(count_won, count_lost))
    revenue_open = blank_sum(open_["Value"])  # the forecast adjustment is 0: no single value is selected
    base = mround(plus(revenue_won, (pipeline or 0) * 0.6) or 0.0, 1_000_000)
    goal = base if base > 0 else mround(plus(revenue_won, (pipeline or 0) * 0.6) or 0.0, 100_000)
    forecast = plus(revenue_won, pipeline)
    return {
        "Revenue Won": revenue_won,
        "Revenue In Pipeline": pipeline,
        "Forecast %": ratio(forecast, goal),
        "Forecast": forecast,
        "Opportunity Count In Pipeline": len(open_.dropna(subset=["Value"])) or None,
        "Opportunity Count": len(rows) or None,
        "Count of Won": count_won,
        "Count of Lost": count_lost,
        "Close %": close,
        "Revenue Open": revenue_open,
        "Rev Goal": goal,
        "Forecast Adjustment Value": 0,
        "Revenue Won Average Deal Size": None if won.empty else float(won["Value"].mean()),
        "Forecast by Win/Loss Ratio": None if revenue_open is None or close is None else revenue_open * close,
        "Fcst adj slicer alt text": "Use the slicer to adjust the forecast, current value is 0",
    }


def same(got: object, expected: object, where: str) -> None:
    if isinstance(expected, str) or expected is None:
        assert got == expected, where
        return
    assert got is not None and math.isclose(float(got), float(expected), rel_tol=1e-9), where  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("group", "by"),
    [("Products[Product Category]", "Product Category"), ("Territories[Territory]", "Territory")],
)
def test_regional_sales_measures_by_category_and_territory(regional: DaxEngine, group: str, by: str) -> None:
    opportunities = table(REGIONAL, "Opportunities")
    joined = (
        opportunities.merge(table(REGIONAL, "Products"), on="ProductSeq", how="left")
        .merge(table(REGIONAL, "Accounts")[["AccountSeq", "TerritorySeq"]], on="AccountSeq", how="left")
        .merge(table(REGIONAL, "Territories"), on="TerritorySeq", how="left")
    )
    names = list(regional_measures(joined))
    query = f"EVALUATE SUMMARIZECOLUMNS({group}, " + ", ".join(f'"{n}", [{n}]' for n in names) + ")"
    result = regional.execute(query, max_rows=1000, timeout_s=60)
    got = {row[0]: row[1:] for row in result.rows}
    assert set(got) == set(joined[by].dropna())
    for value, rows in joined.groupby(by):
        expected = regional_measures(rows)
        for name, cell in zip(names, got[value], strict=True):
            same(cell, expected[name], f"{value}: [{name}]")


def test_regional_sales_totals_match_the_extraction_notes(regional: DaxEngine) -> None:
    # SOURCES.md: [Revenue Won] = 26,435,925, [Opportunity Count] = 20,000, [Count of Won] = 7,282.
    result = regional.execute(
        'EVALUATE ROW("won", [Revenue Won], "n", [Opportunity Count], "w", [Count of Won])',
        max_rows=1,
        timeout_s=60,
    )
    assert result.rows == [[26_435_925, 20_000, 7_282]]


SCENARIOS = {
    "Actual": "Actual",
    "LE1": "Latest Estimate 1",
    "LE2": "Latest Estimate 2",
    "LE3": "Latest Estimate 3",
    "Plan": "Plan",
}


def test_corporate_spend_measures_by_month_are_year_to_date(spend: DaxEngine) -> None:
    fact = table(SPEND, "Fact").merge(table(SPEND, "Scenario"), on="Scenario ID", how="left")
    fact["Date"] = pd.to_datetime(fact["Date"])
    names = [
        "Amount",
        *SCENARIOS,
        *(f"Var {s}" for s in list(SCENARIOS)[1:]),
        *(f"Var {s} %" for s in list(SCENARIOS)[1:]),
        "Actual/Plan",
    ]
    query = (
        "EVALUATE SUMMARIZECOLUMNS('Date'[Year], 'Date'[Period], "
        + ", ".join(f'"{n}", [{n}]' for n in names)
        + ")"
    )
    result = spend.execute(query, max_rows=1000, timeout_s=60)
    assert result.rows, "no month had spending"
    dates = table(SPEND, "Date")
    for row in result.rows:
        year, period, *cells = (int(row[0]), int(row[1]), *row[2:])  # type: ignore[call-overload]
        month_dates = pd.to_datetime(dates[(dates["Year"] == year) & (dates["Period"] == period)]["Date"])
        last = month_dates.max()
        to_date = fact[
            (fact["Date"] >= pd.Timestamp(year=int(year), month=1, day=1)) & (fact["Date"] <= last)
        ]
        amount = {
            k: blank_sum(to_date.loc[to_date["ScenarioDescription"] == d, "Value"])
            for k, d in SCENARIOS.items()
        }
        scaled = {k: None if v is None else v * 0.3 for k, v in amount.items()}
        total = blank_sum(to_date["Value"])
        expected: dict[str, object] = {"Amount": None if total is None else total * 0.3, **scaled}
        for s in list(SCENARIOS)[1:]:
            var = (
                None
                if scaled["Actual"] is None and scaled[s] is None
                else (scaled["Actual"] or 0) - (scaled[s] or 0)
            )
            expected[f"Var {s}"] = var
            expected[f"Var {s} %"] = None if var is None or not scaled[s] else var / scaled[s]  # type: ignore[operator]
        expected["Actual/Plan"] = scaled["Actual"]
        for name, cell in zip(names, cells, strict=True):
            wanted = expected[name]
            if isinstance(wanted, float) and abs(wanted) < 1e-6:
                assert isinstance(cell, int | float) and abs(cell) < 1e-6, f"{year}-{period}: [{name}]"
                continue
            same(cell, expected[name], f"{year}-{period}: [{name}]")
