"""Foreign keys of a SQL source, read beside the engine rather than through it.

Declared keys come from the file itself (SQLite `PRAGMA foreign_key_list`, DuckDB
`duckdb_constraints()`); folders of Delta/Parquet/CSV tables declare none, so keys are also
inferred from column names and types. Schema linking needs them to keep joins possible.

Inference is a guess, and it can be wrong in ways worth knowing:
- a role-playing column whose name hides its dimension (`shipped_on` for `dim_date.date_key`) is
  missed, while one that keeps the key's name (`ship_date_key`) is found;
- two columns sharing a name and a type are linked even when they mean different things
  (`status_id` in two unrelated tables, a copied `customer_id` that is no longer a key);
- the direction comes from which side looks like the key (`id`, `<table>_id`, the first column),
  so two tables whose keys look alike (1:1 tables) may be linked the wrong way round;
- composite keys are never inferred, and a code column stored as text in one table and as a number
  in another is not linked.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb

from loom.engines.contracts import Catalog, ColumnInfo, ForeignKey, TableInfo

log = logging.getLogger(__name__)

SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
KEY_SUFFIXES = ("_key", "_id", "key", "id")  # longest first: `customer_key` before `key`
TABLE_PREFIXES = ("dim_", "fact_", "fct_", "tbl_", "d_", "f_")
# Types that can sit on both sides of a join without a cast.
TYPE_FAMILIES = {"integer": "number", "decimal": "number", "float": "number", "string": "text"}

_FK_DUCKDB_SQL = """
SELECT schema_name, table_name, constraint_column_names, referenced_table, referenced_column_names
FROM duckdb_constraints()
WHERE constraint_type = 'FOREIGN KEY' AND database_name = current_database()
"""


def foreign_keys(location: Path, catalog: Catalog) -> list[ForeignKey]:
    """Declared keys of a `.sqlite`/`.duckdb` file, then inferred keys for columns none covers."""
    try:
        raw = _declared(Path(location).expanduser())
    except (sqlite3.Error, duckdb.Error, OSError) as e:
        # Declared keys only sharpen the schema the model reads: a file that cannot be opened for
        # them now (a writer holds its lock) still has inferred keys, and the driver's error, which
        # names the file's path, stays in the log instead of reaching the model.
        log.warning("could not read the declared keys of %s: %s", location, e)
        raw = []
    declared = _resolved(raw, catalog)
    covered = {(fk.table, c) for fk in declared for c in fk.columns}
    inferred = [fk for fk in infer_foreign_keys(catalog) if (fk.table, fk.columns[0]) not in covered]
    return declared + inferred


# --- declared -----------------------------------------------------------------------------------


RawKey = tuple[str, list[str], str, list[str | None]]  # table, columns, ref_table, ref_columns


def _declared(location: Path) -> list[RawKey]:
    if not location.is_file():
        return []
    suffix = location.suffix.lower()
    if suffix in SQLITE_SUFFIXES:
        return _sqlite_keys(location)
    if suffix == ".duckdb":
        return _duckdb_keys(location)
    return []


def _sqlite_keys(path: Path) -> list[RawKey]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [key for table in tables for key in _sqlite_table_keys(conn, table)]
    finally:
        conn.close()


def _sqlite_table_keys(conn: sqlite3.Connection, table: str) -> Iterator[RawKey]:
    # Rows: (id, seq, ref_table, from, to, on_update, on_delete, match); one id per constraint.
    groups: dict[int, list[tuple[str, str, str | None]]] = {}
    for row in conn.execute(f"PRAGMA foreign_key_list({_quote(table)})"):
        groups.setdefault(row[0], []).append((row[2], row[3], row[4]))
    for parts in groups.values():
        ref_table = parts[0][0]
        yield table, [p[1] for p in parts], ref_table, [p[2] for p in parts]


def _duckdb_keys(path: Path) -> list[RawKey]:
    conn = duckdb.connect(str(path), read_only=True, config={"autoload_known_extensions": False})
    try:
        rows = conn.execute(_FK_DUCKDB_SQL).fetchall()
    finally:
        conn.close()
    # DuckDB reports the referenced table without its schema: keys stay within one schema.
    return [(_qualified(s, t), list(cols), _qualified(s, ref), list(refs)) for s, t, cols, ref, refs in rows]


def _qualified(schema: str, table: str) -> str:
    return table if schema == "main" else f"{schema}.{table}"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _resolved(raw: Iterable[RawKey], catalog: Catalog) -> list[ForeignKey]:
    """Spelled as the Catalog spells them; keys naming missing tables or columns are dropped
    (real files declare keys to tables that were renamed or never created)."""
    keys: list[ForeignKey] = []
    for table, columns, ref_table, ref_columns in raw:
        src, dst = catalog.table(table), catalog.table(ref_table)
        if src is None or dst is None:
            continue
        # A key declared without target columns references the target's primary key.
        refs = [r or (primary_key(dst) or "") for r in ref_columns]
        cols, ref_cols = _column_names(src, columns), _column_names(dst, refs)
        if cols and ref_cols and len(cols) == len(ref_cols):
            key = ForeignKey(
                table=src.name, columns=cols, ref_table=dst.name, ref_columns=ref_cols, source="declared"
            )
            if key not in keys:
                keys.append(key)
    return keys


def _column_names(table: TableInfo, names: list[str]) -> tuple[str, ...]:
    found = [_column(table, n) for n in names]
    return tuple(c.name for c in found if c is not None) if all(found) else ()


def _column(table: TableInfo, name: str) -> ColumnInfo | None:
    wanted = name.lower()
    return next((c for c in table.columns if c.name.lower() == wanted), None)


# --- inferred -----------------------------------------------------------------------------------


def table_stem(name: str) -> str:
    """`gold.dim_customer` → `customer`, `Customers` → `customer`: the entity a table holds."""
    base = name.rsplit(".", 1)[-1].lower()
    for prefix in TABLE_PREFIXES:
        if base.startswith(prefix) and len(base) > len(prefix):
            base = base[len(prefix) :]
            break
    return singular(base)


def singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if re.search(r"(ss|x|ch|sh)es$", word):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def key_base(column: str) -> str | None:
    """`customer_key` → `customer`, `CustomerID` → `customer`; None when not named like a key."""
    lowered = column.lower()
    for suffix in KEY_SUFFIXES:
        if lowered.endswith(suffix) and len(lowered) > len(suffix):
            return singular(lowered[: -len(suffix)].rstrip("_"))
    return None


def primary_key(table: TableInfo) -> str | None:
    """The table's single-column key by name: `id`, `<entity>_id`/`_key`, or a first column named
    like a key. A guess: the Catalog carries no primary keys."""
    stem = table_stem(table.name)
    for column in table.columns:
        if column.name.lower() == "id" or key_base(column.name) == stem:
            return column.name
    first = table.columns[0].name if table.columns else None
    return first if first is not None and key_base(first) is not None else None


def infer_foreign_keys(catalog: Catalog) -> list[ForeignKey]:
    """Columns named like another table's key and of a joinable type."""
    keys = {table.name: primary_key(table) for table in catalog.tables}
    found: list[ForeignKey] = []
    for table in catalog.tables:
        for column in table.columns:
            if column.name == keys[table.name]:
                continue  # a table's own key is referenced, it does not reference
            found += _references(table, column, catalog, keys)
    return found


def _references(
    table: TableInfo, column: ColumnInfo, catalog: Catalog, keys: dict[str, str | None]
) -> list[ForeignKey]:
    base = key_base(column.name)
    if base is None:
        return []
    targets = [
        (other, target)
        for other in catalog.tables
        if other.name != table.name
        for target in [_target(other, keys[other.name], column, base)]
        if target is not None
    ]
    # With layers (bronze/silver/gold) a key may match one table per layer: prefer the same schema.
    same_schema = [t for t in targets if _schema(t[0].name) == _schema(table.name)]
    return [
        ForeignKey(
            table=table.name,
            columns=(column.name,),
            ref_table=other.name,
            ref_columns=(target.name,),
            source="inferred",
        )
        for other, target in (same_schema or targets)
    ]


def _target(other: TableInfo, key: str | None, column: ColumnInfo, base: str) -> ColumnInfo | None:
    """The column of `other` that `column` references, if any.

    `customer_key` → a table whose key is `customer_key` (identical names between fact and
    dimension); `x_id` → `x.id`; `ship_date_key` → the table keyed by `date_key` (a role).
    """
    if key is None:
        return None
    target = _column(other, key)
    if target is None or not _joinable(column, target):
        return None
    stem = table_stem(other.name)
    same_name = key.lower() == column.name.lower()
    by_entity = key.lower() == "id" and base == stem
    role = key_base(key) == stem and base.endswith("_" + stem)
    return target if same_name or by_entity or role else None


def _schema(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else "main"


def _joinable(a: ColumnInfo, b: ColumnInfo) -> bool:
    return TYPE_FAMILIES.get(a.type, a.type) == TYPE_FAMILIES.get(b.type, b.type)
