"""Opening a local source as an in-memory DuckDB database (a `.duckdb` file is opened read-only).

Every table is copied in. Copying is deliberate: objects *registered* on a DuckDB connection (Arrow
datasets, which is how Delta tables arrive) are invisible to that connection's cursors, and a cursor
per call is what lets calls run in parallel and be interrupted one by one. The embedded engine serves
local lakehouses; large data is the Azure backends' job.

After the load, external access and extension loading are switched off and the configuration is
locked. That is defence in depth: the validator (parsing) is what keeps queries read-only.

A table or view that cannot be read (a corrupt file, a name two files share, a view over a table
that is gone) is left out and the source serves the others; `Opened.left_out` says which and why,
in words fit to show (no server paths: those go to the log).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from sqlglot import exp

from loom.engines.contracts import QueryError
from loom.engines.errors import public_text, shown
from loom.engines.sources import DuckDBSource
from loom.engines.sql.limits import LocalLimits
from loom.engines.sql.scratch import scratch_folder

log = logging.getLogger(__name__)

# Settings fixed at connect time: nothing may be downloaded or loaded behind our back.
CONNECT_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
TABLE_FILE_SUFFIXES = (".parquet", ".csv")
MAX_REASON_CHARS = 300
_LOAD_ERRORS = (duckdb.Error, OSError, sqlite3.Error, pa.ArrowException, DeltaError)


@dataclass
class Opened:
    """A loaded source: its database, table descriptions (Delta), and what was left out and why."""

    conn: duckdb.DuckDBPyConnection
    descriptions: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # table name as queried → reason


def source_location(source: DuckDBSource) -> Path:
    return Path(source.location).expanduser()


def open_source(source: DuckDBSource, limits: LocalLimits | None = None) -> Opened:
    """The source loaded into DuckDB. Messages name the source, not where it lives on the server
    (the log has the path)."""
    location = source_location(source)
    if not location.exists():
        log.warning("source %r: nothing at %s", source.name, location)
        raise QueryError(
            "source_unavailable",
            f"The source {source.name!r} has no data where it is configured to be (the server log "
            "names the path). (For the sample lakehouse, run `loom data seed` first.)",
        )
    try:
        opened = _load(location, limits or LocalLimits())
    except _LOAD_ERRORS as e:
        reason = shown(e, log, f"opening the source {source.name!r} at {location} failed", logging.WARNING)
        raise QueryError("source_unavailable", f"Could not open the source {source.name!r}: {reason}") from e
    opened.conn.execute("SET enable_external_access = false")
    opened.conn.execute("SET lock_configuration = true")
    return opened


def _load(location: Path, limits: LocalLimits) -> Opened:
    suffix = location.suffix.lower()
    if location.is_file() and suffix == ".duckdb":
        conn = _connected(str(location), limits, read_only=True)
        # Its tables are in the file; its views are bound below, and one must not read a file then
        # (the limits come first: with external access off, DuckDB refuses a temp directory).
        conn.execute("SET enable_external_access = false")
        return Opened(conn, left_out=_broken_views(conn, location))
    conn = _connected(":memory:", limits)
    opened = Opened(conn)
    if location.is_file() and suffix in SQLITE_SUFFIXES:
        _load_sqlite(opened, location)
        return opened
    if location.is_dir():
        _load_folder(opened, location)
        return opened
    conn.close()
    log.warning("not a SQL source: %s", location)
    raise QueryError(
        "source_unavailable",
        f"The source at {location.name!r} is not a SQL source: use a .duckdb or .sqlite file, or a "
        "folder of Delta, Parquet and CSV tables.",
    )


def _connected(database: str, limits: LocalLimits, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the source's limits already set: they hold while it loads, too."""
    if limits.temp_directory is not None:
        limits = replace(limits, temp_directory=str(scratch_folder(Path(limits.temp_directory))))
    conn = duckdb.connect(database, read_only=read_only, config=CONNECT_CONFIG)
    for statement in limits.statements():
        conn.execute(statement)
    return conn


def _left_out(opened: Opened, name: str, what: str, error: BaseException | str, where: Path) -> None:
    """Record a table that is not served: the log gets the path and the full error, the reason
    shown to users neither."""
    log.warning("left out %s from %s: %s (%s)", name, where, what, error)
    opened.left_out.setdefault(name, f"{what}: {_reason(error)}")


def _broken_views(conn: duckdb.DuckDBPyConnection, location: Path) -> dict[str, str]:
    """Views of a `.duckdb` file that cannot be read (one over a table that is gone, say). DuckDB
    lists them with the columns they had when made, so only running one shows it is broken; each
    is bound (LIMIT 0 reads no rows) once per load."""
    views = conn.execute(
        "SELECT schema_name, view_name, sql FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal"
    ).fetchall()
    broken: dict[str, str] = {}
    for schema, view, definition in views:
        name = view if schema == "main" else f"{schema}.{view}"
        refused = _refused_definition(definition)
        if refused:  # probe 9: a view over duckdb_settings() showed the server's paths
            log.warning("left out the view %s of %s: %s", name, location, refused)
            broken[name] = f"its definition does what queries may not ({refused})"
            continue
        try:
            conn.execute(f"SELECT * FROM {quote(schema)}.{quote(view)} LIMIT 0")
        except duckdb.Error as e:
            log.warning("left out the view %s of %s: %s", name, location, e)
            broken[name] = f"the view cannot be read: {_reason(e)}"
    return broken


def _refused_definition(definition: str | None) -> str:
    """Why a view's query would be refused if a user wrote it ("" when it would not): the rules
    for what queries may read hold for what a view reads too."""
    from loom.engines.sql.validator import validate_sql  # the validator imports the loaders

    try:
        created = sqlglot.parse_one(definition or "", read="duckdb")
    except sqlglot.errors.SqlglotError:
        return "its definition cannot be checked"
    body = created.expression if isinstance(created, exp.Create) else None
    if not isinstance(body, exp.Query):
        return "its definition cannot be checked"
    problems = validate_sql(body.sql("duckdb"), "duckdb")
    return problems[0].code if problems else ""


def _reason(error: BaseException | str) -> str:
    """The error's first line: what follows is DuckDB quoting our own load statement, or hints."""
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    return public_text(first, MAX_REASON_CHARS)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _table_name(path: Path) -> str:
    stem = path.name if path.is_dir() else path.stem
    return "".join(c if c.isalnum() or c == "_" else "_" for c in stem).strip("_") or "table"


def _is_table(path: Path) -> bool:
    if path.is_dir():
        return (path / "_delta_log").is_dir()
    # A regular file only: a FIFO or a device named `t.csv` would block the load for ever.
    return path.is_file() and path.suffix.lower() in TABLE_FILE_SUFFIXES


def _visible(folder: Path, root: Path) -> list[Path]:
    """The folder's entries that are data: not hidden, and inside the source once links are
    followed (a link to /etc/passwd named `t.csv` must not become a table)."""
    inside = root.resolve()
    return [
        p
        for p in sorted(folder.iterdir())
        if not p.name.startswith((".", "_")) and p.resolve().is_relative_to(inside)
    ]


def _load_folder(opened: Opened, root: Path) -> None:
    """Top-level tables go to `main`; a subfolder of tables (bronze, silver, gold…) is a schema."""
    loaded: dict[str, str] = {}  # table → the file it came from
    for path in _visible(root, root):
        if _is_table(path):
            _load_or_skip(opened, "main", path, root, loaded)
        elif path.is_dir():
            tables = [p for p in _visible(path, root) if _is_table(p)]
            if tables:
                opened.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(_table_name(path))}")
            for table in tables:
                _load_or_skip(opened, _table_name(path), table, root, loaded)


def _load_or_skip(opened: Opened, schema: str, path: Path, root: Path, loaded: dict[str, str]) -> None:
    """One table; one that cannot be read is left out with the reason, and the source serves the
    others. A second file that makes the same table (`t.parquet` beside `t.csv`) is left out by its
    own name, since the table it would make is served from the first."""
    name = _qualified(schema, _table_name(path))
    if name in loaded:
        file = path.relative_to(root).as_posix()
        _left_out(opened, file, "not loaded", f"{loaded[name]} already makes the table {name}", path)
        return
    try:
        opened.descriptions |= _load_table(opened.conn, schema, path)
    except _LOAD_ERRORS as e:
        _left_out(opened, name, f"{path.name} cannot be read as a table", e, path)
        return
    loaded[name] = path.relative_to(root).as_posix()


def _qualified(schema: str, name: str) -> str:
    return name if schema == "main" else f"{schema}.{name}"


def _load_table(conn: duckdb.DuckDBPyConnection, schema: str, path: Path) -> dict[str, str]:
    name = _table_name(path)
    target = f"{quote(schema)}.{quote(name)}"
    qualified = _qualified(schema, name)
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


def _load_sqlite(opened: Opened, path: Path) -> None:
    """Through Python's sqlite3: DuckDB's sqlite extension would have to be downloaded. A table or
    view that cannot be read (a view over a table that is gone) is left out."""
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
            try:
                table = _sqlite_table(src, name)
            except (sqlite3.Error, pa.ArrowException) as e:
                _left_out(opened, name, "it cannot be read", e, path)
                continue
            _copy_arrow(opened.conn, f"main.{quote(name)}", table)
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
