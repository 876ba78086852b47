"""CosmosGraphEngine: Gremlin on one Cosmos DB for Apache Gremlin graph, through gremlinpython.

A query is parsed and checked by the same validator as the embedded engine (reads only, by step
name; nothing unchecked is sent), its `repeat` without `times`/`until` bounded, its results capped
by a `limit` step, and it is sent as a string in the form Cosmos DB documents (`render(groovy=True)`).
The time limit is the client's: Cosmos DB has no per-request one, so a query past it is abandoned
with its client (`client.CosmosClients`). Each answer is bounded on the wire as it arrives and
again as rows. Cosmos DB charges request units (RU) for each request and reports the charge: it
goes into the result's notes, with any throttling (429) retried within the time limit.

Partition-key awareness: a source may name its graph's partition key; the catalog carries it,
so the model is told that a traversal starting from `has('<key>', value)` reads one partition.
The catalog is read from the graph like the embedded engine's, but over at most `CATALOG_SCAN`
elements of each kind (a full count of a large graph costs RU), and property keys the sample
lacks are not looked for (a `has(key)` over every partition is the costliest read there is).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import threading
import time

from azure.core.credentials import TokenCredential
from gremlin_python.driver.protocol import GremlinServerError

from loom.engines.bounds import MAX_RESULT_BYTES
from loom.engines.catalog_cache import KeptCatalog
from loom.engines.contracts import Catalog, Problem, QueryError, ResultSet, unsupported_dialect
from loom.engines.graph.catalog import graph_catalog
from loom.engines.graph.cosmos.client import CosmosClients, Pooled, SignIn, TooLarge, TransportFactory
from loom.engines.graph.cosmos.errors import cosmos_error, retry_after_ms, status_of, throttled
from loom.engines.graph.cosmos.hosts import COSMOS_SCOPES, endpoint_url
from loom.engines.graph.cosmos.values import cosmos_value
from loom.engines.graph.engine import capped, value_rows
from loom.engines.graph.gremlin import Traversal, parse, render
from loom.engines.graph.names import unknown_names
from loom.engines.graph.rewrite import bounded_repeats
from loom.engines.graph.validate import validate_gremlin
from loom.engines.hosts import PUBLIC
from loom.engines.sql.dbapi import timeout_error

log = logging.getLogger(__name__)

CATALOG_SCAN = 10_000  # elements of each kind counted for the catalog
CATALOG_TIMEOUT_S = 30.0
WIRE_FACTOR = 4  # GraphSON on the wire against the rows kept: ids and property wrappers
MAX_RETRIES = 2  # of a throttled (429) request, when the wait fits in the time limit


class CosmosGraphEngine:
    """Gremlin over one Cosmos DB graph. Thread-safe: requests share a small connection pool."""

    name, language, dialect = "cosmos", "gremlin", "gremlin"
    dialects = frozenset({"gremlin"})

    def __init__(
        self,
        endpoint: str,
        database: str,
        graph: str,
        *,
        key: str | None = None,
        credential: TokenCredential | None = None,
        cloud: str = PUBLIC,
        partition_key: str | None = None,
        transport: TransportFactory | None = None,
    ) -> None:
        """`endpoint` is the account's Gremlin endpoint, which must be in `cloud`'s Cosmos DB
        domains. Sign-in is with `key` when given, else an Entra token from `credential`.
        `transport` replaces the WebSocket transport under gremlinpython (tests)."""
        try:
            self.url = endpoint_url(endpoint, cloud)
            sign_in = SignIn(key, credential, COSMOS_SCOPES[cloud])
        except ValueError as e:
            raise QueryError("source_misconfigured", f"Cosmos DB source refused: {e}") from e
        self.database, self.graph, self.partition_key = database, graph, partition_key
        self._wire_budget = WIRE_FACTOR * MAX_RESULT_BYTES
        self._clients = CosmosClients(
            self.url, database, graph, sign_in, transport, lambda: self._wire_budget
        )
        self._catalog = KeptCatalog(self._read_catalog, "Cosmos DB")
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
        self._dialect(dialect)
        started = time.perf_counter()
        traversal = self._checked(query)
        limited, shape = capped(bounded_repeats(traversal), max_rows)
        text = render(limited, groovy=True)
        self._wire_budget = WIRE_FACTOR * (max_bytes or MAX_RESULT_BYTES)
        found, notes = self._submit(text, timeout_s)
        values = shape([cosmos_value(v) for v in found])
        result = value_rows(values, max_rows, max_bytes, engine=self.name, query=text, started=started)
        result.notes = notes
        return result

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        self._dialect(dialect)
        return validate_gremlin(query)[1]

    def catalog(self) -> Catalog:
        """Labels, keys and edge ends read from the graph (`graph_catalog`), kept (`KeptCatalog`)."""
        return self._catalog.get()

    def loaded_catalog(self) -> Catalog | None:
        return self._catalog.loaded()

    def problem(self) -> str | None:
        with self._state:
            return self._problem

    def close(self) -> None:
        self._clients.close()

    # --- steps --------------------------------------------------------------------------------

    def _dialect(self, dialect: str | None) -> None:
        if dialect is not None and dialect not in self.dialects:
            raise unsupported_dialect(self, dialect)

    def _checked(self, query: str) -> Traversal:
        """The parsed query, refused for what it may not do, or for labels the graph lacks when
        the catalog lists every label (one read over `CATALOG_SCAN` elements may not)."""
        traversal, problems = validate_gremlin(query)
        if problems or traversal is None:
            raise QueryError(problems[0].code, problems[0].message, problems)
        try:
            catalog = self.catalog()
        except QueryError as e:  # the query itself may still run: let it say what is wrong
            log.warning("the Cosmos DB graph's catalog could not be read: %s", e.message)
            return traversal
        counted = [v.count for v in catalog.vertex_labels] + [e.count for e in catalog.edge_labels]
        if None not in counted:
            unknown = unknown_names(traversal, catalog, lambda _: True)
            if unknown:
                raise QueryError(unknown[0].code, unknown[0].message, unknown)
        return traversal

    def _submit(self, text: str, timeout_s: float) -> tuple[list[object], list[str]]:
        """The results of one request and the notes on it (its charge; throttling retried)."""
        deadline = time.monotonic() + timeout_s
        waited: list[float] = []
        while True:
            pooled = self._clients.current()
            try:
                found, attributes = self._request(pooled, text, deadline, timeout_s)
            except GremlinServerError as e:
                wait = retry_after_ms(e.status_attributes or {})
                if status_of(e) == 429 and self._may_retry(waited, wait, deadline):
                    time.sleep((wait or 0) / 1000)
                    waited.append(wait or 0)
                    continue
                failure = throttled(wait) if status_of(e) == 429 else cosmos_error(e, timeout_s)
                raise self._failed(failure) from None
            self._set_problem(None)
            return found, _notes(attributes, waited)

    def _request(
        self, pooled: Pooled, text: str, deadline: float, timeout_s: float
    ) -> tuple[list[object], dict[str, object]]:
        if not pooled.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise QueryError("source_busy", "Every connection to the Cosmos DB graph is in use; try again.")
        try:
            answer = pooled.client.submit_async(text).result(timeout=_left(deadline))
            found = answer.all().result(timeout=_left(deadline))
            return list(found), dict(answer.status_attributes or {})
        except concurrent.futures.TimeoutError:
            self._clients.drop(pooled)  # its connection is still reading the abandoned answer
            raise timeout_error(timeout_s) from None
        except TooLarge as e:
            self._clients.drop(pooled)
            raise QueryError(
                "result_too_large",
                f"The graph's answer was too large ({e}); return fewer or smaller results: select "
                "values() or project() of the properties needed instead of whole vertices, or limit().",
            ) from None
        except GremlinServerError:
            raise
        except Exception as e:  # the transport's and the driver's: the connection is gone
            self._clients.drop(pooled)
            raise self._failed(
                QueryError("source_unavailable", f"Cosmos DB could not be reached: {type(e).__name__}")
            ) from e
        finally:
            pooled.slots.release()

    @staticmethod
    def _may_retry(waited: list[float], wait: float | None, deadline: float) -> bool:
        return len(waited) < MAX_RETRIES and time.monotonic() + (wait or 0) / 1000 < deadline

    def _read_catalog(self) -> Catalog:
        catalog = graph_catalog(self._common, scan=CATALOG_SCAN)
        return catalog.model_copy(update={"partition_key": self.partition_key})

    def _common(self, query: str) -> list[object]:
        found, _ = self._submit(render(parse(query), groovy=True), CATALOG_TIMEOUT_S)
        return [cosmos_value(v) for v in found]

    def _failed(self, failure: QueryError) -> QueryError:
        if failure.code in ("source_unavailable", "source_misconfigured", "access_denied"):
            self._set_problem(failure.message)
        return failure

    def _set_problem(self, problem: str | None) -> None:
        with self._state:
            self._problem = problem


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _notes(attributes: dict[str, object], waited: list[float]) -> list[str]:
    notes = []
    charge = attributes.get("x-ms-total-request-charge", attributes.get("x-ms-request-charge"))
    if isinstance(charge, int | float | str):
        try:
            notes.append(f"Cosmos DB request charge: {float(charge):,.2f} RU")
        except ValueError:
            pass
    if waited:
        notes.append(
            f"Cosmos DB throttled the request (429) {len(waited)} time(s); retried after "
            f"{sum(waited):,.0f} ms in all"
        )
    return notes
