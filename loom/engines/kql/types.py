"""Kusto's type names for the simple types results and catalogs carry (`duckdb_catalog`)."""

from __future__ import annotations

DYNAMIC = "dynamic"

KUSTO_TYPES = {
    "integer": "long",
    "float": "real",
    "decimal": "decimal",
    "string": "string",
    "boolean": "bool",
    "date": "datetime",
    "timestamp": "datetime",
    "time": "timespan",
    "interval": "timespan",
    "json": DYNAMIC,
    "list": DYNAMIC,
    "struct": DYNAMIC,
    "map": DYNAMIC,
    "binary": "string",
    "uuid": "guid",
}


def kusto_type(simple: str) -> str:
    return KUSTO_TYPES.get(simple, simple)
