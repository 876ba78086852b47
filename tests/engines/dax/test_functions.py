"""Scalar functions: each checked on values whose answer is known (as Power BI documents it)."""

from __future__ import annotations

import datetime as dt

import pytest

from loom.engines.contracts import QueryError
from loom.engines.dax.engine import DaxEngine
from tests.engines.dax.conftest import rows


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("DATEDIFF(DATE(2024,1,31), DATE(2024,3,1), MONTH)", 2),  # month boundaries crossed
        ("DATEDIFF(DATE(2024,1,6), DATE(2024,1,7), WEEK)", 1),  # Saturday to Sunday: a new week
        ("DATEDIFF(DATE(2024,1,7), DATE(2024,1,13), WEEK)", 0),
        ("DATEDIFF(DATE(2023,12,31), DATE(2024,1,1), YEAR)", 1),
        ('FORMAT(DATE(2024,3,5), "yyyy-MM-dd")', "2024-03-05"),
        ('FORMAT(DATE(2024,3,5), "MMMM yyyy")', "March 2024"),
        ('FORMAT(1234.5, "#,##0.00")', "1,234.50"),
        ('FORMAT(0.256, "0.0%")', "25.6%"),
        ('SEARCH("B", "abc")', 2),
        ('SEARCH("z", "abc", 1, -1)', -1),
        ('FIND("B", "abc", 1, 0)', 0),
        ('SUBSTITUTE("a-b-c", "-", "/")', "a/b/c"),
        ('CONTAINSSTRING("Loom Data", "data")', True),
        ('CONTAINSSTRINGEXACT("Loom Data", "data")', False),
        ("EOMONTH(DATE(2024,1,15), 1)", "2024-02-29T00:00:00"),
        ("EDATE(DATE(2024,1,31), 1)", "2024-02-29T00:00:00"),
        ("WEEKDAY(DATE(2024,3,3))", 1),  # a Sunday
        ("WEEKDAY(DATE(2024,3,3), 2)", 7),
        ("ROUNDUP(1.21, 1)", 1.3),
        ("ROUNDDOWN(-1.29, 1)", -1.2),
        ("CEILING(7, 5)", 10),
        ("FLOOR(7, 5)", 5),
        ("MROUND(15, 10)", 20),
        ("ROUND(2.5, 0)", 3),  # halves away from zero
        ("INT(-1.5)", -2),
        ("MOD(-3, 2)", 1),
        ('VALUE("12.5")', 12.5),
        ('LEFT("Loom", 2) & MID("Loom", 3, 2)', "Loom"),
        ('1 & ""', "1"),
        ('COALESCE(BLANK(), "x")', "x"),
        ('IF(BLANK(), "yes", "no")', "no"),
        ("LOG(100)", 2.0),
    ],
)
def test_function_values(engine: DaxEngine, expression: str, expected: object) -> None:
    got = rows(engine, f'EVALUATE ROW("v", {expression})')[0][0]
    if isinstance(expected, float):
        assert got == pytest.approx(expected)
    else:
        assert got == expected


def test_today_and_now_read_the_query_clock(engine: DaxEngine) -> None:
    at = dt.datetime(2025, 7, 1, 13, 45)
    result = engine.execute('EVALUATE ROW("t", TODAY(), "n", NOW())', max_rows=1, timeout_s=30, now=at)
    assert result.rows == [["2025-07-01T00:00:00", "2025-07-01T13:45:00"]]


def test_isfiltered_sees_direct_filters_only(engine: DaxEngine) -> None:
    query = (
        'EVALUATE SUMMARIZECOLUMNS(Product[Category], "c", ISFILTERED(Product[Category]), '
        '"k", ISFILTERED(Product[Color]))'
    )
    assert {(r[1], r[2]) for r in rows(engine, query)} == {(True, False)}


@pytest.mark.parametrize(
    ("expression", "said"),
    [
        ('SEARCH("z", "abc")', "not found"),
        ('REPT("ab", 1000000)', "100000 characters"),
        ('FORMAT(1, "0.000E+0")', "0.000E+0"),
        ("MOD(1, 0)", "divisor is 0"),  # as in DAX; it was NaN (probe 21: R21-11)
    ],
)
def test_errors_are_errors_not_answers(engine: DaxEngine, expression: str, said: str) -> None:
    with pytest.raises(QueryError) as failed:
        rows(engine, f'EVALUATE ROW("v", {expression})')
    assert said in failed.value.message


@pytest.mark.parametrize(
    ("written", "mended"),
    [
        ("[Revenue]", 'EVALUATE ROW("Value", [Revenue])'),
        (
            'CALCULATE([Revenue], Product[Color] = "Red")',
            'EVALUATE ROW("Value", CALCULATE([Revenue], Product[Color] = "Red"))',
        ),
        (
            'SUMMARIZECOLUMNS(Product[Color], "r", [Revenue])',
            'EVALUATE SUMMARIZECOLUMNS(Product[Color], "r", [Revenue])',
        ),
        ("EVALUATE VALUES('Product'[\n    Color])", "EVALUATE VALUES('Product'[Color])"),
        ("EVALUATE {1}", "EVALUATE {1}"),
        ("not DAX (", "not DAX ("),
    ],
)
def test_small_model_slips_are_mended_before_the_check(written: str, mended: str) -> None:
    from loom.engines.dax.tidy import tidy_dax

    assert tidy_dax(written) == mended


def test_a_measure_written_as_a_column_is_named_as_a_measure(engine: DaxEngine) -> None:
    with pytest.raises(QueryError) as refused:
        rows(engine, 'EVALUATE ROW("r", SUM(Sales[Revenue]))')
    assert "[Revenue] is a measure: write [Revenue] alone" in refused.value.message
