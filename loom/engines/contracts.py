"""The contracts every engine shares: ResultSet, Problem, Catalog, and the Engine and Retriever protocols.

Tools and the agent speak only these types. A query language (sql now; kql, dax, gremlin next) is an
`Engine` per source kind, opened from the table in `registry.py`; document search, which generates
no query, is a `Retriever`. The catalog carries what every language needs to be prompted and
checked: tables and columns, relationships between them, measures (semantic models), and vertex and
edge labels (graphs); each engine fills in what its source has.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

# A value in a row or a sample: JSON-safe by construction (`json_safe`), so it is typed `object`
# and not validated again per cell (pydantic's JsonValue costs 15x more on 1,000 rows).
Value = object
ErrorJson = dict[str, dict[str, str]]


class Column(BaseModel):
    name: str
    type: str


class ResultSet(BaseModel):
    """What every engine returns and every data tool carries (DESIGN.md, Contracts)."""

    columns: list[Column]
    rows: list[list[Value]]
    row_count: int
    truncated: bool = False
    truncated_by: Literal["rows", "bytes"] | None = None  # which limit stopped it, when one did
    # What the rows and names take as JSON, as the engine counted them (0: not counted). For the
    # turn's result budget, in process only: not part of what is sent or stored.
    size_bytes: int = Field(0, exclude=True)
    elapsed_ms: float = 0.0
    engine: str
    query: str
    # What the source reported about the run, in words for the user (a Cosmos DB request charge,
    # a throttled request retried): shown beside the result, not read by the model.
    notes: list[str] = Field(default_factory=list)


class Problem(BaseModel):
    """One reason a query cannot run; `code` is stable and readable by both the model and the user."""

    code: str
    message: str
    suggestions: list[str] = Field(default_factory=list)


class ColumnInfo(BaseModel):
    name: str
    type: str
    description: str = ""
    sample_values: list[Value] = Field(default_factory=list)


class TableInfo(BaseModel):
    name: str
    columns: list[ColumnInfo]
    description: str = ""
    row_count: int | None = None


class ForeignKey(BaseModel, frozen=True):
    """`table.columns` references `ref_table.ref_columns`; names are spelled as in the Catalog."""

    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    source: Literal["declared", "inferred"]


class MeasureInfo(BaseModel):
    """A named calculation a semantic model defines (`[Revenue Won]`): answers must use it."""

    name: str
    table: str
    expression: str = ""
    description: str = ""
    format: str = ""


class VertexLabel(BaseModel):
    """A kind of graph vertex, with the property names its vertices carry."""

    name: str
    properties: list[ColumnInfo] = Field(default_factory=list)
    count: int | None = None


class EdgeLabel(BaseModel):
    """A kind of graph edge and the vertex labels it connects (`route`: airport → airport)."""

    name: str
    out_labels: list[str] = Field(default_factory=list)  # where edges start
    in_labels: list[str] = Field(default_factory=list)  # where they end
    properties: list[ColumnInfo] = Field(default_factory=list)
    count: int | None = None


class UnavailableTable(BaseModel):
    """A table or view the source has that the engine could not load: the source serves the others,
    and whoever asks for this one is told why. `reason` is short and names no server path."""

    name: str
    reason: str


class Catalog(BaseModel):
    """What a source holds, for prompts and checks; a language fills in the parts it has."""

    tables: list[TableInfo]
    relationships: list[ForeignKey] = Field(default_factory=list)
    measures: list[MeasureInfo] = Field(default_factory=list)
    vertex_labels: list[VertexLabel] = Field(default_factory=list)
    edge_labels: list[EdgeLabel] = Field(default_factory=list)
    unavailable: list[UnavailableTable] = Field(default_factory=list)  # left out, with the reason
    partition_key: str | None = None  # a partitioned graph's partition key property (Cosmos DB)

    def table(self, name: str) -> TableInfo | None:
        wanted = name.lower()
        return next((t for t in self.tables if t.name.lower() == wanted), None)


class QueryError(Exception):
    """A query was refused or failed; carries the problems so callers can show or repair them."""

    def __init__(self, code: str, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = problems or [Problem(code=code, message=message)]

    def to_json(self) -> ErrorJson:
        return {"error": {"code": self.code, "message": self.message}}


@runtime_checkable
class Engine(Protocol):
    """One query language over one source; embedded and Azure backends both implement it.

    `dialect` is what the engine runs; `dialects` every dialect `execute` takes, translated by
    parsing (the embedded SQL engine reads T-SQL, SQLite and others; a cloud engine only its own).
    Any other raises QueryError `unsupported_dialect`.
    """

    @property
    def name(self) -> str:
        """The backend, as results name it: "duckdb", "synapse", "databricks"."""
        ...

    @property
    def language(self) -> str:
        """ "sql", "kql", …: which tools can use it."""
        ...

    @property
    def dialect(self) -> str: ...

    @property
    def dialects(self) -> frozenset[str]: ...

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
        """Validate by parsing, then run read-only with a row cap, a size cap (`max_bytes`, else the
        engines' default) and a time limit; QueryError when refused or failed."""
        ...

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]: ...

    def catalog(self) -> Catalog:
        """What the source holds; may read the source (call it off the event loop)."""
        ...

    def loaded_catalog(self) -> Catalog | None:
        """The catalog when it is in hand and current, without reading anything (safe on an event
        loop); None when `catalog()` would have to do work."""
        ...

    def problem(self) -> str | None:
        """Why the engine could not serve at its last try (the source would not load, the service
        would not connect), or None; it tries again on the next query. For readiness probes."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Retriever(Protocol):
    """Ranked passages for a query (document search generates no query language to validate).

    Each row of the ResultSet is one passage; its columns say what a passage carries (id, title,
    content, score, and the index's own fields)."""

    @property
    def name(self) -> str: ...

    def search(self, query: str, *, top: int, timeout_s: float, filter: str | None = None) -> ResultSet: ...

    def catalog(self) -> Catalog: ...

    def close(self) -> None: ...


class Embedder(Protocol):
    """Any embedding model: one vector per text. Only used when one is configured."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def unsupported_dialect(engine: Engine, dialect: str) -> QueryError:
    accepted = ", ".join(sorted(engine.dialects))
    return QueryError(
        "unsupported_dialect",
        f"The {engine.name} engine runs {engine.language} in {accepted}; it cannot take {dialect}.",
    )


def json_safe(value: object) -> Value:
    """Turn a driver value into something JSON can carry without loss of meaning."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return float(value) if value == value.to_integral_value() or abs(value) < 1e15 else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)
