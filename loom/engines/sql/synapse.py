"""Synapse Serverless SQL (T-SQL) through mssql-python, with Microsoft Entra ID token auth.

Why mssql-python: its wheels bundle Microsoft's ODBC driver (msodbcsql 18.6 and odbcinst), so
the only system package it needs is libltdl7 (Debian: `apt-get install libltdl7`; without it,
connect fails with "Failed to load the driver"). pyodbc would need unixODBC and msodbcsql18, and
Debian's registry does not carry msodbcsql18.

Auth: the token is fetched here, for the cloud's own SQL scope, and handed to the driver as
SQL_COPT_SS_ACCESS_TOKEN. The driver's `token_provider=` is not used on purpose: mssql-python
1.16 always asks that provider for the commercial scope (`database.windows.net`), which is wrong
for Azure Government.

Cancellation: mssql-python 1.16 has no `cursor.cancel()` (microsoft/mssql-python#424) and holds
the GIL while a statement executes, so a timer thread cannot interrupt it. What it does have is
the per-connection query timeout (`Connection.timeout`, ODBC SQL_ATTR_QUERY_TIMEOUT, whole
seconds): the ODBC driver itself cancels the statement on the server when it runs out and raises
SQLSTATE HYT00. That is set before every query. The shared timer still calls `cursor.cancel()`
when a driver has one (pyodbc does), so another DB-API driver passed through `connect` is
cancelled too.

Catalog: INFORMATION_SCHEMA of the configured database; views (how serverless exposes files
through OPENROWSET) are listed as tables beside external tables.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from typing import Any

from azure.core.credentials import TokenCredential

from loom.engines.sql.dbapi import (
    BASE_TYPES,
    CatalogData,
    Connect,
    DBAPIConnection,
    DBAPIEngine,
    Driver,
    EntraToken,
    build_catalog,
    driver_connect,
    fetch_rows,
)

# Token scope by cloud, keyed by the cloud's name (the values of Settings' AzureCloud), so that
# engines need not import the agent's settings.
SQL_SCOPE = {
    "AzureCloud": "https://database.windows.net/.default",
    "AzureUSGovernment": "https://database.usgovcloudapi.net/.default",
}
SQL_COPT_SS_ACCESS_TOKEN = 1256  # msodbcsql's connection attribute for a raw Entra access token
DEFAULT_SCHEMA = "dbo"

TSQL_TYPES = BASE_TYPES | {
    **dict.fromkeys(("datetime", "datetime2", "smalldatetime", "datetimeoffset"), "timestamp"),
    **dict.fromkeys(("money", "smallmoney"), "decimal"),
    "bit": "boolean",
    **dict.fromkeys(("uniqueidentifier", "xml", "sysname", "sql_variant"), "string"),
    # T-SQL's `timestamp` is rowversion, 8 bytes, not a point in time.
    **dict.fromkeys(("timestamp", "rowversion", "image", "geography", "geometry", "hierarchyid"), "binary"),
}

_COLUMNS_SQL = """
SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE
FROM INFORMATION_SCHEMA.COLUMNS AS c
JOIN INFORMATION_SCHEMA.TABLES AS t
  ON t.TABLE_CATALOG = c.TABLE_CATALOG AND t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE t.TABLE_TYPE IN ('BASE TABLE', 'VIEW') AND c.TABLE_SCHEMA NOT IN ('sys', 'INFORMATION_SCHEMA')
ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION
"""

# "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object name 'x'." → the last part.
_VENDOR_PREFIX = re.compile(r"^(\s*\[[^\]]*\])+\s*")
_TIMEOUT_STATES = ("HYT00", "HY008")  # query timeout expired; operation cancelled
_TIMEOUT_TEXTS = ("timeout expired", "operation canceled")


def sql_message(error: BaseException) -> str:
    """The server's own sentence, without the driver's bracketed vendor prefixes.

    mssql-python keeps it in `ddbc_error`; pyodbc in `args[1]`, after the SQLSTATE in `args[0]`.
    """
    args = error.args
    pyodbc_text = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
    text = getattr(error, "ddbc_error", "") or pyodbc_text or str(error)
    return _VENDOR_PREFIX.sub("", text)


def is_sql_timeout(error: BaseException) -> bool:
    """HYT00/HY008 from the ODBC driver (mssql-python puts it in driver_error, pyodbc in args[0])."""
    text = f"{getattr(error, 'driver_error', '')} {error.args!r}".lower()
    return any(s.lower() in text for s in _TIMEOUT_STATES) or any(t in text for t in _TIMEOUT_TEXTS)


def set_query_timeout(conn: Any, timeout_s: float) -> None:
    """The driver's own query timeout, which cancels on the server. `timeout` is not in PEP 249;
    mssql-python and pyodbc both have it, and cursors copy it when made, so it is set first.
    Whole seconds, rounded up, so the driver never cuts a query short of its limit."""
    if hasattr(conn, "timeout"):
        conn.timeout = max(1, math.ceil(timeout_s))


SYNAPSE = Driver(
    label="Synapse Serverless", message=sql_message, is_timeout=is_sql_timeout, before_query=set_query_timeout
)


def token_struct(token: str) -> bytes:
    """msodbcsql's access-token attribute: a 4-byte little-endian length, then the UTF-16-LE token."""
    encoded = token.encode("utf-16-le")
    return struct.pack("<I", len(encoded)) + encoded


def connection_string(server: str, database: str) -> str:
    # ApplicationIntent=ReadOnly: defence in depth beside the validator, never instead of it.
    return (
        f"Server=tcp:{server},1433;Database={database};Encrypt=yes;TrustServerCertificate=no;"
        "ApplicationIntent=ReadOnly"
    )


def mssql_connector(
    server: str,
    database: str,
    credential: TokenCredential,
    *,
    cloud: str = "AzureCloud",
    driver_connect: Callable[..., Any] | None = None,
) -> Connect:
    """A `connect` callable for mssql-python with a fresh-enough Entra token for `cloud`'s SQL scope.

    `driver_connect` defaults to `mssql_python.connect`; tests pass a fake with the same signature.
    """
    if cloud not in SQL_SCOPE:
        raise ValueError(f"Unknown Azure cloud {cloud!r}; use one of: {', '.join(SQL_SCOPE)}.")
    token = EntraToken(credential, SQL_SCOPE[cloud])
    text = connection_string(server, database)

    def connect() -> DBAPIConnection:
        open_driver = driver_connect or _mssql_python_connect()
        conn: DBAPIConnection = open_driver(
            text, attrs_before={SQL_COPT_SS_ACCESS_TOKEN: token_struct(token.get())}
        )
        return conn

    return connect


def _mssql_python_connect() -> Callable[..., Any]:
    return driver_connect("mssql_python", "Synapse", "mssql-python", "synapse")


class SynapseEngine(DBAPIEngine):
    """T-SQL over one Synapse Serverless database. Thread-safe: each call has its own connection."""

    name = "synapse"
    dialect = "tsql"
    driver = SYNAPSE
    types = TSQL_TYPES

    def __init__(
        self,
        server: str,
        database: str,
        *,
        credential: TokenCredential | None = None,
        cloud: str = "AzureCloud",
        default_schema: str = DEFAULT_SCHEMA,
        connect: Connect | None = None,
    ) -> None:
        """`server` is the serverless endpoint (`<workspace>-ondemand.sql.azuresynapse.net`, or
        `….sql.azuresynapse.usgovcloudapi.net` in Azure Government). Give `credential` (any
        azure-identity credential) or `connect` (a callable returning a DB-API connection)."""
        if connect is None:
            if credential is None:
                raise ValueError("SynapseEngine needs an azure-identity credential or a connect callable.")
            connect = mssql_connector(server, database, credential, cloud=cloud)
        self.server = server
        self.database = database
        super().__init__(connect, defaults=(database, default_schema))

    def load_catalog(self, conn: DBAPIConnection) -> CatalogData:
        rows = fetch_rows(conn, _COLUMNS_SQL)
        return build_catalog(
            ((f"{self.database}.{s}.{t}", f"{s}.{t}", c, d, "") for s, t, c, d in rows), types=TSQL_TYPES
        )
