"""AdxEngine: KQL on one Azure Data Explorer database, through azure-kusto-data.

Every query is parsed and checked by the same validator as the embedded engine before anything is
sent (management commands, evaluate, externaldata, cluster()/database(), set statements refused),
then runs with request properties that bound it on the server (`client.request_properties`). The
result is read as a stream (the SDK's streaming query): rows are taken one chunk at a time until
`max_rows` + 1 or the byte budget, so a large result is never held whole, and the service's cut at
`truncationmaxrecords` (a partial failure after the rows) is never reached. Names and tables are
checked by the service; its errors come back with stable codes (`errors`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from azure.core.credentials import TokenCredential
from azure.kusto.data.response import KustoStreamingResponseDataSet
from requests.adapters import BaseAdapter

from loom.engines.bounds import MAX_RESULT_BYTES, Bounded, bounded_rows, cut_name, header_size
from loom.engines.catalog_cache import KeptCatalog
from loom.engines.contracts import (
    Catalog,
    Column,
    Problem,
    QueryError,
    ResultSet,
    Value,
    unsupported_dialect,
)
from loom.engines.kql.adx.client import call, kusto_client, management_properties, request_properties
from loom.engines.kql.adx.errors import is_truncation, query_error
from loom.engines.kql.adx.hosts import PUBLIC, cluster_url
from loom.engines.kql.adx.schema import parse_schema, schema_command
from loom.engines.kql.adx.values import kusto_type, row_converter
from loom.engines.kql.names import shown_name
from loom.engines.kql.validator import kql_problems, parse_kql
from loom.engines.sql.dbapi import CANCEL_RETRY_S, timeout_error
from loom.engines.sql.deadlines import CancelTimer

log = logging.getLogger(__name__)

CLIENT_GRACE_S = 2.0  # past the server's time limit, the wait for its own timeout error
CATALOG_TIMEOUT_S = 30.0


class AdxEngine:
    """KQL over one ADX database. Thread-safe: the SDK's session pools connections per thread."""

    name = "adx"
    language = "kql"
    dialect = "kql"
    dialects = frozenset({"kql"})

    def __init__(
        self,
        cluster: str,
        database: str,
        *,
        credential: TokenCredential,
        cloud: str = PUBLIC,
        transport: BaseAdapter | None = None,
    ) -> None:
        """`cluster` is the cluster URI (`https://<name>.<region>.kusto.windows.net`), which must be
        in `cloud`'s Kusto domains. `transport` replaces the HTTP adapter under the SDK (tests)."""
        try:
            self.cluster = cluster_url(cluster, cloud)
        except ValueError as e:
            raise QueryError("source_misconfigured", f"ADX source refused: {e}") from e
        self.database = database
        self._client = kusto_client(self.cluster, cloud, credential, transport)
        self._catalog = KeptCatalog(self._load_catalog, "ADX")
        self._state = threading.Lock()  # held only to read or set the problem
        self._problem: str | None = None

    # --- Engine protocol ----------------------------------------------------------------------

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
        """Check, then run with the server's and the client's limits; QueryError when refused or failed."""
        self._check(query, dialect)
        properties = request_properties(
            max_rows=max_rows, max_bytes=max_bytes or MAX_RESULT_BYTES, timeout_s=timeout_s, now=now
        )
        started = time.perf_counter()
        deadline = timeout_s + CLIENT_GRACE_S
        with call(deadline) as current, CancelTimer(current.close, deadline, CANCEL_RETRY_S) as timer:
            try:
                response = self._client.execute_streaming_query(self.database, query, properties=properties)
                columns, rows = _read(response, max_rows, max_bytes or MAX_RESULT_BYTES)
            except Exception as e:  # the SDK's, requests' and the JSON reader's errors: all "it failed"
                raise timeout_error(timeout_s) if timer.fired else self._failed(e, timeout_s) from e
        self._set_problem(None)
        return rows.result(columns, engine=self.name, query=query, started=started)

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        try:
            self._check(query, dialect)
        except QueryError as e:
            return e.problems
        return []

    def catalog(self) -> Catalog:
        """The database's tables, read with `.show database … schema as json` and kept
        (`KeptCatalog`)."""
        return self._catalog.get()

    def loaded_catalog(self) -> Catalog | None:
        return self._catalog.loaded()

    def problem(self) -> str | None:
        with self._state:
            return self._problem

    def close(self) -> None:
        self._client.close()

    # --- steps --------------------------------------------------------------------------------

    def _check(self, query: str, dialect: str | None) -> None:
        """The embedded engine's checks, on the parsed query: nothing unchecked is ever sent."""
        if dialect not in (None, self.dialect):
            raise unsupported_dialect(self, dialect)
        problems = kql_problems(parse_kql(query))
        if problems:
            raise QueryError(problems[0].code, problems[0].message, problems)

    def _load_catalog(self) -> Catalog:
        properties = management_properties(CATALOG_TIMEOUT_S)
        with call(CATALOG_TIMEOUT_S + CLIENT_GRACE_S):
            try:
                response = self._client.execute_mgmt(self.database, schema_command(self.database), properties)
                text = response.primary_results[0].rows[0][0]
            except (IndexError, TypeError) as e:
                raise QueryError("source_unavailable", "ADX sent no database schema.") from e
            except Exception as e:  # the SDK's and requests' errors
                raise self._failed(e, CATALOG_TIMEOUT_S) from e
        catalog = parse_schema(str(text), self.database)
        self._set_problem(None)
        return catalog

    def _failed(self, error: Exception, timeout_s: float) -> QueryError:
        failure = query_error(error, timeout_s=timeout_s, tables=self._known_tables())
        if failure.code in ("source_unavailable", "source_misconfigured"):
            self._set_problem(failure.message)
        return failure

    def _known_tables(self) -> dict[str, str]:
        loaded = self.loaded_catalog()
        return {t.name.lower(): shown_name(t.name) for t in loaded.tables} if loaded else {}

    def _set_problem(self, problem: str | None) -> None:
        with self._state:
            self._problem = problem


def _read(
    response: KustoStreamingResponseDataSet, max_rows: int, max_bytes: int
) -> tuple[list[Column], Bounded]:
    """The first primary result's columns and at most `max_rows` rows and about `max_bytes`."""
    table = next(response.iter_primary_results(), None)
    if table is None:
        return [], Bounded([], None)
    names = [cut_name(str(c.column_name)) for c in table.columns]
    types = [kusto_type(str(c.column_type)) for c in table.columns]
    rows = _Rows(table.raw_rows, row_converter(types))
    bounded = bounded_rows(
        rows.fetch, max_rows=max_rows, max_bytes=max_bytes, convert=_as_is, header=header_size(names)
    )
    if rows.cut_by_server and bounded.truncated_by is None:
        bounded = Bounded(bounded.rows, "bytes", bounded.size)  # the server's size cap came before ours
    return [Column(name=n, type=t) for n, t in zip(names, types, strict=True)], bounded


class _Rows:
    """`fetchmany` over the streamed rows; the service's truncation notice ends them quietly."""

    def __init__(self, raw: Iterator[list[object]], convert: Callable[[Sequence[object]], list[Value]]):
        self._raw = raw
        self._convert = convert
        self.cut_by_server = False

    def fetch(self, size: int) -> list[list[Value]]:
        out: list[list[Value]] = []
        try:
            for row in itertools.islice(self._raw, size):
                out.append(self._convert(row))
        except Exception as e:  # the SDK raises the truncation notice while iterating
            if not is_truncation(e):
                raise
            self.cut_by_server = True
        return out


def _as_is(value: object) -> object:
    return value  # already JSON-safe: converted by column type in `_Rows`
