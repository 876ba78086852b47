"""The catalog of one ADX database, from `.show database ['db'] schema as json`.

The engine sends that management command itself (the model never can: the validator refuses
anything starting with a dot). Its one cell is a JSON document:
`{"Databases": {db: {"Tables": {name: {"OrderedColumns": [{"Name", "CslType", "DocString"}],
"DocString"}}, "MaterializedViews": {…}, "ExternalTables": {…}, "Functions": {…}}}}`.
Tables and materialized views are listed (a query names both the same way); external tables
need `external_table()`, which the validator refuses, so they are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from loom.engines.contracts import Catalog, ColumnInfo, QueryError, TableInfo
from loom.engines.kql.adx.values import kusto_type

QUERYABLE = ("Tables", "MaterializedViews")


def schema_command(database: str) -> str:
    # The source model holds the name to Kusto's entity-name characters, so no quote can occur.
    return f".show database ['{database}'] schema as json"


def parse_schema(text: str, database: str) -> Catalog:
    """The catalog from the command's JSON cell; QueryError when it is not that document."""
    try:
        document = json.loads(text)
        databases: Mapping[str, Any] = document["Databases"]
    except (ValueError, TypeError, KeyError) as e:
        raise QueryError("source_unavailable", "ADX sent a database schema this engine cannot read.") from e
    entry = next((v for k, v in databases.items() if k.lower() == database.lower()), None)
    if entry is None:
        raise QueryError("source_unavailable", f"ADX sent no schema for the database {database!r}.")
    tables = [_table(t) for kind in QUERYABLE for t in (entry.get(kind) or {}).values()]
    return Catalog(tables=sorted(tables, key=lambda t: t.name.lower()))


def _table(table: Mapping[str, Any]) -> TableInfo:
    columns = [
        ColumnInfo(
            name=str(c["Name"]),
            type=kusto_type(str(c.get("CslType") or "string")),
            description=str(c.get("DocString") or ""),
        )
        for c in table.get("OrderedColumns") or []
    ]
    return TableInfo(name=str(table["Name"]), columns=columns, description=str(table.get("DocString") or ""))
