"""SynapseEngine at the driver seam: what is sent, what is refused, auth, catalog, values, timeouts.

Nothing here reaches Azure: the driver is a scripted fake (tests/engines/fake_dbapi.py) whose
errors are mssql-python's own exception classes, built the way the driver builds them.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import uuid
from decimal import Decimal

import pytest

mssql_python = pytest.importorskip(
    "mssql_python", reason="mssql-python is not installed: pip install 'loom-data-agents[synapse]'"
)

from loom.engines.contracts import Engine, QueryError  # noqa: E402
from loom.engines.sql import dbapi  # noqa: E402
from loom.engines.sql.dbapi import EntraToken  # noqa: E402
from loom.engines.sql.synapse import (  # noqa: E402
    SQL_COPT_SS_ACCESS_TOKEN,
    SynapseEngine,
    mssql_connector,
    token_struct,
)
from tests.engines.fake_dbapi import (  # noqa: E402
    CancellableCursor,
    FakeCredential,
    FakeCursor,
    Reply,
    Script,
    connector,
    description,
    refusing_connect,
    rows,
    timed,
)

SERVER = "contoso-ondemand.sql.azuresynapse.net"
CATALOG_MARKER = "INFORMATION_SCHEMA.COLUMNS"

# INFORMATION_SCHEMA rows as serverless returns them: an external table, and views over
# OPENROWSET (how serverless exposes files), which must be listed as tables too.
CATALOG_ROWS = rows(
    ("dbo", "sales", "id", "int"),
    ("dbo", "sales", "state", "nvarchar"),
    ("dbo", "sales", "amount", "decimal"),
    ("dbo", "sales", "sold_at", "datetime2"),
    ("dbo", "sales", "is_online", "bit"),
    ("dbo", "sales", "version", "timestamp"),
    ("lake", "trips", "trip_id", "uniqueidentifier"),
    ("lake", "trips", "fare", "money"),
    ("lake", "trips", "payload", "varbinary"),
)


def _script(default: Reply | None = None) -> Script:
    catalog = Reply(
        description=description(
            ("TABLE_SCHEMA", str), ("TABLE_NAME", str), ("COLUMN_NAME", str), ("DATA_TYPE", str)
        ),
        rows=CATALOG_ROWS,
    )
    return Script(default=default or Reply(), replies={CATALOG_MARKER: catalog})


def _engine(script: Script, cursor_class: type = CancellableCursor) -> SynapseEngine:
    return SynapseEngine(SERVER, "lakedb", connect=connector(script, cursor_class))


def _sales_reply() -> Reply:
    return Reply(
        description=description(("state", str), ("amount", Decimal)),
        rows=rows(("TX", Decimal("12.50")), ("CA", Decimal("3.25")), ("NY", Decimal("1.00"))),
    )


# --- what reaches the driver ----------------------------------------------------------------------


def test_is_an_engine() -> None:
    assert isinstance(_engine(_script()), Engine)


def test_row_cap_is_sent_as_top_n_plus_one() -> None:
    script = _script(_sales_reply())
    result = _engine(script).execute("SELECT state, amount FROM dbo.sales", max_rows=2, timeout_s=5)
    assert script.user_statements(CATALOG_MARKER) == ["SELECT TOP 3 state, amount FROM dbo.sales"]
    assert result.query == "SELECT TOP 3 state, amount FROM dbo.sales"
    assert (result.row_count, result.truncated, result.engine) == (2, True, "synapse")
    assert result.rows == [["TX", 12.5], ["CA", 3.25]]


@pytest.mark.parametrize(
    ("query", "sent"),
    [
        ("SELECT TOP 1 state FROM sales", "SELECT TOP 1 state FROM sales"),  # smaller TOP kept
        ("SELECT TOP 500 state FROM dbo.sales", "SELECT TOP 11 state FROM dbo.sales"),
        (
            "SELECT state FROM dbo.sales UNION SELECT state FROM lake.trips",
            "SELECT TOP 11 * FROM (SELECT state FROM dbo.sales UNION SELECT state FROM lake.trips) AS _l_0",
        ),
        ("SELECT * FROM [lakedb].[dbo].[sales]", "SELECT TOP 11 * FROM [lakedb].[dbo].[sales]"),
        ("SELECT trip_id FROM lake.trips", "SELECT TOP 11 trip_id FROM lake.trips"),  # a view
    ],
)
def test_sql_sent(query: str, sent: str) -> None:
    script = _script(_sales_reply())
    _engine(script).execute(query, max_rows=10, timeout_s=5)
    assert script.user_statements(CATALOG_MARKER) == [sent]


def test_now_is_pinned_in_tsql() -> None:
    script = _script(_sales_reply())
    now = dt.datetime(2025, 3, 1, 12, 0)
    _engine(script).execute("SELECT GETDATE() AS d FROM dbo.sales", max_rows=1, timeout_s=5, now=now)
    assert script.user_statements(CATALOG_MARKER) == [
        "SELECT TOP 2 CAST('2025-03-01 12:00:00' AS DATETIME2) AS d FROM dbo.sales"
    ]


@pytest.mark.parametrize(
    "query",
    [
        "DROP TABLE dbo.sales",
        "SELECT 1; DROP TABLE dbo.sales",
        "SELECT * INTO dbo.copy FROM dbo.sales",
        "EXEC xp_cmdshell 'dir'",
        "SELECT * FROM OPENROWSET(BULK 'https://x.dfs.core.windows.net/c/*.parquet', FORMAT='PARQUET') AS r",
        "UPDATE dbo.sales SET amount = 0",
    ],
)
def test_refusals_never_reach_the_driver(query: str) -> None:
    engine = SynapseEngine(SERVER, "lakedb", connect=refusing_connect)
    with pytest.raises(QueryError):
        engine.execute(query, max_rows=10, timeout_s=5)
    assert engine.validate(query)


def test_unknown_table_is_refused_with_suggestions_before_it_runs() -> None:
    script = _script(_sales_reply())
    engine = _engine(script)
    with pytest.raises(QueryError) as caught:
        engine.execute("SELECT * FROM dbo.sale", max_rows=10, timeout_s=5)
    assert caught.value.code == "unknown_table"
    assert caught.value.problems[0].suggestions == ["dbo.sales"]
    assert "Known tables: dbo.sales, lake.trips" in caught.value.message
    assert script.user_statements(CATALOG_MARKER) == []
    # Another database's table is not this source's: reported, not sent.
    assert engine.validate("SELECT * FROM otherdb.dbo.sales")[0].code == "unknown_table"
    assert engine.validate("WITH s AS (SELECT 1 AS a) SELECT a FROM s") == []


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cloud", "scope"),
    [
        ("AzureCloud", "https://database.windows.net/.default"),
        ("AzureUSGovernment", "https://database.usgovcloudapi.net/.default"),
    ],
)
def test_token_scope_per_cloud_and_token_struct(cloud: str, scope: str) -> None:
    credential = FakeCredential(token="eyJ.abc")
    calls: list[tuple[str, dict[int, bytes]]] = []

    def driver_connect(text: str, *, attrs_before: dict[int, bytes]) -> object:
        calls.append((text, attrs_before))
        return object()

    connect = mssql_connector(SERVER, "lakedb", credential, cloud=cloud, driver_connect=driver_connect)
    connect()
    connect()
    assert credential.scopes == [(scope,)]  # fetched once, then reused until near expiry
    text, attrs = calls[0]
    assert text.startswith(f"Server=tcp:{SERVER},1433;Database=lakedb;Encrypt=yes;")
    assert "ApplicationIntent=ReadOnly" in text
    assert "Authentication" not in text
    raw = attrs[SQL_COPT_SS_ACCESS_TOKEN]
    assert struct.unpack("<I", raw[:4])[0] == len(raw) - 4
    assert raw[4:].decode("utf-16-le") == "eyJ.abc"


def test_unknown_cloud_is_refused() -> None:
    with pytest.raises(ValueError, match="AzureUSGovernment"):
        mssql_connector(SERVER, "lakedb", FakeCredential(), cloud="AzureChina")


def test_token_is_fetched_again_near_expiry() -> None:
    credential = FakeCredential(lifetime_s=3600)
    now = [0.0]
    token = EntraToken(credential, "https://database.windows.net/.default", clock=lambda: now[0])
    now[0] = dt.datetime.now().timestamp()
    token.get()
    now[0] += 3600 - 60  # inside the refresh margin
    token.get()
    assert len(credential.scopes) == 2


def test_engine_needs_a_credential_or_a_connect() -> None:
    with pytest.raises(ValueError, match="credential"):
        SynapseEngine(SERVER, "lakedb")
    assert token_struct("a") == b"\x02\x00\x00\x00a\x00"


# --- catalog --------------------------------------------------------------------------------------


def test_catalog_lists_tables_and_views_with_simple_types() -> None:
    script = _script()
    catalog = _engine(script).catalog()
    assert [t.name for t in catalog.tables] == ["dbo.sales", "lake.trips"]
    sales = catalog.table("dbo.sales")
    assert sales is not None
    assert [(c.name, c.type) for c in sales.columns] == [
        ("id", "integer"),
        ("state", "string"),
        ("amount", "decimal"),
        ("sold_at", "timestamp"),
        ("is_online", "boolean"),
        ("version", "binary"),  # T-SQL timestamp is rowversion
    ]
    trips = catalog.table("lake.trips")
    assert trips is not None
    assert [c.type for c in trips.columns] == ["string", "decimal", "binary"]
    sql = script.statements[0]
    assert "FROM INFORMATION_SCHEMA.COLUMNS" in sql
    assert "'VIEW'" in sql
    _engine(script).catalog()
    assert len(script.statements) == 2  # a new engine reads again; one engine reads once
    engine = _engine(script)
    engine.catalog()
    engine.catalog()
    assert len(script.statements) == 3


def catalog_reads(script: Script) -> int:
    return sum(CATALOG_MARKER in sql for sql in script.statements)


def test_a_table_created_after_the_catalog_was_read_is_found_on_a_recheck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = _script(_sales_reply())
    engine = _engine(script)
    engine.catalog()
    catalog = script.replies[CATALOG_MARKER]
    catalog.rows = [*catalog.rows, ("dbo", "returns", "id", "int")]  # a table created since

    monkeypatch.setattr(dbapi, "RECHECK_UNKNOWN_AFTER_S", 3600.0)  # a catalog read a moment ago
    with pytest.raises(QueryError) as caught:
        engine.execute("SELECT id FROM dbo.returns", max_rows=5, timeout_s=5)
    assert caught.value.code == "unknown_table"
    assert catalog_reads(script) == 1

    monkeypatch.setattr(dbapi, "RECHECK_UNKNOWN_AFTER_S", 0.0)  # old enough to look again
    engine.execute("SELECT id FROM dbo.returns", max_rows=5, timeout_s=5)
    assert catalog_reads(script) == 2
    assert script.user_statements(CATALOG_MARKER) == ["SELECT TOP 6 id FROM dbo.returns"]


def test_an_old_catalog_is_read_again_and_a_failed_read_keeps_the_old_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = _script(_sales_reply())
    engine = _engine(script)
    assert [t.name for t in engine.catalog().tables] == ["dbo.sales", "lake.trips"]

    monkeypatch.setattr(dbapi, "CATALOG_MAX_AGE_S", 0.0)
    script.replies[CATALOG_MARKER] = Reply(error=RuntimeError("the serverless pool is restarting"))
    assert [t.name for t in engine.catalog().tables] == ["dbo.sales", "lake.trips"]  # kept, not lost
    assert engine.execute("SELECT state FROM dbo.sales", max_rows=5, timeout_s=5).row_count == 3
    assert catalog_reads(script) >= 2


# --- values and errors ----------------------------------------------------------------------------


def test_values_are_json_safe() -> None:
    stamp = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    guid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    reply = Reply(
        description=description(
            ("amount", Decimal),
            ("big", Decimal),
            ("sold_at", dt.datetime),
            ("day", dt.date),
            ("payload", bytes),
            ("trip_id", uuid.UUID),
            ("ok", bool),
        ),
        rows=rows(
            (
                Decimal("12.34"),
                Decimal("123456789012345678.9"),
                stamp,
                dt.date(2025, 1, 2),
                b"\x00\xff",
                guid,
                True,
            )
        ),
    )
    result = _engine(_script(reply)).execute("SELECT * FROM dbo.sales", max_rows=5, timeout_s=5)
    assert [c.type for c in result.columns] == [
        "decimal",
        "decimal",
        "timestamp",
        "date",
        "binary",
        "string",
        "boolean",
    ]
    assert result.rows == [
        [12.34, "123456789012345678.9", "2025-01-02T03:04:05-05:00", "2025-01-02", "00ff", str(guid), True]
    ]
    json.dumps(result.model_dump())


def test_server_error_becomes_a_readable_query_error() -> None:
    error = mssql_python.ProgrammingError(
        driver_error="Syntax error or access violation",
        ddbc_error="[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid column name 'amountt'.",
    )
    with pytest.raises(QueryError) as caught:
        _engine(_script(Reply(error=error))).execute("SELECT amountt FROM dbo.sales", max_rows=5, timeout_s=5)
    assert caught.value.code == "execution_error"
    assert (
        caught.value.message == "Synapse Serverless could not run the query: Invalid column name 'amountt'."
    )


def test_pyodbc_shaped_error_is_readable_too() -> None:
    error = RuntimeError(
        "42S02",
        "[42S02] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object name 'x'. (208)",
    )
    with pytest.raises(QueryError, match=r"query: Invalid object name 'x'\. \(208\)$"):
        _engine(_script(Reply(error=error))).execute("SELECT 1 AS a FROM dbo.sales", max_rows=5, timeout_s=5)


def test_driver_errors_show_no_path_or_secret_and_the_log_keeps_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="loom")
    error = mssql_python.ProgrammingError(
        driver_error="General error",
        ddbc_error="[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Cannot bulk load because the file "
        '"C:\\staging\\payroll\\2025.csv" could not be opened. Operating system error code 5.',
    )
    with pytest.raises(QueryError) as caught:
        _engine(_script(Reply(error=error))).execute("SELECT state FROM dbo.sales", max_rows=5, timeout_s=5)
    assert caught.value.message == (
        "Synapse Serverless could not run the query: Cannot bulk load because the file "
        '"…\\2025.csv" could not be opened. Operating system error code 5.'
    )
    script = _script()
    script.connect_error = mssql_python.OperationalError(
        driver_error="Connection failure",
        ddbc_error="Login failed; connection string was Server=tcp:contoso.sql.azuresynapse.net;"
        "UID=loader;PWD=hunter2;AccessToken=eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxIn0.c2ln",
    )
    with pytest.raises(QueryError) as refused:
        _engine(script).execute("SELECT state FROM dbo.sales", max_rows=5, timeout_s=5)
    assert refused.value.code == "source_unavailable"
    assert "hunter2" not in refused.value.message and "eyJ" not in refused.value.message
    assert "PWD=***" in refused.value.message
    assert "C:\\staging\\payroll\\2025.csv" in caplog.text and "hunter2" in caplog.text


def test_connection_failure_is_source_unavailable() -> None:
    script = _script()
    script.connect_error = mssql_python.OperationalError(
        driver_error="Connection failure",
        ddbc_error="[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]"
        "Login failed for user '<token-identified principal>'.",
    )
    with pytest.raises(QueryError) as caught:
        _engine(script).execute("SELECT state FROM dbo.sales", max_rows=5, timeout_s=5)
    assert caught.value.code == "source_unavailable"
    assert caught.value.message == (
        "Could not connect to Synapse Serverless: Login failed for user '<token-identified principal>'."
    )


def test_connections_are_reused_after_success() -> None:
    script = _script(_sales_reply())
    engine = _engine(script)
    for _ in range(3):
        engine.execute("SELECT state FROM dbo.sales", max_rows=5, timeout_s=5)
    assert len(script.connections) == 1
    assert all(c.closed for c in script.connections[0].cursors)
    engine.close()
    assert script.connections[0].closed


# --- timeouts -------------------------------------------------------------------------------------


def test_driver_query_timeout_is_set_and_cancels() -> None:
    """mssql-python: no cursor.cancel(); the driver's query timeout (HYT00) stops the statement."""
    expired = mssql_python.OperationalError(
        driver_error="Timeout expired",
        ddbc_error="[Microsoft][ODBC Driver 18 for SQL Server]Query timeout expired",
    )
    script = _script(Reply(hang=True, driver_timeout_error=expired))
    engine = _engine(script, cursor_class=FakeCursor)
    elapsed, error = timed(lambda: engine.execute("SELECT state FROM dbo.sales", max_rows=5, timeout_s=0.3))
    assert isinstance(error, QueryError)
    assert error.code == "timeout"
    assert "0.3 s time limit" in error.message
    conn = script.connections[-1]
    assert conn.timeout == 1  # whole seconds, rounded up, set before the cursor was made
    assert conn.cursors[-1].timeout == 1
    assert elapsed < 3
    assert conn.closed
    assert conn.cursors[-1].closed  # never reused after a cancel


def test_timer_cancels_a_driver_that_has_cancel() -> None:
    """pyodbc and future mssql-python: cursor.cancel() from the timer stops the long query."""
    cancelled = mssql_python.OperationalError(
        driver_error="Operation canceled", ddbc_error="Operation canceled"
    )
    script = _script(Reply(hang=True, cancel_error=cancelled))
    engine = _engine(script)
    elapsed, error = timed(lambda: engine.execute("SELECT state FROM dbo.sales", max_rows=5, timeout_s=0.2))
    assert isinstance(error, QueryError)
    assert error.code == "timeout"
    cursor = script.connections[-1].cursors[-1]
    assert cursor.cancel_calls >= 1
    assert cursor.closed
    assert elapsed < 2
