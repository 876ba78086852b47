"""The embedded SQL engine: DuckDB over a local source (a folder of tables, a .duckdb or a .sqlite file).

The source is copied into an in-memory database (`duckdb_open`), described by a catalog
(`duckdb_catalog`), and loaded again when its files change (`freshness`). Each query is validated
by parsing, capped, and run on a cursor of its own with a time limit that really interrupts it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import duckdb
from sqlglot import exp

from loom.engines.bounds import (
    CUT,
    MAX_NAME_CHARS,
    MAX_RESULT_BYTES,
    Bounded,
    Fetch,
    bounded_rows,
    header_size,
)
from loom.engines.contracts import (
    Catalog,
    Column,
    Problem,
    QueryError,
    ResultSet,
    unsupported_dialect,
)
from loom.engines.errors import shown
from loom.engines.isolated import query_started
from loom.engines.sources import DuckDBSource
from loom.engines.sql.builders import bounded_builders
from loom.engines.sql.deadlines import CancelTimer
from loom.engines.sql.duckdb_catalog import build_catalog, by_bare_name, simple_type, structure
from loom.engines.sql.duckdb_open import open_source, source_location
from loom.engines.sql.freshness import FRESH_FOR_S, Version, data_version
from loom.engines.sql.limits import LocalLimits
from loom.engines.sql.sqlite_compat import sqlite_to_duckdb
from loom.engines.sql.validator import apply_row_cap, parse_read_only, pin_now
from loom.engines.sql.value_cuts import CutPlan
from loom.engines.sql.value_cuts import plan as plan_cuts

log = logging.getLogger(__name__)

INTERRUPT_RETRY_S = 0.05
_FATAL = (duckdb.InternalException, duckdb.FatalException)  # they invalidate the whole database
PREPARED_CACHE = 256  # validated queries remembered per engine
MAX_COLUMNS = 1 << 30  # "all of them", for a result whose columns were not described
LOAD_WAIT_S = 60.0  # how long a query waits for a load of its source that is under way


@dataclass(eq=False)
class _Loaded:
    """One load of the source: its in-memory database and what is derived from it. A load that
    the source has moved past stays usable by the queries already running on it."""

    conn: duckdb.DuckDBPyConnection
    version: Version
    tables: Catalog  # names, columns and DuckDB types, for validation
    sqlite_schema: dict[str, dict[str, str]]  # what the SQLite compat transforms read
    descriptions: dict[str, str]
    left_out: dict[str, str]  # tables and views that could not be loaded → why
    catalog: Catalog | None = None  # with sample values; built on first request
    prepared: OrderedDict[tuple[str, str, int], str] = field(default_factory=OrderedDict)
    cut_plans: OrderedDict[tuple[str, int], CutPlan] = field(default_factory=OrderedDict)  # SQL, budget


class DuckDBEngine:
    """SQL over one local source. Thread-safe: each call runs on its own cursor.

    The source is loaded on first use and loaded again when its data changes (checked from file
    metadata at most once per `FRESH_FOR_S`), so a running server answers from what is there now.
    """

    name = "duckdb"
    language = "sql"
    dialect = "duckdb"
    # What `execute` translates from (sqlglot), besides DuckDB's own SQL.
    dialects = frozenset({"duckdb", "sqlite", "tsql", "databricks", "spark"})

    def __init__(self, source: DuckDBSource, limits: LocalLimits | None = None) -> None:
        self.source = source
        self.limits = limits or LocalLimits()
        self._setup_lock = threading.Lock()  # loading the source
        self._conn_lock = threading.Lock()  # a cursor against close(): not held while a load runs
        self._catalog_lock = threading.Lock()
        self._prepared_lock = threading.Lock()
        self._state: _Loaded | None = None
        self._checked_at = -math.inf  # time.monotonic() of the last look at the source's version
        self._problem: str | None = None  # why the last load failed

    # --- Engine protocol ------------------------------------------------------------------------

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
        """Validate, then run with a row cap, a size cap and a time limit that covers fetching and
        converting the rows too. `dialect` defaults to the source's."""
        written = self._dialect(dialect)
        state = self._loaded()
        sql = self._prepare(state, query, written, max_rows, now)
        started = time.perf_counter()
        description, rows = self._run(state, sql, max_rows, max_bytes or MAX_RESULT_BYTES, timeout_s)
        columns = [Column(name=d[0], type=simple_type(d[1])) for d in description]
        return rows.result(columns, engine=self.name, query=sql, started=started)

    def execute_built(
        self, sql: str, *, max_rows: int, timeout_s: float, max_bytes: int | None = None
    ) -> ResultSet:
        """Run SQL this process built (not written by a person or a model) with the same row, size
        and time limits, without parsing it again: the DAX engine compiles a parsed and checked DAX
        tree, quoting every name and escaping every literal itself, into SQL nested deeper than the
        SQL screen's parser bound allows for written SQL. The connection is read-only and locked as
        for every query."""
        state = self._loaded()
        started = time.perf_counter()
        capped = f"{sql} LIMIT {max_rows + 1}"
        description, rows = self._run(state, capped, max_rows, max_bytes or MAX_RESULT_BYTES, timeout_s)
        columns = [Column(name=d[0], type=simple_type(d[1])) for d in description]
        return rows.result(columns, engine=self.name, query=sql, started=started)

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        try:
            self._prepare(self._loaded(), query, self._dialect(dialect), 1, None)
        except QueryError as e:
            return e.problems
        return []

    def catalog(self) -> Catalog:
        """Tables, columns, types, row counts and sample values; computed once per load."""
        state = self._loaded()
        with self._catalog_lock:
            if state.catalog is None:
                state.catalog = self._build_catalog(state)
            return state.catalog

    def _build_catalog(self, state: _Loaded) -> Catalog:
        try:
            return build_catalog(state.conn, state.descriptions, state.left_out)
        except duckdb.Error as e:  # the data went bad under a load that was good
            reason = shown(e, log, f"reading the catalog of {self.source.name!r} failed", logging.WARNING)
            message = f"Could not read the tables of {self.source.name!r}: {reason}"
            raise QueryError("source_unavailable", message) from e

    def loaded_catalog(self) -> Catalog | None:
        """The catalog, if it is built and the source was seen unchanged within `FRESH_FOR_S`;
        else None. Never reads the source (safe on an event loop)."""
        state = self._state
        if state is None or time.monotonic() - self._checked_at >= FRESH_FOR_S:
            return None
        return state.catalog

    def problem(self) -> str | None:
        return self._problem

    def close(self) -> None:
        with self._setup_lock, self._conn_lock:
            if self._state is not None:
                self._state.conn.close()
                self._state = None

    # --- steps ----------------------------------------------------------------------------------

    def _dialect(self, asked: str | None) -> str:
        dialect = asked or self.source.dialect
        if dialect not in self.dialects:
            raise unsupported_dialect(self, dialect)
        return dialect

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
        self, state: _Loaded, sql: str, max_rows: int, max_bytes: int, timeout_s: float
    ) -> tuple[list[Any], Bounded]:
        cursor = self._cursor(state)
        query_started()  # an isolated engine's parent counts the time limit from here
        try:
            with CancelTimer(cursor.interrupt, timeout_s, INTERRUPT_RETRY_S) as watchdog:
                try:
                    cut = self._cut_plan(state, cursor, sql, max_bytes)
                    cursor.execute(cut.sql)
                    names = [str(d[0]) for d in (cursor.description or [])[: cut.width]]
                    rows = bounded_rows(
                        _merged(cursor, cut),
                        max_rows=max_rows,
                        max_bytes=max_bytes,
                        header=header_size(names),
                    )
                    if watchdog.fired:  # fetching and converting count against the limit too
                        raise _timeout(timeout_s)
                    return cut.describe(cursor.description or []), rows
                except duckdb.Error as e:
                    # A fatal error that lands after the time limit fired has still invalidated the
                    # database: it is handled as fatal, or the load would be kept and fail for all.
                    late = watchdog.fired or isinstance(e, duckdb.InterruptException)
                    if late and not isinstance(e, _FATAL):
                        raise _timeout(timeout_s) from e
                    raise self._failure(state, e) from e
                except (OverflowError, ValueError) as e:  # a value Python cannot hold (INTERVAL 1e8 YEARS)
                    reason = shown(e, log, "converting a result failed")
                    raise QueryError(
                        "unrepresentable_value", f"A value in the result cannot be returned: {reason}."
                    ) from e
        finally:
            cursor.close()

    def _cut_plan(
        self, state: _Loaded, cursor: duckdb.DuckDBPyConnection, sql: str, max_bytes: int
    ) -> CutPlan:
        """How `sql` runs with its long values cut inside DuckDB (`value_cuts`), remembered per
        query and budget. A query DuckDB cannot describe runs as it is, and fails with its own error."""
        with self._prepared_lock:
            found = state.cut_plans.get((sql, max_bytes))
        if found is not None:
            return found
        try:
            described = cursor.execute(_DESCRIBE.format(most=MAX_NAME_CHARS, sql=sql)).fetchall()
        except duckdb.Error:
            return CutPlan(sql, width=MAX_COLUMNS)
        if len(described) > MAX_RESULT_COLUMNS:
            raise _too_wide(len(described))
        columns = [(_name(str(r[0]), int(r[1])), str(r[2])) for r in described]
        renamed = any(int(r[1]) > MAX_NAME_CHARS for r in described)
        made = plan_cuts(sql, columns, max_bytes, renamed=renamed)
        with self._prepared_lock:
            state.cut_plans[(sql, max_bytes)] = made
            if len(state.cut_plans) > PREPARED_CACHE:
                state.cut_plans.popitem(last=False)
        return made

    def _failure(self, state: _Loaded, error: duckdb.Error) -> QueryError:
        """What a failed query tells the model and the user; a fatal error also drops the load.

        An INTERNAL or FATAL error invalidates the whole in-memory database: left in place, every
        later query of every tenant would fail. This load is closed and the next query loads the
        source again, so one bad query costs a reload, not the source.
        """
        if isinstance(error, _FATAL):
            log.error(
                "query on %r hit a fatal engine error; reloading the source", self.source.name, exc_info=error
            )
            self._discard(state)
            return QueryError(  # the engine's own text (its assertions) only in the log: R34-5
                "engine_failed",
                "The engine failed on this query and was restarted; it cannot run as written. "
                "Make it smaller: avoid building very long strings or unbounded recursion.",
            )
        if isinstance(error, duckdb.OutOfMemoryException):
            return QueryError(
                "out_of_memory",
                "The query needed more memory than a query may use. Filter or aggregate earlier, or "
                "select fewer columns.",
            )
        return QueryError("execution_error", shown(error, log, f"query on {self.source.name!r} failed"))

    def _discard(self, state: _Loaded) -> None:
        with self._setup_lock:
            if self._state is state:
                self._state = None
        with self._conn_lock, suppress(duckdb.Error):
            state.conn.close()

    def _loaded(self) -> _Loaded:
        """The current load of the source: made on first use, and again when the data changed.

        A query that finds a load under way waits for it, but not for ever: a load that hangs (a
        stalled mount) must not take every worker thread with it, and with them every source."""
        if not self._setup_lock.acquire(timeout=LOAD_WAIT_S):
            raise QueryError(
                "source_loading",
                f"The source {self.source.name!r} is still loading after {LOAD_WAIT_S:g} s; "
                "try again shortly.",
            )
        try:
            return self._current()
        finally:
            self._setup_lock.release()

    def _current(self) -> _Loaded:
        """The load, made again when missing or stale (the setup lock is held)."""
        if self._state is None or self._changed(self._state):
            try:
                self._state = _load_state(self.source, self.limits)
            except QueryError as e:
                self._checked_at = -math.inf  # not the old data for a window: look again next time
                self._problem = e.message
                raise
            self._checked_at = time.monotonic()
            self._problem = None
        return self._state

    def _changed(self, state: _Loaded) -> bool:
        now = time.monotonic()
        if now - self._checked_at < FRESH_FOR_S:
            return False
        self._checked_at = now
        return data_version(source_location(self.source)) != state.version

    def _connection(self) -> duckdb.DuckDBPyConnection:
        """The current in-memory database (for tests and benchmarks that compare against it)."""
        return self._loaded().conn

    def _cursor(self, state: _Loaded) -> duckdb.DuckDBPyConnection:
        with self._conn_lock:  # creating a cursor touches the parent connection; close() may race
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
    capped: exp.Expr = apply_row_cap(bounded_builders(expr), max_rows)
    return capped.sql(dialect="duckdb")


def _timeout(timeout_s: float) -> QueryError:
    return QueryError(
        "timeout",
        f"The query was stopped after the {timeout_s:g} s time limit. Make it cheaper: filter earlier, "
        "aggregate before joining, or avoid cross joins.",
    )


# --- loading ------------------------------------------------------------------------------------


# The result's columns as DESCRIBE gives them, each name cut inside DuckDB: a name can be built to
# 100 MB (probe 9: `COLUMNS('(.*)') AS '\\1\\1…'` ten times longer per CTE), and fetching it whole
# would cost what a value cut inside DuckDB saves.
_DESCRIBE = "SELECT left(column_name, {most}), length(column_name), column_type FROM (DESCRIBE {sql})"
MAX_RESULT_COLUMNS = 4_096


def _name(start: str, length: int) -> str:
    return start if length <= MAX_NAME_CHARS else start + CUT.format(n=length)


def _too_wide(columns: int) -> QueryError:
    return QueryError(
        "too_complex",
        f"The result would have {columns:,} columns; at most {MAX_RESULT_COLUMNS:,} are returned. "
        "Select the columns the question needs.",
    )


def _merged(cursor: duckdb.DuckDBPyConnection, cut: CutPlan) -> Fetch:
    """`fetchmany` giving the query's own columns (a cut nested value in its column's place)."""
    if not cut.cut_of and not cut.decode:
        return cursor.fetchmany
    return lambda size: [cut.merge(row) for row in cursor.fetchmany(size)]


def _load_state(source: DuckDBSource, limits: LocalLimits) -> _Loaded:
    # The version is read before the data: a write that lands during the load shows at the next check.
    version = data_version(source_location(source))
    opened = open_source(source, limits)
    tables = structure(opened.conn, opened.left_out)
    return _Loaded(opened.conn, version, tables, by_bare_name(tables), opened.descriptions, opened.left_out)
