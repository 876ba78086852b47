"""Opening a local source as an in-memory DuckDB database (a `.duckdb` file is opened read-only).

Every table is copied in. Copying is deliberate: objects *registered* on a DuckDB connection (Arrow
datasets, which is how Delta tables arrive) are invisible to that connection's cursors, and a cursor
per call is what lets calls run in parallel and be interrupted one by one. The embedded engine serves
local lakehouses; large data is the Azure backends' job.

After the load, external access and extension loading are switched off and the configuration is
locked. That is defence in depth: the validator (parsing) is what keeps queries read-only.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from loom.engines.contracts import QueryError
from loom.engines.sources import DuckDBSource
from loom.engines.sql.limits import LocalLimits

log = logging.getLogger(__name__)

# Settings fixed at connect time: nothing may be downloaded or loaded behind our back.
CONNECT_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
TABLE_FILE_SUFFIXES = (".parquet", ".csv")


def source_location(source: DuckDBSource) -> Path:
    return Path(source.location).expanduser()


def open_source(
    source: DuckDBSource, limits: LocalLimits | None = None
) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    location = source_location(source)
    if not location.exists():
        raise QueryError(
            "source_unavailable",
            f"The source {source.name!r} has no data at {location}. "
            "(For the sample lakehouse, run `loom data seed` first.)",
        )
    try:
        conn, descriptions = _load(location)
    except (duckdb.Error, OSError, sqlite3.Error, pa.ArrowException) as e:
        raise QueryError("source_unavailable", f"Could not open the source {source.name!r}: {e}") from e
    for statement in (limits or LocalLimits()).statements():
        conn.execute(statement)
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
    return conn, descriptions


def _load(location: Path) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    suffix = location.suffix.lower()
    if location.is_file() and suffix == ".duckdb":
        return duckdb.connect(str(location), read_only=True, config=CONNECT_CONFIG), {}
    conn = duckdb.connect(":memory:", config=CONNECT_CONFIG)
    if location.is_file() and suffix in SQLITE_SUFFIXES:
        _load_sqlite(conn, location)
        return conn, {}
    if location.is_dir():
        return conn, _load_folder(conn, location)
    conn.close()
    raise QueryError(
        "source_unavailable",
        f"{location} is not a SQL source: use a .duckdb or .sqlite file, or a folder of Delta, "
        "Parquet and CSV tables.",
    )


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _table_name(path: Path) -> str:
    stem = path.name if path.is_dir() else path.stem
    return "".join(c if c.isalnum() or c == "_" else "_" for c in stem).strip("_") or "table"


def _is_table(path: Path) -> bool:
    if path.is_dir():
        return (path / "_delta_log").is_dir()
    return path.suffix.lower() in TABLE_FILE_SUFFIXES


def _visible(folder: Path, root: Path) -> list[Path]:
    """The folder's entries that are data: not hidden, and inside the source once links are
    followed (a link to /etc/passwd named `t.csv` must not become a table)."""
    inside = root.resolve()
    return [
        p
        for p in sorted(folder.iterdir())
        if not p.name.startswith((".", "_")) and p.resolve().is_relative_to(inside)
    ]


def _load_folder(conn: duckdb.DuckDBPyConnection, root: Path) -> dict[str, str]:
    """Top-level tables go to `main`; a subfolder of tables (bronze, silver, gold…) is a schema."""
    descriptions: dict[str, str] = {}
    for path in _visible(root, root):
        if _is_table(path):
            descriptions |= _load_or_skip(conn, "main", path)
        elif path.is_dir():
            tables = [p for p in _visible(path, root) if _is_table(p)]
            if tables:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(_table_name(path))}")
            for table in tables:
                descriptions |= _load_or_skip(conn, _table_name(path), table)
    return descriptions


def _load_or_skip(conn: duckdb.DuckDBPyConnection, schema: str, path: Path) -> dict[str, str]:
    """One table; one that cannot be read (or repeats a name: `t.csv` beside `t.parquet`) is left
    out and logged, and the source serves the others."""
    try:
        return _load_table(conn, schema, path)
    except (duckdb.Error, OSError, pa.ArrowException, DeltaError) as e:
        log.warning("left out %s: it cannot be loaded as a table (%s)", path, str(e).splitlines()[0])
        return {}


def _load_table(conn: duckdb.DuckDBPyConnection, schema: str, path: Path) -> dict[str, str]:
    name = _table_name(path)
    target = f"{quote(schema)}.{quote(name)}"
    qualified = name if schema == "main" else f"{schema}.{name}"
    if path.is_dir():
        table = DeltaTable(str(path))
        _copy_arrow(conn, target, table.to_pyarrow_dataset())
        description = table.metadata().description or ""
        return {qualified: description} if description else {}
    reader = "read_parquet" if path.suffix.lower() == ".parquet" else "read_csv"
    conn.execute(f"CREATE TABLE {target} AS SELECT * FROM {reader}(?)", [str(path)])
    return {}


def _copy_arrow(conn: duckdb.DuckDBPyConnection, target: str, data: Any) -> None:
    conn.register("_loom_load", data)
    try:
        conn.execute(f"CREATE TABLE {target} AS SELECT * FROM _loom_load")
    finally:
        conn.unregister("_loom_load")


def _load_sqlite(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Through Python's sqlite3: DuckDB's sqlite extension would have to be downloaded."""
    src = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    src.text_factory = lambda b: b.decode("utf-8", "replace")  # real-world files hold stray bytes
    try:
        names = [
            row[0]
            for row in src.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for name in names:
            _copy_arrow(conn, f"main.{quote(name)}", _sqlite_table(src, name))
    finally:
        src.close()


def _sqlite_table(src: sqlite3.Connection, name: str) -> pa.Table:
    declared = {row[1]: row[2] for row in src.execute(f"PRAGMA table_info({quote(name)})")}
    cursor = src.execute(f"SELECT * FROM {quote(name)}")
    columns = [d[0] for d in cursor.description]
    values = list(zip(*cursor.fetchall(), strict=False)) or [() for _ in columns]
    return pa.table(
        {c: _arrow_column(list(v), declared.get(c, "")) for c, v in zip(columns, values, strict=True)}
    )


def _affinity(declared: str) -> pa.DataType:
    """SQLite's type-affinity rules (datatype3.html, 3.1), in their order of precedence."""
    upper = declared.upper()
    if "INT" in upper:
        return pa.int64()
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return pa.string()
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    return pa.string()


def _arrow_column(values: list[Any], declared: str = "") -> pa.Array:
    """SQLite columns may mix types; a column Arrow cannot type as one becomes text. A column with
    no values (an empty table, or all NULL) takes its declared type, so it still compares and sums
    as SQLite would instead of arriving as text or as DuckDB's NULL type."""
    if all(v is None for v in values):
        return pa.array(values, type=_affinity(declared))
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
