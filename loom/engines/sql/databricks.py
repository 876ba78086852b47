"""Databricks SQL through databricks-sql-connector, over Unity Catalog three-part names.

Tables are named `catalog.schema.table` in the catalog; a query may write them that way, or
leave out the catalog (the configured one) or the schema too (the configured default schema):
the connection opens in that catalog and schema, so the server resolves names the same way.

Auth, one of:
- `access_token`: a personal access token (or any bearer token the workspace accepts);
- `credential`: an azure-identity credential (managed identity, Entra service principal — OAuth
  M2M through Microsoft Entra ID), asked for the Azure Databricks resource's scope. The
  connector's own `azure-sp-m2m` is not used: it always signs in at login.microsoftonline.com,
  which is wrong for Azure Government; an azure-identity credential built with the cloud's
  authority is right in both clouds;
- `credentials_provider`: the connector's hook, e.g. databricks-sdk's
  `oauth_service_principal(Config(host=…, client_id=…, client_secret=…))` for OAuth M2M with a
  Databricks-managed service principal (databricks-sdk is then the caller's dependency).

Cancellation: `Cursor.cancel()` is documented as callable from another thread; the shared timer
calls it at the time limit (and again until `execute` returns: a cancel sent before the
connector has the statement's id does nothing). Closing the cursor then closes the operation.
The session's STATEMENT_TIMEOUT is a server-side backstop for when this process is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

# The Azure Databricks first-party application; the same resource in Azure Government, where
# only the authority differs (login.microsoftonline.us, set on the credential).
AZURE_DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"
DATABRICKS_SCOPE = {"AzureCloud": AZURE_DATABRICKS_SCOPE, "AzureUSGovernment": AZURE_DATABRICKS_SCOPE}
DEFAULT_SCHEMA = "default"
STATEMENT_TIMEOUT_S = 3600  # the server cancels anything older, even if this process died

DATABRICKS_TYPES = BASE_TYPES | {
    **dict.fromkeys(("byte", "short", "long"), "integer"),
    **dict.fromkeys(("timestamp", "timestamp_ntz"), "timestamp"),
    **dict.fromkeys(("interval", "interval_day_time", "interval_year_month"), "interval"),
    "array": "list",
    "map": "map",
    "struct": "struct",
    "variant": "json",
    **dict.fromkeys(("void", "null"), "null"),
    **dict.fromkeys(("geography", "geometry"), "string"),
}

_TIMEOUT_TEXTS = ("query_execution_timeout_exceeded", "statement_timeout")


def databricks_message(error: BaseException) -> str:
    # ServerOperationError keeps the user-facing text in `message`; the stack trace is in `context`.
    return str(getattr(error, "message", None) or error)


def is_databricks_timeout(error: BaseException) -> bool:
    """The server's STATEMENT_TIMEOUT backstop; the client-side cancel is recognised by the timer."""
    return any(t in str(error).lower() for t in _TIMEOUT_TEXTS)


DATABRICKS = Driver(label="Databricks SQL", message=databricks_message, is_timeout=is_databricks_timeout)

HeaderFactory = Callable[[], dict[str, str]]


class EntraCredentialsProvider:
    """The connector's `credentials_provider` protocol, backed by an azure-identity credential."""

    def __init__(self, credential: TokenCredential, cloud: str = "AzureCloud") -> None:
        if cloud not in DATABRICKS_SCOPE:
            raise ValueError(f"Unknown Azure cloud {cloud!r}; use one of: {', '.join(DATABRICKS_SCOPE)}.")
        self.token = EntraToken(credential, DATABRICKS_SCOPE[cloud])

    def auth_type(self) -> str:
        return "azure-entra-id"

    def __call__(self, *args: Any, **kwargs: Any) -> HeaderFactory:
        return lambda: {"Authorization": f"Bearer {self.token.get()}"}


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def databricks_connector(
    server_hostname: str,
    http_path: str,
    *,
    catalog: str,
    schema: str = DEFAULT_SCHEMA,
    access_token: str | None = None,
    credential: TokenCredential | None = None,
    credentials_provider: Callable[..., Any] | None = None,
    cloud: str = "AzureCloud",
    driver_connect: Callable[..., Any] | None = None,
) -> Connect:
    """A `connect` callable for databricks-sql-connector with exactly one way to authenticate.

    `driver_connect` defaults to `databricks.sql.connect`; tests pass a fake with the same signature.
    """
    kwargs = _connect_kwargs(server_hostname, http_path, catalog, schema)
    kwargs |= _auth_kwargs(access_token, credential, credentials_provider, cloud)

    def connect() -> DBAPIConnection:
        conn: DBAPIConnection = (driver_connect or _databricks_sql_connect())(**kwargs)
        return conn

    return connect


def _connect_kwargs(server_hostname: str, http_path: str, catalog: str, schema: str) -> dict[str, Any]:
    return {
        "server_hostname": server_hostname,
        "http_path": http_path,
        "catalog": catalog,
        "schema": schema,
        "session_configuration": {"STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT_S)},
        "enable_telemetry": False,  # nothing leaves for the vendor beyond the queries themselves
        "_disable_pandas": True,  # plain Python values rather than numpy/pandas ones
        "user_agent_entry": "loom-data-agents",
    }


def _auth_kwargs(
    access_token: str | None,
    credential: TokenCredential | None,
    credentials_provider: Callable[..., Any] | None,
    cloud: str,
) -> dict[str, Any]:
    given = [x for x in (access_token, credential, credentials_provider) if x is not None]
    if len(given) != 1:
        raise ValueError("Give exactly one of access_token, credential or credentials_provider.")
    if access_token is not None:
        return {"access_token": access_token}
    if credential is not None:
        return {"credentials_provider": EntraCredentialsProvider(credential, cloud)}
    return {"credentials_provider": credentials_provider}


def _databricks_sql_connect() -> Callable[..., Any]:
    return driver_connect("databricks.sql", "Databricks", "databricks-sql-connector", "databricks")


class DatabricksEngine(DBAPIEngine):
    """Databricks SQL over one Unity Catalog catalog. Thread-safe: each call has its own connection."""

    name = "databricks"
    dialect = "databricks"
    driver = DATABRICKS
    types = DATABRICKS_TYPES

    def __init__(
        self,
        server_hostname: str,
        http_path: str,
        *,
        catalog: str,
        schemas: Sequence[str] | None = None,
        default_schema: str = DEFAULT_SCHEMA,
        access_token: str | None = None,
        credential: TokenCredential | None = None,
        credentials_provider: Callable[..., Any] | None = None,
        cloud: str = "AzureCloud",
        connect: Connect | None = None,
    ) -> None:
        """`schemas` limits the catalog to those schemas (all but information_schema when None).
        Give one of `access_token`, `credential`, `credentials_provider`, or a `connect` callable."""
        if connect is None:
            connect = databricks_connector(
                server_hostname,
                http_path,
                catalog=catalog,
                schema=default_schema,
                access_token=access_token,
                credential=credential,
                credentials_provider=credentials_provider,
                cloud=cloud,
            )
        self.server_hostname = server_hostname
        self.uc_catalog = catalog
        self.schemas = tuple(schemas) if schemas else None
        super().__init__(connect, defaults=(catalog, default_schema))

    def load_catalog(self, conn: DBAPIConnection) -> CatalogData:
        where, params = self._schema_filter()
        info = f"{quote(self.uc_catalog)}.information_schema"
        comments = fetch_rows(
            conn, f"SELECT table_schema, table_name, comment FROM {info}.tables {where}", params
        )
        columns = fetch_rows(
            conn,
            f"SELECT table_schema, table_name, column_name, data_type, comment FROM {info}.columns {where} "
            "ORDER BY table_schema, table_name, ordinal_position",
            params,
        )
        descriptions = {self._name(s, t): c or "" for s, t, c in comments}
        rows = ((self._name(s, t), self._name(s, t), c, d, note or "") for s, t, c, d, note in columns)
        return build_catalog(rows, types=DATABRICKS_TYPES, table_descriptions=descriptions)

    def _name(self, schema: str, table: str) -> str:
        return f"{self.uc_catalog}.{schema}.{table}"

    def _schema_filter(self) -> tuple[str, dict[str, str]]:
        """A WHERE clause with named parameters (the connector's native `:name` binding)."""
        if not self.schemas:
            return "WHERE table_schema <> 'information_schema'", {}
        params = {f"schema{i}": s for i, s in enumerate(self.schemas)}
        return f"WHERE table_schema IN ({', '.join(':' + p for p in params)})", params
