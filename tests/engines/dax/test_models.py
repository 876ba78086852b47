"""Semantic models as Power BI saves them (TMSL, TMDL, PBIP, Direct Lake), model errors found at
load, what the catalog shows, and what is refused before anything runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from loom.engines.contracts import QueryError
from loom.engines.dax.engine import DaxEngine
from loom.engines.sources import ModelSource
from loom.engines.sql.limits import LocalLimits
from tests.engines.dax.conftest import rows
from tests.engines.dax.star import Star

TMDL_SALES = """\
/// One line per sale
table Sales
\tlineageTag: 1

\t/// Net revenue
\tmeasure Revenue = SUM(Sales[Net Amount])
\t\tformatString: #,##0.00

\tmeasure 'Red Revenue' =
\t\t\tCALCULATE(
\t\t\t\t[Revenue],
\t\t\t\t'Product'[Color] = "Red"
\t\t\t)
\t\tdisplayFolder: Colors

\tmeasure Fenced = ```
\t\t\tDIVIDE([Revenue], COUNTROWS(Sales))
\t\t\t```

\tcolumn SaleId
\t\tdataType: int64
\t\tsourceColumn: SaleId

\tcolumn ProductKey
\t\tdataType: int64
\t\tisHidden
\t\tsourceColumn: ProductKey

\tcolumn 'Net Amount'
\t\tdataType: double
\t\tsourceColumn: Amount

\tpartition Sales = m
\t\tmode: import
\t\tsource =
\t\t\t\tlet
\t\t\t\t    Source = Csv.Document("Sales.csv")
\t\t\t\tin
\t\t\t\t    Source
"""
TMDL_PRODUCT = """\
table Product

\tcolumn ProductKey
\t\tdataType: int64

\tcolumn Color
\t\tdataType: string
"""
TMDL_RELATIONSHIPS = """\
relationship 5e1e-aa
\tfromColumn: Sales.ProductKey
\ttoColumn: Product.ProductKey
"""


def engine_for(folder: Path) -> DaxEngine:
    return DaxEngine(ModelSource(kind="model", name="m", location=str(folder)), LocalLimits(isolated=False))


def tmdl_project(star: Star, root: Path) -> Path:
    """A PBIP project: <root>/Shop.SemanticModel/definition/… and the data in tables/ beside it."""
    model = root / "Shop.SemanticModel"
    (model / "definition" / "tables").mkdir(parents=True)
    (model / "definition" / "tables" / "Sales.tmdl").write_text(TMDL_SALES)
    (model / "definition" / "tables" / "Product.tmdl").write_text(TMDL_PRODUCT)
    (model / "definition" / "relationships.tmdl").write_text(TMDL_RELATIONSHIPS)
    (model / "tables").mkdir()
    for name in ("Sales", "Product"):
        shutil.copy(star.folder / "tables" / f"{name}.csv", model / "tables" / f"{name}.csv")
    return root


def test_a_tmdl_project_loads_and_answers_as_the_tmsl_model_does(
    engine: DaxEngine, star: Star, tmp_path: Path
) -> None:
    project = engine_for(tmdl_project(star, tmp_path))
    query = 'EVALUATE SUMMARIZECOLUMNS(Product[Color], "r", [Revenue], "red", [Red Revenue], "f", [Fenced])'
    tmsl = (
        'EVALUATE SUMMARIZECOLUMNS(Product[Color], "r", [Revenue], "red", [Red Revenue], '
        '"f", DIVIDE([Revenue], COUNTROWS(Sales)))'
    )
    assert sorted(map(str, rows(project, query))) == sorted(map(str, rows(engine, tmsl)))
    catalog = project.catalog()
    sales = catalog.table("Sales")
    assert sales is not None and [c.name for c in sales.columns] == [
        "SaleId",
        "Net Amount",
    ]  # ProductKey hidden
    measures = {m.name: m for m in catalog.measures}
    assert measures["Revenue"].description == "Net revenue" and measures["Revenue"].format == "#,##0.00"
    assert "CALCULATE" in measures["Red Revenue"].expression
    project.close()


def _entity_table(name: str, entity: str, columns: list[tuple[str, str, str]]) -> dict[str, object]:
    """A Direct Lake table: its rows are the lakehouse table gold.<entity>."""
    source = {"type": "entity", "entityName": entity, "schemaName": "gold"}
    return {
        "name": name,
        "columns": [{"name": n, "dataType": t, "sourceColumn": c} for n, t, c in columns],
        "partitions": [{"mode": "directLake", "source": source}],
    }


def test_a_direct_lake_model_reads_its_tables_from_the_lakehouse(star: Star, tmp_path: Path) -> None:
    lakehouse = tmp_path / "lakehouse"
    (lakehouse / "gold").mkdir(parents=True)
    star.sales.to_parquet(lakehouse / "gold" / "fact_sales.parquet")
    star.product.to_parquet(lakehouse / "gold" / "dim_product.parquet")
    model = lakehouse / "models" / "shop"
    model.mkdir(parents=True)
    sales = _entity_table(
        "Sales", "fact_sales", [("ProductKey", "int64", "ProductKey"), ("Net", "double", "Amount")]
    )
    sales["measures"] = [{"name": "Revenue", "expression": ["SUM(", "  Sales[Net])"]}]
    product = _entity_table(
        "Product", "dim_product", [("ProductKey", "int64", "ProductKey"), ("Category", "string", "Category")]
    )
    key = {"fromColumn": "ProductKey", "toColumn": "ProductKey"}
    relationship = {"name": "r", "fromTable": "Sales", "toTable": "Product", **key}
    bim = {"name": "Shop", "model": {"tables": [sales, product], "relationships": [relationship]}}
    (model / "model.bim").write_text(json.dumps(bim))
    dax = engine_for(model)
    got = {r[0]: r[1] for r in rows(dax, 'EVALUATE SUMMARIZECOLUMNS(Product[Category], "r", [Revenue])')}
    joined = star.sales.merge(star.product, on="ProductKey")
    expected = joined.groupby("Category")["Amount"].sum()
    assert got.keys() == set(expected.index)
    assert all(got[k] == pytest.approx(expected[k]) for k in expected.index)
    dax.close()


def _bim(
    tmp_path: Path, measures: list[dict[str, str]], relationships: list[dict[str, object]] | None = None
) -> Path:
    folder = tmp_path / "bad"
    (folder / "tables").mkdir(parents=True)
    pd.DataFrame({"k": [1], "x": [2.0]}).to_csv(folder / "tables" / "A.csv", index=False)
    pd.DataFrame({"k": [1]}).to_csv(folder / "tables" / "B.csv", index=False)
    pd.DataFrame({"k": [1]}).to_csv(folder / "tables" / "C.csv", index=False)
    columns = [{"name": "k", "dataType": "int64"}]
    tables = [
        {"name": "A", "columns": [*columns, {"name": "x", "dataType": "double"}], "measures": measures},
        {"name": "B", "columns": columns},
        {"name": "C", "columns": columns},
        {"name": "Nowhere", "columns": columns},
    ]
    (folder / "model.bim").write_text(
        json.dumps({"model": {"tables": tables, "relationships": relationships or []}})
    )
    return folder


def _relationship(a: str, b: str, active: bool = True) -> dict[str, object]:
    return {"fromTable": a, "fromColumn": "k", "toTable": b, "toColumn": "k", "isActive": active}


@pytest.mark.parametrize(
    ("measures", "relationships", "said"),
    [
        (
            [{"name": "M", "expression": "[N] + 1"}, {"name": "N", "expression": "[M] * 2"}],
            None,
            "refers to itself",
        ),
        ([], [_relationship("A", "B"), _relationship("B", "C"), _relationship("A", "C")], "two active paths"),
        ([], [{"fromTable": "A", "fromColumn": "nope", "toTable": "B", "toColumn": "k"}], "names a column"),
    ],
)
def test_model_errors_are_found_at_load(
    tmp_path: Path, measures: list[dict[str, str]], relationships: list[dict[str, object]] | None, said: str
) -> None:
    dax = engine_for(_bim(tmp_path, measures, relationships))
    with pytest.raises(QueryError) as refused:
        rows(dax, 'EVALUATE ROW("x", 1)')
    assert refused.value.code == "model_error" and said in refused.value.message
    assert dax.problem() is not None and said in dax.problem()  # type: ignore[operator]


def test_a_table_without_data_is_named_and_the_others_serve(tmp_path: Path) -> None:
    dax = engine_for(
        _bim(tmp_path, [{"name": "X", "expression": "SUM(A[x])"}], [_relationship("A", "B", active=False)])
    )
    assert rows(dax, 'EVALUATE ROW("x", [X])') == [[2.0]]
    with pytest.raises(QueryError) as refused:
        rows(dax, "EVALUATE Nowhere")
    assert refused.value.code == "table_unavailable" and "Nowhere" in refused.value.message
    assert [u.name for u in dax.catalog().unavailable] == ["Nowhere"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("SELECT * FROM $SYSTEM.TMSCHEMA_TABLES", "parse_error"),
        ("EVALUATE INFO.TABLES()", "unsupported_function"),
        ('<Batch xmlns="http://schemas.microsoft.com/analysisservices/2003/engine"/>', "parse_error"),
        ("EVALUATE {1} EVALUATE {2}", "unsupported"),
    ],
)
def test_only_dax_queries_run(engine: DaxEngine, query: str, code: str) -> None:
    with pytest.raises(QueryError) as refused:
        rows(engine, query)
    assert refused.value.code == code


def test_a_query_past_its_time_limit_is_stopped(engine: DaxEngine) -> None:
    with pytest.raises(QueryError) as stopped:
        copies = ", ".join(f'SELECTCOLUMNS(Sales, "{n}", Sales[SaleId])' for n in "abc")
        engine.execute(
            f'EVALUATE ROW("n", COUNTROWS(CROSSJOIN(Sales, {copies})))', max_rows=10, timeout_s=0.2
        )
    assert stopped.value.code == "timeout"


def _with_calculated(star: Star, tmp_path: Path, columns: dict[str, list[dict[str, str]]]) -> DaxEngine:
    folder = tmp_path / "calc"
    shutil.copytree(star.folder, folder)
    bim = json.loads((folder / "model.bim").read_text())
    for table in bim["model"]["tables"]:
        for spec in columns.get(table["name"], []):
            table["columns"].append({"type": "calculated", "dataType": "double", **spec})
    (folder / "model.bim").write_text(json.dumps(bim))
    return engine_for(folder)


def test_calculated_columns_are_computed_in_their_rows(star: Star, tmp_path: Path) -> None:
    dax = _with_calculated(
        star,
        tmp_path,
        {
            "Sales": [
                {"name": "Margin", "expression": "Sales[Amount] * 0.3"},
                {"name": "Category", "expression": "RELATED(Product[Category])", "dataType": "string"},
            ],
            "Customer": [
                {"name": "Spend", "expression": "CALCULATE(SUM(Sales[Amount]))"},
                {
                    "name": "Band",
                    "expression": 'IF(Customer[Spend] > 6000, "big", "small")',
                    "dataType": "string",
                },
            ],
        },
    )
    joined = star.joined()
    margin = rows(dax, 'EVALUATE SUMMARIZECOLUMNS(Sales[Category], "m", SUM(Sales[Margin]))')
    expected = (joined.groupby("Category")["Amount"].sum() * 0.3).to_dict()
    assert {r[0]: pytest.approx(r[1]) for r in margin} == expected
    spend = joined.groupby("CustomerKey")["Amount"].sum()
    bands = {k: "big" if spend.get(k, 0) > 6000 else "small" for k in star.customer["CustomerKey"]}
    got = rows(dax, 'EVALUATE SUMMARIZECOLUMNS(Customer[Band], "n", COUNTROWS(Customer))')
    assert {r[0]: r[1] for r in got} == pd.Series(bands).value_counts().to_dict()
    dax.close()


def test_a_calculated_column_that_does_not_compile_leaves_its_table_out_saying_why(
    star: Star, tmp_path: Path
) -> None:
    dax = _with_calculated(star, tmp_path, {"Customer": [{"name": "Bad", "expression": "NOSUCHFUNCTION(1)"}]})
    with pytest.raises(QueryError) as refused:
        rows(dax, "EVALUATE Customer")
    assert refused.value.code == "table_unavailable" and "NOSUCHFUNCTION" in refused.value.message
    assert rows(dax, 'EVALUATE ROW("n", COUNTROWS(Product))') == [[12]]  # the others serve
    dax.close()


def test_a_column_the_data_lacks_leaves_its_table_out_instead_of_reading_blank(
    star: Star, tmp_path: Path
) -> None:
    folder = tmp_path / "lacking"
    shutil.copytree(star.folder, folder)
    bim = json.loads((folder / "model.bim").read_text())
    bim["model"]["tables"][1]["columns"].append(
        {"name": "Weight", "dataType": "double", "sourceColumn": "weight"}
    )
    (folder / "model.bim").write_text(json.dumps(bim))
    dax = engine_for(folder)
    with pytest.raises(QueryError) as refused:
        rows(dax, 'EVALUATE ROW("w", SUM(Product[Weight]))')
    assert refused.value.code == "table_unavailable" and "Weight" in refused.value.message
    dax.close()
