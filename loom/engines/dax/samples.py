"""The extracted Power BI sample layout: `schema.csv`, `relationships.csv`, `dax_measures.csv` and
`tables/<Table>.csv`, as `../shared/data/powerbi_semantic_models` holds Microsoft's Regional Sales
and Corporate Spend samples. Calculated columns arrive computed (their values are in the CSV);
tables the extraction lists without data (Power BI's hidden date templates) are left out.
"""

from __future__ import annotations

import csv
from pathlib import Path

from loom.engines.dax.model import DataType, Measure, ModelColumn, ModelTable, Relationship, SemanticModel

_TYPES: dict[str, DataType] = {
    "string": "string",
    "Int64": "int64",
    "int64": "int64",
    "Float64": "double",
    "float64": "double",
    "bool": "boolean",
    "boolean": "boolean",
    "datetime64[ns]": "dateTime",
}


def is_sample_folder(folder: Path) -> bool:
    return (folder / "schema.csv").is_file() and (folder / "tables").is_dir()


def load_sample(folder: Path) -> SemanticModel:
    model = SemanticModel(folder.name.replace("_", " "))
    for row in _rows(folder / "schema.csv"):
        data = folder / "tables" / f"{row['TableName']}.csv"
        if not data.is_file():
            continue
        table = model.tables.get(row["TableName"].lower())
        if table is None:
            table = ModelTable(row["TableName"], data=f"tables/{data.name}")
            model.add_table(table)
        table.add(ModelColumn(row["ColumnName"], _TYPES.get(row["PandasDataType"], "string")))
    for row in _rows(folder / "relationships.csv"):
        model.relationships.append(
            Relationship(
                row["FromTableName"],
                row["FromColumnName"],
                row["ToTableName"],
                row["ToColumnName"],
                active=row.get("IsActive", "1") in ("1", "True", "true"),
                both_directions=row.get("CrossFilteringBehavior", "").lower() in ("both", "bothdirections"),
                one_to_one=row.get("Cardinality", "") == "1:1",
            )
        )
    for row in _rows(folder / "dax_measures.csv"):
        model.add_measure(
            Measure(row["Name"], row["TableName"], row["Expression"].strip(), row.get("Description") or "")
        )
    return model


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
