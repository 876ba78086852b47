"""What the cloud SQL engines (Synapse Serverless, Databricks SQL) share, written once.

A cloud engine is a DB-API driver behind a `connect` callable — the seam tests fake — plus what
differs per service: how the driver is cancelled and reports errors, the type names it uses, and
how its catalog is read. Everything else lives here: parse-and-validate (sqlglot, through the
validator), the row cap in the dialect's own form, a timer that really cancels the running
statement, idle connections kept for reuse, rows made JSON-safe, and unknown-table problems
resolved against fully qualified names.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib
import logging
import math
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.core.credentials import AccessToken, TokenCredential
from sqlglot import exp

from loom.engines.bounds import MAX_RESULT_BYTES, Bounded, bounded_rows, cut_name, header_size
from loom.engines.catalog_cache import CATALOG_MAX_AGE_S
from loom.engines.contracts import (
    Catalog,
    Column,
    ColumnInfo,
    Problem,
    QueryError,
    ResultSet,
    TableInfo,
    json_safe,
    unsupported_dialect,
)
from loom.engines.errors import shown
from loom.engines.sql import qualify
from loom.engines.sql.deadlines import CancelTimer
from loom.engines.sql.validator import apply_row_cap, parse_read_only, pin_now

log = logging.getLogger(__name__)

# A query naming a table the catalog lacks re-reads a catalog at least this old, once: the table
# may be new. The floor keeps a model that invents tables from querying the catalog views in a loop.
RECHECK_UNKNOWN_AFTER_S = 60.0

CANCEL_RETRY_S = 0.25  # a cancel sent before the driver knows its statement id is lost; send again
TOKEN_REFRESH_MARGIN_S = 300  # fetch a new token this long before the old one expires
MAX_IDLE_CONNECTIONS = 4
IDLE_CONNECTION_S = 300.0  # older idle connections are closed: servers drop idle sessions anyway
METADATA_SCHEMAS = frozenset({"information_schema", "sys"})


# --- the DB-API surface we use (PEP 249) ---------------------------------------------------------


class DBAPICursor(Protocol):
    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...

    def execute(self, operation: str, parameters: Any = ...) -> Any: ...

    def fetchmany(self, size: int = ...) -> Sequence[Sequence[Any]]: ...

    def fetchall(self) -> Sequence[Sequence[Any]]: ...

    def close(self) -> None: ...


class DBAPIConnection(Protocol):
    def cursor(self) -> Any: ...

    def close(self) -> None: ...


Connect = Callable[[], DBAPIConnection]


def close_quietly(thing: Any) -> None:
    # Closing after a failure or a cancel may itself fail; the original error is the one to report.
    with suppress(Exception):
        thing.close()


# --- tokens --------------------------------------------------------------------------------------


class EntraToken:
    """A bearer token for one scope, from an azure-identity credential, refreshed before it expires.

    Not every credential caches (AzureCliCredential starts a process per call), so the token is
    kept here and fetched again only near its expiry.
    """

    def __init__(self, credential: TokenCredential, scope: str, clock: Callable[[], float] = time.time):
        self.credential = credential
        self.scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None

    def get(self) -> str:
        return self.access_token().token

    def access_token(self) -> AccessToken:
        """The token with its expiry (what an SDK that takes a credential expects back)."""
        with self._lock:
            if self._token is None or self._token.expires_on - TOKEN_REFRESH_MARGIN_S <= self._clock():
                self._token = self.credential.get_token(self.scope)
            return self._token


# --- drivers -------------------------------------------------------------------------------------


def _never(error: BaseException) -> bool:
    return False


def _nothing_to_set(conn: Any, timeout_s: float) -> None:
    return None


def _cancel_cursor(cursor: Any) -> None:
    cancel = getattr(cursor, "cancel", None)
    if callable(cancel):
        cancel()


@dataclass(frozen=True)
class Driver:
    """How one service's driver is cancelled and reports failures."""

    label: str  # how users name the service in messages: "Synapse Serverless", "Databricks SQL"
    # The server's own sentence in a driver error; `shown` then makes it fit to show.
    message: Callable[[BaseException], str] = str
    is_timeout: Callable[[BaseException], bool] = _never
    cancel: Callable[[Any], None] = _cancel_cursor
    # Per-query settings the driver takes on the connection before a cursor is made (a timeout).
    before_query: Callable[[Any, float], None] = _nothing_to_set


def timeout_error(timeout_s: float) -> QueryError:
    return QueryError(
        "timeout",
        f"The query was cancelled after the {timeout_s:g} s time limit. Make it cheaper: filter earlier, "
        "aggregate before joining, or avoid cross joins.",
    )


def driver_connect(module: str, service: str, package: str, extra: str) -> Callable[..., Any]:
    """The driver's `connect`, imported on first use: drivers are optional extras."""
    try:
        connect: Callable[..., Any] = importlib.import_module(module).connect
    except ImportError as e:
        raise QueryError(
            "source_unavailable",
            f"{service} needs the {package} package: pip install 'loom-data-agents[{extra}]'.",
        ) from e
    return connect


def run_query(
    conn: DBAPIConnection, sql: str, *, max_rows: int, max_bytes: int, timeout_s: float, driver: Driver
) -> tuple[list[Sequence[Any]], Bounded]:
    """Execute and fetch at most `max_rows` rows and about `max_bytes` within `timeout_s` (fetching
    and converting included); the statement is cancelled when late."""
    cursor = conn.cursor()
    try:
        with CancelTimer(lambda: driver.cancel(cursor), timeout_s, CANCEL_RETRY_S) as timer:
            try:
                cursor.execute(sql)
                description = list(cursor.description or [])
                rows = (
                    bounded_rows(
                        cursor.fetchmany,
                        max_rows=max_rows,
                        max_bytes=max_bytes,
                        convert=cell,
                        header=header_size([cut_name(str(d[0])) for d in description]),
                    )
                    if description
                    else Bounded([], None)
                )
            except Exception as e:  # every driver has its own error classes; all mean "the query failed"
                if timer.fired or driver.is_timeout(e):
                    raise timeout_error(timeout_s) from e
                reason = shown(driver.message(e), log, f"{driver.label} query failed")
                message = f"{driver.label} could not run the query: {reason}"
                raise QueryError("execution_error", message) from e
        if timer.fired:  # some drivers end a cancelled statement quietly, with no rows
            raise timeout_error(timeout_s)
        return description, rows
    finally:
        close_quietly(cursor)


def fetch_rows(
    conn: DBAPIConnection, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None
) -> list[Any]:
    """Our own metadata queries (never model-written): bound parameters, all rows."""
    cursor = conn.cursor()
    try:
        if parameters:
            cursor.execute(sql, parameters)
        else:
            cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        close_quietly(cursor)


# --- connections ---------------------------------------------------------------------------------


class ConnectionPool:
    """Idle connections kept for reuse: a new one costs a login (and a token) every time.

    A connection that saw any error — a cancelled statement included — is closed, not reused, so a
    half-finished statement can never leak into the next query.
    """

    def __init__(self, connect: Connect, driver: Driver, clock: Callable[[], float] = time.monotonic):
        self._connect = connect
        self._driver = driver
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: list[tuple[float, DBAPIConnection]] = []
        self.problem: str | None = None  # why the last connection could not be made

    @contextmanager
    def connection(self) -> Iterator[DBAPIConnection]:
        conn = self._take() or self._open()
        try:
            yield conn
        except BaseException:
            close_quietly(conn)
            raise
        self._give_back(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, conn in idle:
            close_quietly(conn)

    def _open(self) -> DBAPIConnection:
        try:
            conn = self._connect()
        except QueryError as e:
            self.problem = e.message
            raise
        except Exception as e:  # driver, network and credential errors all mean "cannot reach it"
            what = f"connecting to {self._driver.label} failed"
            reason = shown(self._driver.message(e), log, what, logging.WARNING)
            self.problem = f"Could not connect to {self._driver.label}: {reason}"
            raise QueryError("source_unavailable", self.problem) from e
        self.problem = None
        return conn

    def _take(self) -> DBAPIConnection | None:
        now = self._clock()
        with self._lock:
            stale = [c for t, c in self._idle if now - t > IDLE_CONNECTION_S]
            self._idle = [(t, c) for t, c in self._idle if now - t <= IDLE_CONNECTION_S]
            conn = self._idle.pop()[1] if self._idle else None
        for old in stale:
            close_quietly(old)
        return conn

    def _give_back(self, conn: DBAPIConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append((self._clock(), conn))
                return
        close_quietly(conn)


# --- types and values ----------------------------------------------------------------------------

# Type names both services use, as ResultSet and Catalog name them; each engine adds its own.
BASE_TYPES: dict[str, str] = {
    **dict.fromkeys(("varchar", "nvarchar", "char", "nchar", "text", "ntext", "string"), "string"),
    **dict.fromkeys(("tinyint", "smallint", "int", "integer", "bigint"), "integer"),
    **dict.fromkeys(("float", "real", "double"), "float"),
    **dict.fromkeys(("decimal", "numeric", "dec"), "decimal"),
    **dict.fromkeys(("boolean", "bool"), "boolean"),
    "date": "date",
    "time": "time",
    **dict.fromkeys(("binary", "varbinary"), "binary"),
}

# Drivers that describe columns by Python type (mssql-python, pyodbc) rather than by name.
PYTHON_TYPES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "float",
    decimal.Decimal: "decimal",
    bool: "boolean",
    dt.datetime: "timestamp",
    dt.date: "date",
    dt.time: "time",
    dt.timedelta: "interval",
    bytes: "binary",
    bytearray: "binary",
    uuid.UUID: "string",
}


def simple_type(type_code: object, names: dict[str, str]) -> str:
    """`DECIMAL(12,2)` → `decimal`, `ARRAY<INT>` → `array` looked up in `names`, `str` → `string`."""
    if isinstance(type_code, type):
        return PYTHON_TYPES.get(type_code, type_code.__name__.lower())
    text = str(type_code).strip().lower()
    base = re.split(r"[(<\s]", text, maxsplit=1)[0]
    return names.get(base, base or "unknown")


def cell(value: Any) -> Any:
    """One value made JSON-safe; numpy/pandas scalars and arrays (some drivers return them) first."""
    if hasattr(value, "tolist") and not isinstance(value, bytes | bytearray):
        value = value.tolist()
    return json_safe(value)


def result_columns(description: Sequence[Sequence[Any]], types: dict[str, str]) -> list[Column]:
    return [Column(name=cut_name(str(d[0])), type=simple_type(d[1], types)) for d in description]


# --- catalog and name resolution -----------------------------------------------------------------


@dataclass
class CatalogData:
    """A catalog, plus every table under its fully qualified three-part key (lowercase)."""

    catalog: Catalog
    keys: dict[str, str] = field(default_factory=dict)  # `lake.dbo.sales` → display name `dbo.sales`


def build_catalog(
    columns: Iterable[tuple[str, str, str, str, str]],
    *,
    types: dict[str, str],
    table_descriptions: dict[str, str] | None = None,
) -> CatalogData:
    """From (three-part key, display name, column, type, column comment) rows in column order."""
    descriptions = table_descriptions or {}
    tables: dict[str, TableInfo] = {}
    keys: dict[str, str] = {}
    for key, name, column, data_type, comment in columns:
        table = tables.get(name)
        if table is None:
            table = tables[name] = TableInfo(name=name, columns=[], description=descriptions.get(name, ""))
            keys[key.lower()] = name
        table.columns.append(ColumnInfo(name=column, type=simple_type(data_type, types), description=comment))
    return CatalogData(catalog=Catalog(tables=list(tables.values())), keys=keys)


def _qualified_key(table: exp.Table, defaults: tuple[str, str]) -> str | None:
    """`sales` → `lake.dbo.sales` with defaults (lake, dbo); None for what is not a catalog table."""
    if not isinstance(table.this, exp.Identifier) or not table.name:
        return None  # a table function or a VALUES list: the validator judges those
    schema = table.db or defaults[1]
    if schema.lower() in METADATA_SCHEMAS:
        return None
    return f"{table.catalog or defaults[0]}.{schema}.{table.name}".lower()


def unknown_tables(expr: exp.Expr, data: CatalogData, defaults: tuple[str, str]) -> list[Problem]:
    """Tables the query names that the catalog lacks (the validator's checker, on three-part keys)."""
    return list(qualify.unknown_tables(expr, lambda t: _qualified_key(t, defaults), data.keys))


# --- the engine ----------------------------------------------------------------------------------


class DBAPIEngine(ABC):
    """The Engine protocol over a DB-API driver; subclasses say how their service differs."""

    name: str
    language = "sql"
    dialect: str
    driver: Driver
    types: dict[str, str]

    def __init__(self, connect: Connect, *, defaults: tuple[str, str]) -> None:
        self.defaults = defaults  # (catalog or database, schema) that unqualified names mean
        self._pool = ConnectionPool(connect, self.driver)
        self._catalog_lock = threading.Lock()
        self._catalog: CatalogData | None = None
        self._catalog_at = -math.inf  # time.monotonic() of the last read (or failed refresh)

    # --- Engine protocol ------------------------------------------------------------------------

    @property
    def dialects(self) -> frozenset[str]:
        # Only the service's own dialect: a translation could change what a query means there.
        return frozenset({self.dialect})

    def execute(
        self,
        query: str,
        *,
        max_rows: int,
        timeout_s: float,
        now: dt.datetime | None = None,
        dialect: str | None = None,
        max_bytes: int | None = None,
    ) -> ResultSet:
        """Validate, cap at `max_rows + 1` rows in the dialect's own form, run with a real cancel."""
        self._check_dialect(dialect)
        sql = self.prepare(query, max_rows, now)
        started = time.perf_counter()
        with self._pool.connection() as conn:
            self.driver.before_query(conn, timeout_s)
            description, rows = run_query(
                conn,
                sql,
                max_rows=max_rows,
                max_bytes=max_bytes or MAX_RESULT_BYTES,
                timeout_s=timeout_s,
                driver=self.driver,
            )
        return rows.result(
            result_columns(description, self.types), engine=self.name, query=sql, started=started
        )

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        try:
            self._check_dialect(dialect)
            self.prepare(query, 1, None)
        except QueryError as e:
            return e.problems
        return []

    def catalog(self) -> Catalog:
        return self._catalog_data().catalog

    def loaded_catalog(self) -> Catalog | None:
        with self._catalog_lock:
            data, read_at = self._catalog, self._catalog_at
        return data.catalog if data is not None and time.monotonic() - read_at < CATALOG_MAX_AGE_S else None

    def problem(self) -> str | None:
        return self._pool.problem

    def close(self) -> None:
        self._pool.close()

    # --- steps ----------------------------------------------------------------------------------

    def _check_dialect(self, dialect: str | None) -> None:
        if dialect is not None and dialect not in self.dialects:
            raise unsupported_dialect(self, dialect)

    def prepare(self, query: str, max_rows: int, now: dt.datetime | None) -> str:
        """The SQL that will be sent, generated from the validated tree; QueryError when refused."""
        expr = parse_read_only(query, self.dialect)
        problems = unknown_tables(expr, self._catalog_data(), self.defaults)
        if problems:  # perhaps created since the catalog was read: look once more
            catalog = self._catalog_data(older_than=RECHECK_UNKNOWN_AFTER_S)
            problems = unknown_tables(expr, catalog, self.defaults)
        if problems:
            raise QueryError(problems[0].code, problems[0].message, problems)
        if now is not None:
            expr = pin_now(expr, now)
        return apply_row_cap(expr, max_rows).sql(dialect=self.dialect)

    @abstractmethod
    def load_catalog(self, conn: DBAPIConnection) -> CatalogData: ...

    def _catalog_data(self, older_than: float | None = None) -> CatalogData:
        """The catalog, read again when older than `older_than` (default `CATALOG_MAX_AGE_S`). A failed
        re-read keeps the catalog in hand (logged, tried again after the same wait); a failed first
        read raises."""
        max_age = CATALOG_MAX_AGE_S if older_than is None else older_than
        with self._catalog_lock:
            if self._catalog is None or time.monotonic() - self._catalog_at >= max_age:
                self._catalog = self._read_catalog(self._catalog)
                self._catalog_at = time.monotonic()
            return self._catalog

    def _read_catalog(self, known: CatalogData | None) -> CatalogData:
        try:
            with self._pool.connection() as conn:
                return self._load(conn)
        except QueryError as e:
            if known is None:
                raise
            log.warning("re-reading the %s catalog failed; keeping the one read before: %s", self.name, e)
            return known

    def _load(self, conn: DBAPIConnection) -> CatalogData:
        try:
            return self.load_catalog(conn)
        except QueryError:
            raise
        except Exception as e:  # the driver's own error classes
            what = f"reading the {self.driver.label} catalog failed"
            reason = shown(self.driver.message(e), log, what, logging.WARNING)
            message = f"Could not read the {self.driver.label} catalog: {reason}"
            raise QueryError("source_unavailable", message) from e
