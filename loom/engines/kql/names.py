"""How KQL names a catalog's tables.

Kusto table names have no schema part, while the lakehouse's do (`gold.fact_sales`). Each table
answers to its full name, written `['gold.fact_sales']` in KQL, and to its bare name
(`fact_sales`) when no other table shares it; `silver.orders` and `bronze.orders` answer only to
their full names.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

import duckdb_kql

from loom.engines.contracts import Catalog, ColumnInfo, ForeignKey, TableInfo
from loom.engines.kql.types import kusto_type


def kql_tables(catalog: Catalog) -> dict[str, str]:
    """KQL name → the catalog's name, for every table."""
    by_bare: dict[str, list[str]] = defaultdict(list)
    for table in catalog.tables:
        by_bare[table.name.rsplit(".", 1)[-1]].append(table.name)
    names = {table.name: table.name for table in catalog.tables}
    names.update({bare: full[0] for bare, full in by_bare.items() if len(full) == 1})
    return names


def kql_schema(catalog: Catalog) -> dict[str, list[str]]:
    """KQL name → column names, as the translator takes it (joins and unions need it)."""
    columns = {t.name: [c.name for c in t.columns] for t in catalog.tables}
    return {name: columns[full] for name, full in kql_tables(catalog).items()}


@lru_cache(maxsize=4096)
def shown_name(name: str) -> str:
    """`name` as a KQL query writes it: bracketed when it is not a plain identifier or when KQL
    reads it as a keyword (a column called `date` is `['date']`)."""
    plain = name.replace("_", "a").isalnum() and not name[0].isdigit()
    if plain and not duckdb_kql.validate(f"T | project {name}"):
        return name
    return "['" + name.replace("'", "\\'") + "']"


def kql_catalog(catalog: Catalog) -> Catalog:
    """The catalog as KQL reads it: each table under the shortest name it answers to, columns with
    Kusto types, keys renamed to match."""
    preferred = preferred_names(kql_tables(catalog))
    return catalog.model_copy(
        update={
            "tables": [_table(t, preferred[t.name]) for t in catalog.tables],
            "relationships": [_key(k, preferred) for k in catalog.relationships],
        }
    )


def preferred_names(names: dict[str, str]) -> dict[str, str]:
    """Catalog name → the shortest KQL name it answers to (`kql_tables`' inverse, one name each)."""
    shortest: dict[str, str] = {}
    for name, full in names.items():
        if full not in shortest or len(name) < len(shortest[full]):
            shortest[full] = name
    return shortest


def _table(table: TableInfo, name: str) -> TableInfo:
    columns = [ColumnInfo(**{**c.model_dump(), "type": kusto_type(c.type)}) for c in table.columns]
    return table.model_copy(update={"name": name, "columns": columns})


def _key(key: ForeignKey, preferred: dict[str, str]) -> ForeignKey:
    return key.model_copy(
        update={
            "table": preferred.get(key.table, key.table),
            "ref_table": preferred.get(key.ref_table, key.ref_table),
        }
    )
