"""The embedded SQL engine: DuckDB over a local source (a folder of tables, a .duckdb or a .sqlite file).

Setup copies every table into one in-memory DuckDB database (a `.duckdb` file is opened read-only
instead). Copying is deliberate: objects *registered* on a DuckDB connection (Arrow datasets, which
is how Delta tables arrive) are invisible to that connection's cursors, and a cursor per call is
what lets calls run in parallel and be interrupted one by one. The embedded engine serves local
lakehouses; large data is the Azure backends' job.

After setup, external access and extension loading are switched off and the configuration is
locked. That is defence in depth: the validator (parsing) is what keeps queries read-only.
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from sqlglot import exp

from loom.engines.contracts import (
    Catalog,
    Column,
    ColumnInfo,
    Problem,
    QueryError,
    ResultSet,
    TableInfo,
    json_safe,
)
from loom.engines.sources import Source
from loom.engines.sql.deadlines import CancelTimer
from loom.engines.sql.freshness import FRESH_FOR_S, Version, data_version
from loom.engines.sql.sqlite_compat import sqlite_to_duckdb
from loom.engines.sql.validator import apply_row_cap, parse_read_only, pin_now

SAMPLE_VALUES = 5
LOW_CARDINALITY = 25  # text columns with at most this many distinct values get sample values
INTERRUPT_RETRY_S = 0.05
PREPARED_CACHE = 256  # validated queries remembered per engine

# Settings fixed at connect time: nothing may be downloaded or loaded behind our back.
CONNECT_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
TABLE_FILE_SUFFIXES = (".parquet", ".csv")

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


@dataclass(eq=False)
class _Loaded:
    """One load of the source: its in-memory database and what is derived from it. A load that
    the source has moved past stays usable by the queries already running on it."""

    conn: duckdb.DuckDBPyConnection
    version: Version
    tables: Catalog  # names, columns and DuckDB types, for validation
    sqlite_schema: dict[str, dict[str, str]]  # what the SQLite compat transforms read
    descriptions: dict[str, str]
    catalog: Catalog | None = None  # with sample values; built on first request
    prepared: OrderedDict[tuple[str, str, int], str] = field(default_factory=OrderedDict)


class DuckDBEngine:
    """SQL over one local source. Thread-safe: each call runs on its own cursor.

    The source is loaded on first use and loaded again when its data changes (checked from file
    metadata at most once per `FRESH_FOR_S`), so a running server answers from what is there now.
    """

    name = "duckdb"
    dialect = "duckdb"

    def __init__(self, source: Source) -> None:
        self.source = source
        self._setup_lock = threading.Lock()
        self._catalog_lock = threading.Lock()
        self._prepared_lock = threading.Lock()
        self._state: _Loaded | None = None
        self._checked_at = -math.inf  # time.monotonic() of the last look at the source's version

    # --- Engine protocol ------------------------------------------------------------------------

    def execute(
        self,
        query: str,
        *,
        max_rows: int,
        timeout_s: float,
        now: dt.datetime | None = None,
        dialect: str | None = None,
    ) -> ResultSet:
        """Validate, then run with a row cap and a time limit. `dialect` defaults to the source's."""
        state = self._loaded()
        sql = self._prepare(state, query, dialect or self.source.dialect, max_rows, now)
        started = time.perf_counter()
        description, rows = self._run(state, sql, max_rows + 1, timeout_s)
        return ResultSet(
            columns=[Column(name=d[0], type=simple_type(d[1])) for d in description],
            rows=[[json_safe(v) for v in row] for row in rows[:max_rows]],
            row_count=min(len(rows), max_rows),
            truncated=len(rows) > max_rows,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            engine=self.name,
            query=sql,
        )

    def validate(self, query: str, dialect: str | None = None) -> list[Problem]:
        try:
            self._prepare(self._loaded(), query, dialect or self.source.dialect, 1, None)
        except QueryError as e:
            return e.problems
        return []

    def catalog(self) -> Catalog:
        """Tables, columns, types, row counts and sample values; computed once per load."""
        state = self._loaded()
        with self._catalog_lock:
            if state.catalog is None:
                state.catalog = _build_catalog(state.conn, state.descriptions)
            return state.catalog

    def loaded_catalog(self) -> Catalog | None:
        """The catalog, if it is built and the source was seen unchanged within `FRESH_FOR_S`;
        else None. Never reads the source (safe on an event loop)."""
        state = self._state
        if state is None or time.monotonic() - self._checked_at >= FRESH_FOR_S:
            return None
        return state.catalog

    def close(self) -> None:
        with self._setup_lock:
            if self._state is not None:
                self._state.conn.close()
                self._state = None

    # --- steps ----------------------------------------------------------------------------------

    def _prepare(
        self, state: _Loaded, query: str, dialect: str, max_rows: int, now: dt.datetime | None
    ) -> str:
        """The DuckDB SQL that will run, remembered for queries that come again (verified ones do).

        A pinned `now` changes the SQL, so those are not remembered.
        """
        if now is not None:
            return _validated(state, query, dialect, max_rows, now)
        key = (query, dialect, max_rows)
        with self._prepared_lock:
            sql = state.prepared.get(key)
            if sql is not None:
                state.prepared.move_to_end(key)
                return sql
        sql = _validated(state, query, dialect, max_rows, None)
        with self._prepared_lock:
            state.prepared[key] = sql
            if len(state.prepared) > PREPARED_CACHE:
                state.prepared.popitem(last=False)
        return sql

    def _run(
        self, state: _Loaded, sql: str, fetch: int, timeout_s: float
    ) -> tuple[list[Any], list[tuple[Any, ...]]]:
        cursor = self._cursor(state)
        try:
            with CancelTimer(cursor.interrupt, timeout_s, INTERRUPT_RETRY_S) as watchdog:
                try:
                    cursor.execute(sql)
                    return list(cursor.description or []), cursor.fetchmany(fetch)
                except duckdb.Error as e:
                    if watchdog.fired or isinstance(e, duckdb.InterruptException):
                        raise _timeout(timeout_s) from e
                    raise QueryError("execution_error", str(e)) from e
        finally:
            cursor.close()

    def _loaded(self) -> _Loaded:
        """The current load of the source: made on first use, and again when the data changed."""
        with self._setup_lock:
            if self._state is None or self._changed(self._state):
                try:
                    self._state = _load_state(self.source)
                except QueryError:
                    self._checked_at = -math.inf  # not the old data for a window: look again next time
                    raise
                self._checked_at = time.monotonic()
            return self._state

    def _changed(self, state: _Loaded) -> bool:
        now = time.monotonic()
        if now - self._checked_at < FRESH_FOR_S:
            return False
        self._checked_at = now
        return data_version(_location(self.source)) != state.version

    def _connection(self) -> duckdb.DuckDBPyConnection:
        """The current in-memory database (for tests and benchmarks that compare against it)."""
        return self._loaded().conn

    def _cursor(self, state: _Loaded) -> duckdb.DuckDBPyConnection:
        # creating a cursor touches the parent connection; close() may race
        with self._setup_lock:
            try:
                return state.conn.cursor()
            except duckdb.ConnectionException as e:
                raise QueryError(
                    "source_unavailable", f"The engine for {self.source.name!r} was closed."
                ) from e


def _validated(state: _Loaded, query: str, dialect: str, max_rows: int, now: dt.datetime | None) -> str:
    """Generated from the validated tree, never the raw text; raises QueryError when refused."""
    expr = parse_read_only(query, dialect, state.tables)
    if dialect == "sqlite":
        expr = sqlite_to_duckdb(expr, state.sqlite_schema)
    if dialect != "duckdb":
        # Check the translation too: what DuckDB receives is what must be read-only.
        expr = parse_read_only(expr.sql(dialect="duckdb"), "duckdb", state.tables)
    if now is not None:
        expr = pin_now(expr, now)
    capped: exp.Expr = apply_row_cap(expr, max_rows)
    return capped.sql(dialect="duckdb")


def _timeout(timeout_s: float) -> QueryError:
    return QueryError(
        "timeout",
        f"The query was stopped after the {timeout_s:g} s time limit. Make it cheaper: filter earlier, "
        "aggregate before joining, or avoid cross joins.",
    )


# --- opening a source ---------------------------------------------------------------------------


def _location(source: Source) -> Path:
    return Path(source.location).expanduser()


def _load_state(source: Source) -> _Loaded:
    # The version is read before the data: a write that lands during the load shows at the next check.
    version = data_version(_location(source))
    conn, descriptions = _open(source)
    tables = _structure(conn)
    return _Loaded(conn, version, tables, _by_bare_name(tables), descriptions)


def _open(source: Source) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    location = _location(source)
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


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _table_name(path: Path) -> str:
    stem = path.name if path.is_dir() else path.stem
    return "".join(c if c.isalnum() or c == "_" else "_" for c in stem).strip("_") or "table"


def _is_table(path: Path) -> bool:
    if path.is_dir():
        return (path / "_delta_log").is_dir()
    return path.suffix.lower() in TABLE_FILE_SUFFIXES


def _visible(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if not p.name.startswith((".", "_"))]


def _load_folder(conn: duckdb.DuckDBPyConnection, root: Path) -> dict[str, str]:
    """Top-level tables go to `main`; a subfolder of tables (bronze, silver, gold…) is a schema."""
    descriptions: dict[str, str] = {}
    for path in _visible(root):
        if _is_table(path):
            descriptions |= _load_table(conn, "main", path)
        elif path.is_dir():
            tables = [p for p in _visible(path) if _is_table(p)]
            if tables:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(_table_name(path))}")
            for table in tables:
                descriptions |= _load_table(conn, _table_name(path), table)
    return descriptions


def _load_table(conn: duckdb.DuckDBPyConnection, schema: str, path: Path) -> dict[str, str]:
    name = _table_name(path)
    target = f"{_quote(schema)}.{_quote(name)}"
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
            _copy_arrow(conn, f"main.{_quote(name)}", _sqlite_table(src, name))
    finally:
        src.close()


def _sqlite_table(src: sqlite3.Connection, name: str) -> pa.Table:
    declared = {row[1]: row[2] for row in src.execute(f"PRAGMA table_info({_quote(name)})")}
    cursor = src.execute(f"SELECT * FROM {_quote(name)}")
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


# --- catalog ------------------------------------------------------------------------------------

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


def _by_bare_name(catalog: Catalog) -> dict[str, dict[str, str]]:
    # A SQLite source has only `main`, so bare names are unambiguous where the compat step runs.
    return {t.name.rsplit(".", 1)[-1]: {c.name: c.type for c in t.columns} for t in catalog.tables}


def _structure(conn: duckdb.DuckDBPyConnection) -> Catalog:
    """Tables and their columns with DuckDB's type names: what validation checks names against.

    Cheap (no data is read), unlike the full catalog with row counts and sample values.
    """
    tables: dict[str, TableInfo] = {}
    for schema, table, column, data_type in conn.execute(_STRUCTURE_SQL).fetchall():
        name = _qualified(schema, table)
        info = tables.setdefault(name, TableInfo(name=name, columns=[]))
        info.columns.append(ColumnInfo(name=column, type=data_type))
    return Catalog(tables=list(tables.values()))


def _build_catalog(conn: duckdb.DuckDBPyConnection, descriptions: dict[str, str]) -> Catalog:
    cursor = conn.cursor()
    try:
        tables = []
        for schema, table, comment in cursor.execute(_TABLES_SQL).fetchall():
            name = _qualified(schema, table)
            info = _table_info(cursor, schema, table, name)
            info.description = descriptions.get(name) or comment or ""
            tables.append(info)
        return Catalog(tables=tables)
    finally:
        cursor.close()


def _table_info(cursor: duckdb.DuckDBPyConnection, schema: str, table: str, name: str) -> TableInfo:
    columns = [
        ColumnInfo(name=c, type=simple_type(t), description=comment or "")
        for c, t, comment in cursor.execute(_COLUMNS_SQL, [schema, table]).fetchall()
    ]
    target = f"{_quote(schema)}.{_quote(table)}"
    count = cursor.execute(f"SELECT count(*) FROM {target}").fetchone()
    _add_samples(cursor, target, [c for c in columns if c.type == "string"])
    return TableInfo(name=name, columns=columns, row_count=int(count[0]) if count else None)


def _add_samples(cursor: duckdb.DuckDBPyConnection, target: str, text_columns: list[ColumnInfo]) -> None:
    """Most frequent values of low-cardinality text columns: they tell a model how data is spelled."""
    if not text_columns:
        return
    distincts = ", ".join(f"approx_count_distinct({_quote(c.name)})" for c in text_columns)
    counts = cursor.execute(f"SELECT {distincts} FROM {target}").fetchone() or ()
    for column, distinct in zip(text_columns, counts, strict=True):
        if distinct is None or distinct > LOW_CARDINALITY:
            continue
        col = _quote(column.name)
        rows = cursor.execute(
            f"SELECT {col} FROM {target} WHERE {col} IS NOT NULL GROUP BY {col} "
            f"ORDER BY count(*) DESC, {col} LIMIT {SAMPLE_VALUES}"
        ).fetchall()
        column.sample_values = [json_safe(r[0]) for r in rows]
