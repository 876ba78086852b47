"""A scripted DB-API driver for the cloud SQL engines: records every statement, answers with rows
shaped like the real driver's, and can run "forever" until it is cancelled.

Replies are chosen by a marker the statement contains (the engine's own metadata queries say
`INFORMATION_SCHEMA.COLUMNS` or `information_schema.tables`); anything else gets the default
reply. A fake never decides whether a query is allowed: that is the engine's job, and tests check
that a refused query never reaches `connect`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import AccessToken

NEVER_CANCELLED_S = 10.0  # a "long query" gives up after this, so a broken cancel fails, not hangs


@dataclass
class Reply:
    description: list[tuple[Any, ...]] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    error: BaseException | None = None
    # A long query: runs until cancel() (cancel_error then raised, or no rows when None), or until
    # the connection's query timeout (driver_timeout_error raised), like SQL_ATTR_QUERY_TIMEOUT.
    hang: bool = False
    cancel_error: BaseException | None = None
    driver_timeout_error: BaseException | None = None
    ignore_cancels: int = 0  # cancels that arrive "before the driver has a statement id"


@dataclass
class Script:
    default: Reply = field(default_factory=Reply)
    replies: dict[str, Reply] = field(default_factory=dict)
    executed: list[tuple[str, Any]] = field(default_factory=list)
    connections: list[FakeConnection] = field(default_factory=list)
    connect_error: BaseException | None = None

    def reply_for(self, sql: str) -> Reply:
        return next((r for marker, r in self.replies.items() if marker in sql), self.default)

    @property
    def statements(self) -> list[str]:
        return [sql for sql, _ in self.executed]

    def user_statements(self, *metadata_markers: str) -> list[str]:
        return [s for s in self.statements if not any(m in s for m in metadata_markers)]


class FakeCursor:
    """No cancel(): like mssql-python 1.16, whose only cancel is the driver's query timeout."""

    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.timeout = conn.timeout  # drivers copy the connection's timeout when a cursor is made
        self.description: list[tuple[Any, ...]] | None = None
        self._rows: list[tuple[Any, ...]] = []
        self.cancel_calls = 0
        self.closed = False
        self._reply = Reply()
        self._cancelled = threading.Event()

    def execute(self, operation: str, parameters: Any = None) -> FakeCursor:
        script = self.conn.script
        script.executed.append((operation, parameters))
        reply = self._reply = script.reply_for(operation)
        if reply.hang:
            self._run_long(reply)
            return self
        if reply.error is not None:
            raise reply.error
        self.description, self._rows = list(reply.description) or None, list(reply.rows)
        return self

    def _run_long(self, reply: Reply) -> None:
        limit = self.timeout if self.timeout and reply.driver_timeout_error else NEVER_CANCELLED_S
        if self._cancelled.wait(limit):
            if reply.cancel_error is not None:
                raise reply.cancel_error
            self.description, self._rows = None, []  # a cancelled statement that ends quietly
            return
        if reply.driver_timeout_error is not None:
            raise reply.driver_timeout_error
        raise AssertionError("the long query was never cancelled")

    def _cancel(self) -> None:
        self.cancel_calls += 1
        if self.cancel_calls > self._reply.ignore_cancels:
            self._cancelled.set()

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        taken, self._rows = self._rows[:size], self._rows[size:]
        return taken

    def fetchall(self) -> list[tuple[Any, ...]]:
        taken, self._rows = self._rows, []
        return taken

    def close(self) -> None:
        self.closed = True


class CancellableCursor(FakeCursor):
    """With cancel(), callable from another thread (databricks-sql-connector, pyodbc)."""

    def cancel(self) -> None:
        self._cancel()


class FakeConnection:
    def __init__(self, script: Script, cursor_class: type[FakeCursor], **kwargs: Any) -> None:
        self.script = script
        self.cursor_class = cursor_class
        self.kwargs = kwargs
        self.timeout = 0
        self.cursors: list[FakeCursor] = []
        self.closed = False

    def cursor(self) -> FakeCursor:
        cursor = self.cursor_class(self)
        self.cursors.append(cursor)
        return cursor

    def close(self) -> None:
        self.closed = True


def connector(script: Script, cursor_class: type[FakeCursor] = FakeCursor) -> Callable[[], FakeConnection]:
    """The engines' `connect` seam."""

    def connect() -> FakeConnection:
        if script.connect_error is not None:
            raise script.connect_error
        conn = FakeConnection(script, cursor_class)
        script.connections.append(conn)
        return conn

    return connect


def refusing_connect() -> FakeConnection:
    raise AssertionError("a refused query reached the driver")


class FakeCredential:
    """An azure-identity credential that records the scopes it was asked for."""

    def __init__(self, token: str = "eyJ.fake.token", lifetime_s: int = 3600) -> None:
        self.token = token
        self.lifetime_s = lifetime_s
        self.scopes: list[tuple[str, ...]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + self.lifetime_s)


def timed(action: Callable[[], Any]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        action()
    except BaseException as e:  # the caller asserts on it
        return time.monotonic() - started, e
    return time.monotonic() - started, None


def description(*columns: tuple[str, Any]) -> list[tuple[Any, ...]]:
    """PEP 249 descriptions: (name, type_code, display_size, internal_size, precision, scale, null_ok)."""
    return [(name, code, None, None, None, None, True) for name, code in columns]


def rows(*values: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [tuple(v) for v in values]
