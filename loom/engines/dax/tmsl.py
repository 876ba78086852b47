"""TMSL: a `model.bim` (JSON), as Power BI Desktop projects and Analysis Services save a model.

Read: tables (hidden, description, `dataCategory: Time` for a date table), columns (type, source
column, hidden, description, sort-by, format, calculated columns' expressions), measures,
relationships (active, cross-filter direction, cardinality), and where a table's rows come from: a
Direct Lake or entity partition names a lakehouse table (`schemaName.entityName`); otherwise the
rows are looked for beside the model (`tables/<Table>.parquet|csv`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loom.engines.dax.model import (
    DataType,
    Measure,
    ModelColumn,
    ModelError,
    ModelTable,
    Relationship,
    SemanticModel,
)

_TYPES: dict[str, DataType] = {
    "string": "string",
    "int64": "int64",
    "double": "double",
    "decimal": "decimal",
    "datetime": "dateTime",
    "boolean": "boolean",
}


def load_bim(path: Path) -> SemanticModel:
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path.name} is not a readable TMSL file: {e}") from e
    body = document.get("model", document)
    model = SemanticModel(
        str(document.get("name") or path.parent.name), description=_text(body.get("description"))
    )
    for spec in body.get("tables", []):
        _table(model, spec)
    for spec in body.get("relationships", []):
        model.relationships.append(relationship(spec))
    return model


def _table(model: SemanticModel, spec: dict[str, Any]) -> None:
    table = ModelTable(
        spec["name"],
        description=_text(spec.get("description")),
        hidden=bool(spec.get("isHidden")),
        is_date_table=spec.get("dataCategory") == "Time",
        data=_partition_data(spec.get("partitions", [])),
    )
    for column in spec.get("columns", []):
        if column.get("type") == "rowNumber":
            continue
        table.add(
            ModelColumn(
                column["name"],
                data_type(column.get("dataType", "string")),
                source=column.get("sourceColumn", ""),
                hidden=bool(column.get("isHidden")),
                description=_text(column.get("description")),
                sort_by=column.get("sortByColumn"),
                expression=_text(column.get("expression")) if column.get("type") == "calculated" else None,
                format_string=column.get("formatString", ""),
            )
        )
    model.add_table(table)
    for measure in spec.get("measures", []):
        model.add_measure(
            Measure(
                measure["name"],
                table.name,
                _text(measure.get("expression")),
                _text(measure.get("description")),
                measure.get("formatString", ""),
                bool(measure.get("isHidden")),
            )
        )


def data_type(name: str) -> DataType:
    found = _TYPES.get(name.lower())
    if found is None:
        raise ModelError(f"the data type {name!r} is not supported (supported: {', '.join(_TYPES)})")
    return found


def relationship(spec: dict[str, Any]) -> Relationship:
    if spec.get("fromCardinality") == "many" and spec.get("toCardinality") == "many":
        raise ModelError(
            f"the many-to-many relationship {spec['fromTable']} → {spec['toTable']} is not supported"
        )
    return Relationship(
        spec["fromTable"],
        spec["fromColumn"],
        spec["toTable"],
        spec["toColumn"],
        active=spec.get("isActive", True) is not False,
        both_directions=spec.get("crossFilteringBehavior") == "bothDirections",
        one_to_one=spec.get("fromCardinality") == "one",
    )


def _partition_data(partitions: list[dict[str, Any]]) -> str:
    """`schema.table` for a partition that reads a lakehouse entity (Direct Lake); "" otherwise."""
    for partition in partitions:
        source = partition.get("source", {})
        if source.get("type") == "entity" and source.get("entityName"):
            schema = source.get("schemaName") or "main"
            return f"{schema}.{source['entityName']}"
    return ""


def _text(value: object) -> str:
    """TMSL writes long text as one string or as a list of lines."""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)
