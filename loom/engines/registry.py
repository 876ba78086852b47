"""Engines by source, opened once and shared: opening a source is not free (a local one copies its
tables; a cloud one signs in), so each is opened on first use and kept.

Which engine a source gets is a table by kind; cloud engines get the cloud and the credentials from
`CloudAccess`, which the agent builds from Settings (engines never read configuration themselves).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loom.engines.contracts import Engine, QueryError
from loom.engines.sources import Source
from loom.engines.sql.duckdb_engine import DuckDBEngine


@dataclass(frozen=True)
class CloudAccess:
    cloud: str = "AzureCloud"
    credential: Callable[[], Any] | None = None  # builds an azure-identity credential when first needed
    databricks_token: str | None = None


def _needs(source: Source, *fields: str) -> None:
    missing = [f for f in fields if not getattr(source, f)]
    if missing:
        raise QueryError(
            "source_misconfigured", f"source {source.name!r} ({source.kind}) needs: {', '.join(missing)}"
        )


def _credential(access: CloudAccess) -> Any:
    if access.credential is None:
        raise QueryError("source_misconfigured", "no Azure credential is configured for cloud sources")
    return access.credential()


def _synapse(source: Source, access: CloudAccess) -> Engine:
    from loom.engines.sql.synapse import SynapseEngine

    _needs(source, "database")
    return SynapseEngine(
        source.location,
        source.database or "",
        credential=_credential(access),
        cloud=access.cloud,
        default_schema=source.default_schema or "dbo",
    )


def _databricks(source: Source, access: CloudAccess) -> Engine:
    from loom.engines.sql.databricks import DatabricksEngine

    _needs(source, "http_path", "catalog")
    auth: dict[str, Any] = (
        {"access_token": access.databricks_token}
        if access.databricks_token
        else {"credential": _credential(access)}
    )
    return DatabricksEngine(
        source.location,
        source.http_path or "",
        catalog=source.catalog or "",
        schemas=list(source.schemas) or None,
        cloud=access.cloud,
        default_schema=source.default_schema or "default",
        **auth,
    )


OPENERS: dict[str, Callable[[Source, CloudAccess], Engine]] = {
    "duckdb": lambda source, _access: DuckDBEngine(source),
    "synapse": _synapse,
    "databricks": _databricks,
}


class EnginePool:
    """One SQL engine per source, created on first use; safe to share across threads."""

    def __init__(self, access: CloudAccess | None = None) -> None:
        self._access = access or CloudAccess()
        self._lock = threading.Lock()
        self._sql: dict[tuple[object, ...], Engine] = {}

    def sql_engine(self, source: Source) -> Engine:
        with self._lock:
            engine = self._sql.get(source.connection_key)
            if engine is None:
                # Construction is cheap (sources open lazily on first query), so holding the lock
                # here never makes other threads wait on I/O.
                engine = self._sql[source.connection_key] = OPENERS[source.kind](source, self._access)
            return engine

    def close(self) -> None:
        with self._lock:
            engines, self._sql = list(self._sql.values()), {}
        for engine in engines:
            close = getattr(engine, "close", None)
            if close is not None:
                close()
