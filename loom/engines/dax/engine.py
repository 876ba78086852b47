"""The embedded DAX engine: a semantic model folder, its tables loaded by the SQL engine, and DAX
queries compiled to one SQL query each (`query.py`) and run with the SQL path's limits.

Result columns are named as Power BI names them (`Table[Column]`, `[Measure]`); the result's
`query` is the DAX that ran. The SQL engine under it is the source's own (`DuckDBEngine` over the
folder that holds the tables), so loading, freshness, memory, time, row and byte bounds are the
SQL path's.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path

from loom.engines.contracts import (
    Catalog,
    ColumnInfo,
    ForeignKey,
    MeasureInfo,
    Problem,
    QueryError,
    ResultSet,
    TableInfo,
    UnavailableTable,
    unsupported_dialect,
)
from loom.engines.dax.calculated import add_column
from loom.engines.dax.compiler import Compiler
from loom.engines.dax.load import LoadedModel, load_model
from loom.engines.dax.model import ModelColumn, ModelError, SemanticModel
from loom.engines.dax.parser import parse_expression
from loom.engines.dax.query import Compiled, compile_query
from loom.engines.dax.scope import SQL_TYPES, Sources, quote
from loom.engines.isolated import query_started
from loom.engines.sources import DuckDBSource, ModelSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.limits import LocalLimits

log = logging.getLogger(__name__)

# How a model type reads a column the SQL engine loaded as another (a CSV's digits for a text
# column, a date for a dateTime one).
_LOADED_AS = {
    "string": {"varchar"},
    "int64": {"integer"},
    "double": {"float", "decimal", "integer"},
    "decimal": {"float", "decimal", "integer"},
    "boolean": {"boolean"},
    "dateTime": {"timestamp"},
}


class DaxEngine:
    name = "duckdb-dax"
    language = "dax"
    dialect = "dax"
    dialects = frozenset({"dax"})

    def __init__(self, source: ModelSource, limits: LocalLimits | None = None) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._loaded: LoadedModel | None = None
        self._sources: Sources | None = None
        self._sources_of: object = None  # the SQL engine's catalog the sources were read from
        self._problem: str | None = None
        self._limits = limits
        self._sql: DuckDBEngine | None = None

    # --- Engine protocol ------------------------------------------------------------------------

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
        self._check_dialect(dialect)
        sql_engine, sources = self._ready()
        query_started()
        started = time.monotonic()
        compiled = self._compile(query, sources, now)
        left = max(timeout_s - (time.monotonic() - started), 0.5)
        result = sql_engine.execute_built(
            compiled.sql, max_rows=max_rows, timeout_s=left, max_bytes=max_bytes
        )
        return result.model_copy(update={"engine": self.name, "query": query})

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        self._check_dialect(dialect)
        try:
            self._compile(query, self._ready()[1])
        except QueryError as e:
            return e.problems
        return []

    def compiled(self, query: str) -> Compiled:
        """The SQL a query compiles to, and the measures it uses (for tests and `--explain`)."""
        return self._compile(query, self._ready()[1])

    def catalog(self) -> Catalog:
        loaded = self._model()
        return model_catalog(loaded.model, loaded.missing)

    def loaded_catalog(self) -> Catalog | None:
        return None if self._loaded is None else model_catalog(self._loaded.model, self._loaded.missing)

    def problem(self) -> str | None:
        return self._problem

    def close(self) -> None:
        if self._sql is not None:
            self._sql.close()

    # --- steps ----------------------------------------------------------------------------------

    def _check_dialect(self, dialect: str | None) -> None:
        if dialect not in (None, self.dialect):
            raise unsupported_dialect(self, dialect)

    def _compile(self, query: str, sources: Sources, now: dt.datetime | None = None) -> Compiled:
        return compile_query(query, self._model().model, sources, now)

    def _model(self) -> LoadedModel:
        with self._lock:
            if self._loaded is None:
                try:
                    lakehouse = Path(self.source.lakehouse) if self.source.lakehouse else None
                    self._loaded = load_model(Path(self.source.location), lakehouse)
                except ModelError as e:
                    self._problem = f"the semantic model does not load: {e}"
                    raise QueryError(
                        "model_error", f"The semantic model {self.source.name!r} does not load: {e}"
                    ) from e
                self._problem = None
            return self._loaded

    def _ready(self) -> tuple[DuckDBEngine, Sources]:
        loaded = self._model()
        with self._lock:
            if self._sql is None:
                data = DuckDBSource(name=self.source.name, location=str(loaded.data_root))
                self._sql = DuckDBEngine(data, self._limits)
            engine = self._sql
        catalog = engine.catalog()  # the same object until the data changes and is loaded again
        with self._lock:
            if self._sources is None or self._sources_of is not catalog:
                loaded_types = {t.name.lower(): {c.name: c.type for c in t.columns} for t in catalog.tables}
                sources = _sources(loaded, loaded_types)
                sources.blank_rows = _blank_rows(engine, loaded.model, sources)
                sources.blanks = _blank_columns(engine, loaded.model, sources)
                self._sources, self._sources_of = sources, catalog
            return engine, self._sources


def _sources(loaded: LoadedModel, loaded_types: dict[str, dict[str, str]]) -> Sources:
    """Each model table as SQL: its loaded table, with columns named and typed as the model says,
    and its calculated columns computed (those its data does not hold already)."""
    sources = Sources({}, dict(loaded.missing))
    pending: dict[str, list[ModelColumn]] = {}
    for key, (schema, table) in loaded.tables.items():
        qualified = table if schema == "main" else f"{schema}.{table}"
        types = loaded_types.get(qualified.lower(), {})
        lacking = [c for c in loaded.model.tables[key].columns.values() if c.source_name not in types]
        absent = [c.name for c in lacking if not c.expression]
        if absent:
            sources.missing[key] = f"its data has no column {', '.join(absent[:5])}"
            continue
        sources.tables[key] = _relation(loaded.model, key, schema, table, types)
        pending[key] = [c for c in lacking if c.expression]
    for key, columns in pending.items():
        for column in columns:  # in the model's order: a later one may read an earlier one
            _add_calculated(loaded.model, sources, key, column)
    return sources


def _add_calculated(model: SemanticModel, sources: Sources, key: str, column: ModelColumn) -> None:
    """A calculated column of the model. One that does not compile leaves its table out, saying why."""
    if key not in sources.tables:
        return
    try:
        node = parse_expression(column.expression or "")
        add_column(Compiler(model, sources), model.tables[key], column.name, node, column.data_type)
    except QueryError as e:
        del sources.tables[key]
        sources.missing[key] = f"its calculated column [{column.name}] cannot be computed: {e.message}"


def _blank_rows(engine: DuckDBEngine, model: SemanticModel, sources: Sources) -> frozenset[str]:
    """The tables with a blank row: looked up by a row whose key they lack, or that has none (and,
    as the blank row's own key is BLANK, the tables such a table looks up)."""
    checks = [
        r
        for r in model.active()
        if r.from_table.lower() in sources.tables and r.to_table.lower() in sources.tables
    ]
    if not checks:
        return frozenset()
    probes = []
    for i, r in enumerate(checks):
        many, one = sources.tables[r.from_table.lower()], sources.tables[r.to_table.lower()]
        fk, key = (
            quote(model.column(r.from_table, r.from_column).name),
            quote(model.column(r.to_table, r.to_column).name),
        )
        probes.append(
            f"EXISTS (SELECT 1 FROM {many} AS m WHERE m.{fk} IS NULL OR NOT EXISTS "
            f"(SELECT 1 FROM {one} AS o WHERE o.{key} = m.{fk})) AS b{i}"
        )
    row = engine.execute_built(f"SELECT {', '.join(probes)}", max_rows=1, timeout_s=60).rows[0]
    found = {r.to_table.lower() for r, orphaned in zip(checks, row, strict=True) if orphaned}
    for table in list(found):
        found |= set(model.expanded(table))
    return frozenset(found)


def _blank_columns(
    engine: DuckDBEngine, model: SemanticModel, sources: Sources
) -> frozenset[tuple[str, str]]:
    """The columns that hold BLANK somewhere: one pass over each table, when the model loads."""
    found: set[tuple[str, str]] = set()
    for key, relation in sources.tables.items():
        columns = list(model.tables[key].columns.values())
        if not columns:
            continue
        probes = ", ".join(f"count(*) > count({quote(c.name)})" for c in columns)
        row = engine.execute_built(f"SELECT {probes} FROM {relation} AS t", max_rows=1, timeout_s=120).rows[0]
        found |= {(key, c.name.lower()) for c, blank in zip(columns, row, strict=True) if blank}
    return frozenset(found)


def _relation(model: SemanticModel, key: str, schema: str, table: str, types: dict[str, str]) -> str:
    columns = model.tables[key].columns.values()
    listing = []
    for column in columns:
        loaded_type = types.get(column.source_name)
        source = quote(column.source_name)
        if loaded_type is None:
            continue  # a calculated column, computed after (`_add_calculated`)
        if loaded_type in _LOADED_AS[column.data_type]:
            listing.append(f"{source} AS {quote(column.name)}")
        else:
            listing.append(f"CAST({source} AS {SQL_TYPES[column.data_type]}) AS {quote(column.name)}")
    return f"(SELECT {', '.join(listing)} FROM {quote(schema)}.{quote(table)})"


def model_catalog(model: SemanticModel, missing: dict[str, str]) -> Catalog:
    """Tables and their visible columns, relationships and measures, as the model describes them."""
    tables = [
        TableInfo(
            name=t.name,
            description=t.description,
            columns=[
                ColumnInfo(name=c.name, type=c.data_type, description=c.description)
                for c in t.columns.values()
                if not c.hidden
            ],
        )
        for key, t in model.tables.items()
        if not t.hidden and key not in missing
    ]
    relationships = [
        ForeignKey(
            table=r.from_table,
            columns=(r.from_column,),
            ref_table=r.to_table,
            ref_columns=(r.to_column,),
            source="declared",
        )
        for r in model.relationships
        if r.active
    ]
    measures = [
        MeasureInfo(
            name=m.name,
            table=m.table,
            expression=m.expression,
            description=m.description,
            format=m.format_string,
        )
        for m in model.measures.values()
        if not m.hidden
    ]
    unavailable = [UnavailableTable(name=model.tables[k].name, reason=why) for k, why in missing.items()]
    return Catalog(tables=tables, relationships=relationships, measures=measures, unavailable=unavailable)
