"""DatabricksEngine at the driver seam: what is sent, what is refused, auth, catalog, values, timeouts.

Nothing here reaches a workspace: the driver is a scripted fake (tests/engines/fake_dbapi.py)
whose descriptions have databricks-sql-connector's shape (type names like 'decimal') and whose
errors are the connector's own exception classes.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip(
    "databricks.sql",
    reason="databricks-sql-connector is not installed: pip install 'loom-data-agents[databricks]'",
)

from databricks.sql.exc import RequestError, ServerOperationError  # noqa: E402

from loom.engines.contracts import Engine, QueryError  # noqa: E402
from loom.engines.sql.databricks import (  # noqa: E402
    AZURE_DATABRICKS_SCOPE,
    DatabricksEngine,
    EntraCredentialsProvider,
    databricks_connector,
)
from tests.engines.fake_dbapi import (  # noqa: E402
    CancellableCursor,
    FakeCredential,
    Reply,
    Script,
    connector,
    description,
    refusing_connect,
    rows,
    timed,
)

HOST = "adb-1234567890123456.7.azuredatabricks.net"
HTTP_PATH = "/sql/1.0/warehouses/abc123"
TABLES_MARKER = "information_schema.tables"
COLUMNS_MARKER = "information_schema.columns"


def _script(default: Reply | None = None) -> Script:
    tables = Reply(
        description=description(("table_schema", "string"), ("table_name", "string"), ("comment", "string")),
        rows=rows(
            ("gold", "sales", "Daily sales lines"), ("gold", "states", None), ("silver", "events", None)
        ),
    )
    columns = Reply(
        description=description(
            ("table_schema", "string"),
            ("table_name", "string"),
            ("column_name", "string"),
            ("data_type", "string"),
            ("comment", "string"),
        ),
        rows=rows(
            ("gold", "sales", "id", "BIGINT", None),
            ("gold", "sales", "amount", "DECIMAL", "In US dollars"),
            ("gold", "sales", "sold_at", "TIMESTAMP_NTZ", None),
            ("gold", "sales", "tags", "ARRAY", None),
            ("gold", "states", "code", "STRING", None),
            ("silver", "events", "payload", "STRUCT", None),
        ),
    )
    return Script(default=default or Reply(), replies={TABLES_MARKER: tables, COLUMNS_MARKER: columns})


def _engine(script: Script, **kwargs: Any) -> DatabricksEngine:
    options: dict[str, Any] = {"catalog": "main", "default_schema": "gold"} | kwargs
    return DatabricksEngine(HOST, HTTP_PATH, connect=connector(script, CancellableCursor), **options)


def _user_sql(script: Script) -> list[str]:
    return script.user_statements(TABLES_MARKER, COLUMNS_MARKER)


def _sales_reply() -> Reply:
    return Reply(
        description=description(("code", "string"), ("amount", "decimal")),
        rows=rows(("TX", Decimal("12.50")), ("CA", Decimal("3.25")), ("NY", Decimal("1.00"))),
    )


# --- what reaches the driver ----------------------------------------------------------------------


def test_is_an_engine() -> None:
    assert isinstance(_engine(_script()), Engine)


def test_row_cap_is_sent_as_limit_n_plus_one() -> None:
    script = _script(_sales_reply())
    result = _engine(script).execute("SELECT code, amount FROM main.gold.sales", max_rows=2, timeout_s=5)
    assert _user_sql(script) == ["SELECT code, amount FROM main.gold.sales LIMIT 3"]
    assert (result.row_count, result.truncated, result.engine, result.query) == (
        2,
        True,
        "databricks",
        "SELECT code, amount FROM main.gold.sales LIMIT 3",
    )


@pytest.mark.parametrize(
    ("query", "sent"),
    [
        ("SELECT * FROM `main`.`gold`.`sales`", "SELECT * FROM `main`.`gold`.`sales` LIMIT 11"),
        ("SELECT * FROM gold.sales LIMIT 5", "SELECT * FROM gold.sales LIMIT 5"),  # smaller LIMIT kept
        ("SELECT * FROM sales LIMIT 500", "SELECT * FROM sales LIMIT 11"),  # the default schema
        ("SELECT * FROM main.silver.events", "SELECT * FROM main.silver.events LIMIT 11"),
        (
            "SELECT s.code FROM main.gold.sales AS s JOIN main.gold.states AS t ON s.id = t.code",
            "SELECT s.code FROM main.gold.sales AS s JOIN main.gold.states AS t ON s.id = t.code LIMIT 11",
        ),
    ],
)
def test_three_part_names_are_preserved(query: str, sent: str) -> None:
    script = _script(_sales_reply())
    _engine(script).execute(query, max_rows=10, timeout_s=5)
    assert _user_sql(script) == [sent]


@pytest.mark.parametrize(
    "query",
    [
        "COPY INTO main.gold.sales FROM '/Volumes/main/raw/x' FILEFORMAT = CSV",
        "SELECT * FROM read_files('/Volumes/main/raw/x')",
        "SELECT * FROM parquet.`/mnt/raw/x.parquet`",
        "INSERT INTO main.gold.sales VALUES (1)",
        "SELECT 1; SELECT 2",
        "SELECT * FROM system.access.audit",
    ],
)
def test_refusals_never_reach_the_driver(query: str) -> None:
    engine = DatabricksEngine(HOST, HTTP_PATH, catalog="main", connect=refusing_connect)
    with pytest.raises(QueryError):
        engine.execute(query, max_rows=10, timeout_s=5)
    assert engine.validate(query)


def test_unknown_table_is_refused_with_suggestions_before_it_runs() -> None:
    script = _script(_sales_reply())
    engine = _engine(script)
    with pytest.raises(QueryError) as caught:
        engine.execute("SELECT * FROM gold.sale", max_rows=10, timeout_s=5)
    assert caught.value.code == "unknown_table"
    assert caught.value.problems[0].suggestions[0] == "main.gold.sales"
    assert "Known tables: main.gold.sales, main.gold.states, main.silver.events" in caught.value.message
    assert _user_sql(script) == []
    assert engine.validate("SELECT * FROM other.gold.sales")[0].code == "unknown_table"  # another catalog
    assert engine.validate("SELECT * FROM events")[0].suggestions[0] == "main.silver.events"


def test_a_cte_named_like_another_table_does_not_reach_it() -> None:
    # Spark reads the body's `payroll` as the real table: the CTE's own name must not exempt it.
    script = _script(_sales_reply())
    engine = _engine(script)
    query = "WITH payroll AS (SELECT * FROM hr.payroll) SELECT * FROM payroll"
    assert [p.code for p in engine.validate(query)] == ["unknown_table"]
    shadow = "WITH payroll AS (SELECT * FROM payroll) SELECT * FROM payroll"
    with pytest.raises(QueryError) as caught:
        engine.execute(shadow, max_rows=10, timeout_s=5)
    assert caught.value.code == "unknown_table"
    assert "main.gold.payroll" in caught.value.message
    assert _user_sql(script) == []
    assert engine.validate("WITH s AS (SELECT * FROM sales) SELECT * FROM s") == []


# --- auth -----------------------------------------------------------------------------------------


def _recording_driver() -> tuple[list[dict[str, Any]], Any]:
    calls: list[dict[str, Any]] = []

    def driver_connect(**kwargs: Any) -> object:
        calls.append(kwargs)
        return object()

    return calls, driver_connect


def test_personal_access_token() -> None:
    calls, driver_connect = _recording_driver()
    databricks_connector(
        HOST, HTTP_PATH, catalog="main", schema="gold", access_token="dapi-x", driver_connect=driver_connect
    )()
    assert calls == [
        {
            "server_hostname": HOST,
            "http_path": HTTP_PATH,
            "catalog": "main",
            "schema": "gold",
            "session_configuration": {"STATEMENT_TIMEOUT": "3600"},
            "enable_telemetry": False,
            "_disable_pandas": True,
            "user_agent_entry": "loom-data-agents",
            "access_token": "dapi-x",
        }
    ]


@pytest.mark.parametrize("cloud", ["AzureCloud", "AzureUSGovernment"])
def test_entra_credential_becomes_a_credentials_provider(cloud: str) -> None:
    credential = FakeCredential(token="eyJ.entra")
    calls, driver_connect = _recording_driver()
    databricks_connector(
        HOST, HTTP_PATH, catalog="main", credential=credential, cloud=cloud, driver_connect=driver_connect
    )()
    provider = calls[0]["credentials_provider"]
    assert "access_token" not in calls[0]
    header_factory = provider()  # how the connector uses it: provider() → factory() → headers
    assert header_factory() == {"Authorization": "Bearer eyJ.entra"}
    assert header_factory() == {"Authorization": "Bearer eyJ.entra"}
    assert credential.scopes == [(AZURE_DATABRICKS_SCOPE,)]  # cached between requests
    assert AZURE_DATABRICKS_SCOPE == "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"


def test_a_given_credentials_provider_is_passed_through() -> None:
    calls, driver_connect = _recording_driver()

    def provider() -> Any:  # e.g. databricks-sdk's oauth_service_principal(Config(...))
        return lambda: {"Authorization": "Bearer m2m"}

    databricks_connector(
        HOST, HTTP_PATH, catalog="main", credentials_provider=provider, driver_connect=driver_connect
    )()
    assert calls[0]["credentials_provider"] is provider


@pytest.mark.parametrize(
    "auth", [{}, {"access_token": "dapi-x", "credential": FakeCredential()}], ids=["none", "two"]
)
def test_exactly_one_way_to_authenticate(auth: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        DatabricksEngine(HOST, HTTP_PATH, catalog="main", **auth)


def test_unknown_cloud_is_refused() -> None:
    with pytest.raises(ValueError, match="AzureUSGovernment"):
        EntraCredentialsProvider(FakeCredential(), cloud="AzureChina")


# --- catalog --------------------------------------------------------------------------------------


def test_catalog_uses_three_part_names_types_and_comments() -> None:
    script = _script()
    catalog = _engine(script).catalog()
    assert [t.name for t in catalog.tables] == ["main.gold.sales", "main.gold.states", "main.silver.events"]
    sales = catalog.table("main.gold.sales")
    assert sales is not None
    assert sales.description == "Daily sales lines"
    assert [(c.name, c.type, c.description) for c in sales.columns] == [
        ("id", "integer", ""),
        ("amount", "decimal", "In US dollars"),
        ("sold_at", "timestamp", ""),
        ("tags", "list", ""),
    ]
    events = catalog.table("main.silver.events")
    assert events is not None
    assert events.columns[0].type == "struct"
    assert all("FROM `main`.information_schema." in sql for sql in script.statements)
    assert all(params == {} or params is None for _, params in script.executed)


def test_catalog_limited_to_schemas_uses_bound_parameters() -> None:
    script = _script()
    _engine(script, schemas=["gold", "it's"]).catalog()
    for sql, params in script.executed:
        assert "WHERE table_schema IN (:schema0, :schema1)" in sql
        assert params == {"schema0": "gold", "schema1": "it's"}


# --- values and errors ----------------------------------------------------------------------------


def test_values_are_json_safe() -> None:
    numpy = pytest.importorskip("numpy", reason="numpy comes with databricks-sql-connector")
    stamp = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    reply = Reply(
        description=description(
            ("amount", "decimal"),
            ("sold_at", "timestamp"),
            ("day", "date"),
            ("raw", "binary"),
            ("tags", "array"),
            ("attrs", "map"),
            ("n", "bigint"),
            ("gap", "interval_day_time"),
        ),
        rows=rows(
            (
                Decimal("12.34"),
                stamp,
                dt.date(2025, 1, 2),
                b"\x01\x02",
                numpy.array([1, 2]),
                {"k": Decimal("1.5")},
                numpy.int64(7),
                dt.timedelta(hours=1),
            )
        ),
    )
    result = _engine(_script(reply)).execute("SELECT * FROM main.gold.sales", max_rows=5, timeout_s=5)
    assert [c.type for c in result.columns] == [
        "decimal",
        "timestamp",
        "date",
        "binary",
        "list",
        "map",
        "integer",
        "interval",
    ]
    assert result.rows == [
        [12.34, "2025-01-02T03:04:05+00:00", "2025-01-02", "0102", [1, 2], {"k": 1.5}, 7, 3600.0]
    ]
    json.dumps(result.model_dump())


def test_server_error_becomes_a_readable_query_error() -> None:
    error = ServerOperationError(
        "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name "
        "`amountt` cannot be resolved. Did you mean one of the following? [`amount`, `id`].\n"
        "SQLSTATE: 42703; line 1 pos 7",
        {"operation-id": "01ef", "diagnostic-info": "org.apache.spark.sql.AnalysisException: ...\n\tat x"},
    )
    with pytest.raises(QueryError) as caught:
        _engine(_script(Reply(error=error))).execute(
            "SELECT amountt FROM main.gold.sales", max_rows=5, timeout_s=5
        )
    assert caught.value.code == "execution_error"
    assert caught.value.message.startswith(
        "Databricks SQL could not run the query: [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column"
    )
    assert "Did you mean one of the following? [`amount`, `id`]. SQLSTATE: 42703" in caught.value.message
    assert "org.apache" not in caught.value.message


def test_connection_failure_is_source_unavailable() -> None:
    script = _script()
    script.connect_error = RequestError("Error during request to server: 403 Forbidden")
    with pytest.raises(QueryError) as caught:
        _engine(script).catalog()
    assert caught.value.code == "source_unavailable"
    assert (
        caught.value.message
        == "Could not connect to Databricks SQL: Error during request to server: 403 Forbidden"
    )


def test_driver_errors_show_no_path_token_or_jvm_trace_and_the_log_keeps_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="loom")
    error = ServerOperationError(
        "[PATH_NOT_FOUND] Path does not exist: /local_disk0/spark-1f2e/executor/secret.parquet.\n"
        "JVM stacktrace:\norg.apache.spark.sql.AnalysisException\n\tat org.apache.spark.X.y(X.scala:1)",
        {"operation-id": "01ef"},
    )
    with pytest.raises(QueryError) as caught:
        _engine(_script(Reply(error=error))).execute(
            "SELECT id FROM main.gold.sales", max_rows=5, timeout_s=5
        )
    assert caught.value.message == (
        "Databricks SQL could not run the query: [PATH_NOT_FOUND] Path does not exist: …/secret.parquet."
    )
    token = "dapi0123456789abcdef0123456789abcdef"
    script = _script()
    script.connect_error = RequestError(
        f"Error during request to server: 401 (Authorization: Bearer {token})"
    )
    with pytest.raises(QueryError) as refused:
        _engine(script).catalog()
    assert refused.value.code == "source_unavailable"
    assert token not in refused.value.message and "Bearer ***" in refused.value.message
    assert "/local_disk0/spark-1f2e/executor/secret.parquet" in caplog.text  # the log has it all
    assert token in caplog.text


# --- timeouts -------------------------------------------------------------------------------------


def test_timeout_cancels_the_running_statement() -> None:
    """The connector ends a cancelled statement quietly (no rows); the timer knows it cancelled."""
    script = _script(Reply(hang=True))
    engine = _engine(script)
    elapsed, error = timed(lambda: engine.execute("SELECT * FROM main.gold.sales", max_rows=5, timeout_s=0.2))
    assert isinstance(error, QueryError)
    assert error.code == "timeout"
    conn = script.connections[-1]
    cursor = conn.cursors[-1]
    assert cursor.cancel_calls >= 1
    assert cursor.closed
    assert conn.closed
    assert elapsed < 2


def test_a_cancel_sent_too_early_is_sent_again() -> None:
    """Cursor.cancel() does nothing before the connector has the statement's id: the timer retries."""
    script = _script(Reply(hang=True, ignore_cancels=2))
    engine = _engine(script)
    elapsed, error = timed(lambda: engine.execute("SELECT * FROM main.gold.sales", max_rows=5, timeout_s=0.1))
    assert isinstance(error, QueryError)
    assert error.code == "timeout"
    assert script.connections[-1].cursors[-1].cancel_calls == 3
    assert elapsed < 3


def test_a_fast_query_is_never_cancelled() -> None:
    script = _script(_sales_reply())
    engine = _engine(script)
    engine.execute("SELECT * FROM main.gold.sales", max_rows=5, timeout_s=0.05)
    cursor = script.connections[-1].cursors[-1]
    time.sleep(0.2)  # past the limit: the timer must have been disarmed when the call returned
    assert cursor.cancel_calls == 0
