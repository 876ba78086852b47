"""The embedded Gremlin engine: a local graph in graphersal, read by checked Gremlin strings.

A query is parsed (`gremlin.parse`), checked (`validate`: reads only, by step name), and rendered
in the engine's own form; the result cap goes in as a `limit` step and the time limit as the
engine's `evaluationTimeout`, under a read-only policy that lets only that option be set (the
validator refuses a query's own `with(…)`). Results come back as the shared ResultSet: one column
`value`, one row per traverser result, as Gremlin returns it (scalars; lists for `path()` and
`fold()`; objects for maps; vertices and edges as `{id, label, properties}`), bounded in rows and
bytes like every engine's. graphersal cannot be interrupted from Python and its memory limit is
not a hard one: run it isolated (`engines/isolated`), whose child process bounds both.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from itertools import islice
from pathlib import Path

import graphersal

from loom.engines.bounds import MAX_RESULT_BYTES, bounded_rows
from loom.engines.contracts import (
    Catalog,
    Column,
    Problem,
    QueryError,
    ResultSet,
    Value,
    json_safe,
    unsupported_dialect,
)
from loom.engines.graph.catalog import graph_catalog
from loom.engines.graph.gremlin import Literal, Step, Traversal, parse, render
from loom.engines.graph.load import load_graph
from loom.engines.graph.names import has_key, unknown_names
from loom.engines.graph.rewrite import bounded_repeats, for_engine
from loom.engines.graph.validate import TERMINALS, validate_gremlin
from loom.engines.sources import GraphSource
from loom.engines.sql.limits import LocalLimits, size_bytes

POLICY = graphersal.AccessPolicy.read_only().allow("update", "option")  # only our evaluationTimeout


class GraphEngine:
    """Gremlin over one local graph (a GraphSON file, or a folder of nodes and edges CSV files),
    held in memory up to the query memory limit of `LocalLimits`."""

    name, language, dialect = "graphersal", "gremlin", "gremlin"
    dialects = frozenset({"gremlin"})

    def __init__(self, source: GraphSource, limits: LocalLimits | None = None) -> None:
        self.source = source
        self.location = Path(source.location).expanduser()
        self._memory_limit = size_bytes((limits or LocalLimits()).memory_limit)
        self._graph: graphersal.Graph | None = None
        self._catalog: Catalog | None = None
        self._problem: str | None = None
        self._lock = threading.Lock()

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        self._dialect(dialect)
        return validate_gremlin(query)[1]

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
        traversal, problems = validate_gremlin(query)
        if problems or traversal is None:
            raise QueryError(problems[0].code, problems[0].message, problems)
        unknown = unknown_names(traversal, self.catalog(), self._has_key)
        if unknown:
            raise QueryError(unknown[0].code, unknown[0].message, unknown)
        text, shape = runnable(traversal, max_rows, timeout_s)
        values = shape(self._run(text))
        return value_rows(values, max_rows, max_bytes, engine=self.name, query=text, started=started)

    def _has_key(self, key: str) -> bool:
        return has_key(partial(_common, self._loaded()), key)

    def _run(self, text: str) -> list[object]:
        graph = self._loaded()
        try:
            found = graph.execute(text, policy=POLICY)
        except graphersal.PermissionDeniedError as e:
            raise QueryError("not_read_only", f"The query is not a read: {_first_line(e)}") from None
        except graphersal.GraphersalError as e:
            raise QueryError(_error_code(e), f"The query failed: {_first_line(e)}") from None
        return found if isinstance(found, list) else [found]

    def _loaded(self) -> graphersal.Graph:
        with self._lock:
            if self._graph is None:
                try:
                    self._graph = load_graph(self.location, memory_limit=self._memory_limit)
                    self._problem = None
                except (OSError, ValueError, graphersal.GraphersalError) as e:
                    self._problem = f"the graph would not load: {_first_line(e)}"
                    raise QueryError("source_unavailable", self._problem) from None
            return self._graph

    def catalog(self) -> Catalog:
        """The graph's vertex and edge labels, with their property keys (types, sample values)
        and, for each edge label, the vertex labels it joins; read once per load."""
        graph = self._loaded()
        with self._lock:
            if self._catalog is None:
                self._catalog = graph_catalog(partial(_common, graph))
            return self._catalog

    def loaded_catalog(self) -> Catalog | None:
        return self._catalog

    def problem(self) -> str | None:
        return self._problem

    def close(self) -> None:
        with self._lock:
            self._graph, self._catalog = None, None

    def _dialect(self, dialect: str | None) -> None:
        if dialect is not None and dialect not in self.dialects:
            raise unsupported_dialect(self, dialect)


def _common(graph: graphersal.Graph, query: str) -> list[object]:
    """A traversal of our own, written in the common form, run as the engine reads it."""
    found = graph.execute(render(parse(query)), policy=POLICY)
    return found if isinstance(found, list) else [found]


def runnable(
    traversal: Traversal, max_rows: int, timeout_s: float
) -> tuple[str, Callable[[list[object]], list[Value]]]:
    """The text the engine runs: the time limit as its `evaluationTimeout`, the result cap as a
    `limit` (`capped`), and how its results are shaped."""
    capped_traversal, shape = capped(bounded_repeats(for_engine(traversal)), max_rows)
    body = render(capped_traversal).removeprefix("g.")
    text = f'g.with("evaluationTimeout", {max(1, int(timeout_s * 1000))}).{body}'
    return text, lambda found: shape([value_of(v) for v in found])


def capped(traversal: Traversal, max_rows: int) -> tuple[Traversal, Callable[[list[Value]], list[Value]]]:
    """`traversal` ending in `limit(max_rows + 1)` (one more says there were more), a terminal step
    done here, and how its results are shaped: `hasNext()` answers whether there is one (at most
    one is read), `next()` the first."""
    steps = list(traversal.steps)
    last = steps[-1].name if steps else ""
    if last in TERMINALS:
        steps.pop()
    cap = 1 if last in ("hasNext", "next") else max_rows + 1
    steps.append(Step("limit", [Literal(cap, traversal.at)], traversal.at))
    if last == "hasNext":
        return replace(traversal, steps=steps), lambda found: [bool(found)]
    return replace(traversal, steps=steps), lambda found: found


def value_rows(
    values: list[Value], max_rows: int, max_bytes: int | None, *, engine: str, query: str, started: float
) -> ResultSet:
    """Traverser results as the shared ResultSet: one column `value`, bounded in rows and bytes."""
    rows = iter([[v] for v in values])
    bounded = bounded_rows(
        lambda n: list(islice(rows, n)), max_rows=max_rows, max_bytes=max_bytes or MAX_RESULT_BYTES
    )
    return bounded.result([Column(name="value", type="json")], engine=engine, query=query, started=started)


def value_of(item: object) -> Value:
    """A traverser result as JSON carries it: vertices and edges as {id, label, properties}."""
    if isinstance(item, graphersal.Vertex):
        return {"id": _id(item.id), "label": item.label, "properties": json_safe(dict(item.properties))}
    if isinstance(item, graphersal.Edge):
        return {
            "id": _id(item.id),
            "label": item.label,
            "outV": _id(item.out_v),
            "inV": _id(item.in_v),
            "properties": json_safe(dict(item.properties)),
        }
    if isinstance(item, list | tuple):
        return [value_of(v) for v in item]
    if isinstance(item, dict):
        return {str(k): value_of(v) for k, v in item.items()}
    return json_safe(item)


def _id(value: object) -> Value:
    """The engine keeps every id as text; a numeric one is shown as the number the files wrote."""
    text = str(getattr(value, "id", value))
    return int(text) if text.isdigit() else text


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _error_code(error: BaseException) -> str:
    text = str(error)
    if "Function not found" in text:
        return "unknown_step"
    if "evaluationTimeout" in text or "timed out" in text.lower():
        return "timeout"
    if "Syntax error" in text:
        return "parse_error"
    return "execution_error"
