"""A query's own columns and tables (DEFINE COLUMN, DEFINE TABLE), against pandas."""

from __future__ import annotations

import math

import pytest

from loom.engines.contracts import QueryError
from loom.engines.dax.engine import DaxEngine
from tests.engines.dax.conftest import rows, same_by_key
from tests.engines.dax.star import Star


def test_a_defined_column_is_computed_per_row_and_groups_like_a_model_column(
    engine: DaxEngine, star: Star
) -> None:
    query = (
        'DEFINE COLUMN Sales[Size] = IF(Sales[Amount] >= 200, "big", "small") '
        'EVALUATE SUMMARIZECOLUMNS(Sales[Size], "r", [Revenue]) ORDER BY Sales[Size]'
    )
    got = {r[0]: r[1] for r in rows(engine, query)}
    sales = star.sales
    # BLANK compares as 0: a sale with no amount is "small".
    size = (sales["Amount"].fillna(0) >= 200).map({True: "big", False: "small"})
    same_by_key(got, sales["Amount"].groupby(size).sum())


def test_a_defined_column_reads_lookups_and_filters_through_relationships(
    engine: DaxEngine, star: Star
) -> None:
    query = (
        "DEFINE COLUMN Sales[Line Value] = Sales[Quantity] * RELATED(Product[List Price]) "
        'EVALUATE SUMMARIZECOLUMNS(Product[Category], "v", SUM(Sales[Line Value]))'
    )
    got = {r[0]: r[1] for r in rows(engine, query)}
    joined = star.joined()
    same_by_key(got, (joined["Quantity"] * joined["List Price"]).groupby(joined["Category"]).sum(min_count=1))


def test_a_defined_measure_may_use_a_defined_column(engine: DaxEngine, star: Star) -> None:
    query = (
        "DEFINE MEASURE Sales[Doubled] = SUM(Sales[Twice]) "
        "COLUMN Sales[Twice] = Sales[Quantity] * 2 "
        'EVALUATE ROW("d", [Doubled])'
    )
    assert rows(engine, query)[0][0] == 2 * star.sales["Quantity"].sum()


def test_a_defined_table_is_a_table_of_its_own(engine: DaxEngine, star: Star) -> None:
    query = (
        'DEFINE TABLE Top = TOPN(3, SUMMARIZECOLUMNS(Product[Name], "r", [Revenue]), [r], DESC) '
        'EVALUATE SELECTCOLUMNS(Top, "name", Top[Name], "r", Top[r]) ORDER BY [r] DESC'
    )
    got = rows(engine, query)
    joined = star.joined()
    expected = joined.groupby("Name")["Amount"].sum().sort_values(ascending=False).head(3)
    assert [r[0] for r in got] == list(expected.index)
    assert all(math.isclose(r[1], e) for r, e in zip(got, expected, strict=True))  # type: ignore[arg-type]
    # Joined to nothing: COUNTROWS counts its rows under any filter on the model's tables.
    counted = rows(
        engine,
        'DEFINE TABLE Top = TOPN(3, SUMMARIZECOLUMNS(Product[Name], "r", [Revenue]), [r], DESC) '
        'EVALUATE SUMMARIZECOLUMNS(Product[Category], "n", COUNTROWS(Top), "r", [Revenue])',
    )
    assert {r[1] for r in counted} == {3}


def test_a_defined_table_can_be_grouped_and_filtered(engine: DaxEngine, star: Star) -> None:
    query = (
        'DEFINE TABLE Kinds = DATATABLE("Kind", STRING, "Weight", INTEGER, {{"a", 1}, {"b", 2}, {"b", 5}}) '
        'EVALUATE SUMMARIZECOLUMNS(Kinds[Kind], "w", SUM(Kinds[Weight])) ORDER BY Kinds[Kind]'
    )
    assert rows(engine, query) == [["a", 1], ["b", 7]]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("DEFINE COLUMN Sales[Amount] = 1 EVALUATE {1}", "duplicate_name"),
        ("DEFINE COLUMN Sales[Revenue] = 1 EVALUATE {1}", "duplicate_name"),
        ("DEFINE COLUMN Nowhere[x] = 1 EVALUATE {1}", "unknown_table"),
        ("DEFINE TABLE Product = {1} EVALUATE {1}", "duplicate_name"),
        ("DEFINE COLUMN Sales[x] = SUM(Sales[Nope]) EVALUATE {1}", "unknown_column"),
    ],
)
def test_bad_definitions_are_refused_by_name(engine: DaxEngine, query: str, code: str) -> None:
    with pytest.raises(QueryError) as e:
        rows(engine, query)
    assert e.value.code == code


def test_a_definition_does_not_outlive_its_query(engine: DaxEngine) -> None:
    rows(engine, "DEFINE COLUMN Sales[Tmp] = 1 TABLE Extra = {1} EVALUATE {1}")
    with pytest.raises(QueryError) as e:
        rows(engine, 'EVALUATE ROW("x", SUM(Sales[Tmp]))')
    assert e.value.code == "unknown_column"
    with pytest.raises(QueryError) as e:
        rows(engine, "EVALUATE Extra")
    assert e.value.code in ("unknown_table", "unknown_name")
