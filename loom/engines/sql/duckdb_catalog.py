"""What a DuckDB database holds, as a Catalog: tables, columns, simple type names, sample values.

`structure` is the quick form (names and types) that queries are validated against; `build_catalog`
adds row counts, descriptions and the values of low-cardinality text columns, for the model. Both
list what the load left out (`duckdb_open`) as unavailable, never as tables.
"""

from __future__ import annotations

import duckdb

from loom.engines.contracts import Catalog, ColumnInfo, TableInfo, UnavailableTable, json_safe
from loom.engines.sql.duckdb_open import quote

SAMPLE_VALUES = 5
LOW_CARDINALITY = 25  # text columns with at most this many distinct values get sample values

_TYPE_NAMES = {
    "string": ("VARCHAR", "CHAR", "BPCHAR", "TEXT", "STRING", "UUID", "ENUM", "BIT"),
    "integer": ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                "UINTEGER", "UBIGINT", "UHUGEINT", "INT", "INT1", "INT2", "INT4", "INT8"),
    "float": ("FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8"),
    "decimal": ("DECIMAL", "NUMERIC"),
    "boolean": ("BOOLEAN", "BOOL"),
    "date": ("DATE",),
    "timestamp": ("TIMESTAMP", "DATETIME", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S",
                  "TIMESTAMP_MS", "TIMESTAMP_NS"),
    "time": ("TIME", "TIMETZ", "TIME WITH TIME ZONE"),
    "interval": ("INTERVAL",),
    "binary": ("BLOB", "BYTEA", "VARBINARY"),
    "struct": ("STRUCT", "UNION"),
    "map": ("MAP",),
    "json": ("JSON",),
}  # fmt: skip
SIMPLE_TYPES = {db_type: simple for simple, names in _TYPE_NAMES.items() for db_type in names}


def simple_type(db_type: object) -> str:
    """`DECIMAL(12,2)` → `decimal`, `INTEGER[]` → `list`: the names ResultSet and Catalog use."""
    text = str(db_type).strip().upper()
    if text.endswith("]"):
        return "list"
    return SIMPLE_TYPES.get(text.split("(", 1)[0].strip(), text.lower())


_TABLES_SQL = """
SELECT schema_name, table_name, comment FROM duckdb_tables()
WHERE database_name = current_database() AND NOT internal
UNION ALL
SELECT schema_name, view_name, comment FROM duckdb_views()
WHERE database_name = current_database() AND NOT internal
ORDER BY schema_name <> 'main', schema_name, table_name
"""

_COLUMNS_SQL = """
SELECT column_name, data_type, comment FROM duckdb_columns()
WHERE database_name = current_database() AND schema_name = ? AND table_name = ?
ORDER BY column_index
"""


def _qualified(schema: str, table: str) -> str:
    return table if schema == "main" else f"{schema}.{table}"


_STRUCTURE_SQL = """
SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns()
WHERE database_name = current_database() AND NOT internal
ORDER BY schema_name <> 'main', schema_name, table_name, column_index
"""


def by_bare_name(catalog: Catalog) -> dict[str, dict[str, str]]:
    # A SQLite source has only `main`, so bare names are unambiguous where the compat step runs.
    return {t.name.rsplit(".", 1)[-1]: {c.name: c.type for c in t.columns} for t in catalog.tables}


def structure(conn: duckdb.DuckDBPyConnection, left_out: dict[str, str] | None = None) -> Catalog:
    """Tables and their columns with DuckDB's type names: what validation checks names against.

    Cheap (no data is read), unlike the full catalog with row counts and sample values.
    """
    left_out = left_out or {}
    tables: dict[str, TableInfo] = {}
    for schema, table, column, data_type in conn.execute(_STRUCTURE_SQL).fetchall():
        name = _qualified(schema, table)
        if name in left_out:
            continue
        info = tables.setdefault(name, TableInfo(name=name, columns=[]))
        info.columns.append(ColumnInfo(name=column, type=data_type))
    return Catalog(tables=list(tables.values()), unavailable=unavailable(left_out))


def build_catalog(
    conn: duckdb.DuckDBPyConnection, descriptions: dict[str, str], left_out: dict[str, str] | None = None
) -> Catalog:
    left_out = left_out or {}
    cursor = conn.cursor()
    try:
        tables = []
        for schema, table, comment in cursor.execute(_TABLES_SQL).fetchall():
            name = _qualified(schema, table)
            if name in left_out:
                continue
            info = _table_info(cursor, schema, table, name)
            info.description = descriptions.get(name) or comment or ""
            tables.append(info)
        return Catalog(tables=tables, unavailable=unavailable(left_out))
    finally:
        cursor.close()


def unavailable(left_out: dict[str, str]) -> list[UnavailableTable]:
    return [UnavailableTable(name=name, reason=reason) for name, reason in sorted(left_out.items())]


def _table_info(cursor: duckdb.DuckDBPyConnection, schema: str, table: str, name: str) -> TableInfo:
    columns = [
        ColumnInfo(name=c, type=simple_type(t), description=comment or "")
        for c, t, comment in cursor.execute(_COLUMNS_SQL, [schema, table]).fetchall()
    ]
    target = f"{quote(schema)}.{quote(table)}"
    count = cursor.execute(f"SELECT count(*) FROM {target}").fetchone()
    _add_samples(cursor, target, [c for c in columns if c.type == "string"])
    return TableInfo(name=name, columns=columns, row_count=int(count[0]) if count else None)


def _add_samples(cursor: duckdb.DuckDBPyConnection, target: str, text_columns: list[ColumnInfo]) -> None:
    """Most frequent values of low-cardinality text columns: they tell a model how data is spelled."""
    if not text_columns:
        return
    distincts = ", ".join(f"approx_count_distinct({quote(c.name)})" for c in text_columns)
    counts = cursor.execute(f"SELECT {distincts} FROM {target}").fetchone() or ()
    for column, distinct in zip(text_columns, counts, strict=True):
        if distinct is None or distinct > LOW_CARDINALITY:
            continue
        col = quote(column.name)
        rows = cursor.execute(
            f"SELECT {col} FROM {target} WHERE {col} IS NOT NULL GROUP BY {col} "
            f"ORDER BY count(*) DESC, {col} LIMIT {SAMPLE_VALUES}"
        ).fetchall()
        column.sample_values = [json_safe(r[0]) for r in rows]
