"""Engines by (source kind, query language), opened once per source and shared.

Which engine answers a language on a kind of source is one table, `OPENERS`: a local DuckDB source
answers SQL now and KQL when that language registers its opener, over the same data. Opening is
not free (a local source copies its tables; a cloud one signs in), so the pool opens each engine
on first use and keeps it. Cloud engines get the cloud and the credentials from `CloudAccess`,
which the agent builds from Settings (engines never read configuration themselves).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from azure.core.credentials import TokenCredential

from loom.engines.contracts import Embedder, Engine, QueryError, Retriever
from loom.engines.sources import (
    AdxSource,
    AiSearchSource,
    CosmosSource,
    DatabricksSource,
    DuckDBSource,
    GraphSource,
    IndexSource,
    ModelSource,
    PowerBISource,
    Source,
    SynapseSource,
)
from loom.engines.sql.limits import LocalLimits, size_bytes

if TYPE_CHECKING:
    from loom.engines.dax.engine import DaxEngine
    from loom.engines.graph.engine import GraphEngine
    from loom.engines.kql.engine import KqlEngine
    from loom.engines.sql.duckdb_engine import DuckDBEngine


@dataclass(frozen=True)
class CloudAccess:
    """What engines are opened with: the cloud and credentials for Azure sources, and the limits of
    embedded ones. Built from Settings (`loom.cloud.engine_pool`); engines never read configuration."""

    cloud: str = "AzureCloud"
    credential: Callable[[], TokenCredential] | None = None  # built when first needed
    databricks_token: str | None = None
    local: LocalLimits = LocalLimits()
    # Reads a secret a source names by variable (a Cosmos DB key's `key_env`); none by default.
    secret: Callable[[str], str | None] = lambda _name: None
    # The configured embedding model, for an index built with its vectors (hybrid search).
    embedding_model: str | None = None
    embedder: Callable[[], Embedder | None] = lambda: None

    def token_credential(self) -> TokenCredential:
        if self.credential is None:
            raise QueryError("source_misconfigured", "no Azure credential is configured for cloud sources")
        return self.credential()


# Opens the engine of one language for one kind of source; the table below pairs each opener with
# the kind it narrows the source to.
Opener = Callable[[Source, CloudAccess], Engine]


def _duckdb_sql(source: Source, access: CloudAccess) -> Engine:
    from loom.engines.sql.duckdb_engine import DuckDBEngine

    return _embedded(DuckDBEngine, source, access)


def _duckdb_kql(source: Source, access: CloudAccess) -> Engine:
    from loom.engines.kql.engine import KqlEngine

    return _embedded(KqlEngine, source, access)


def _embedded(
    kind: type[DuckDBEngine | KqlEngine | DaxEngine | GraphEngine], source: Source, access: CloudAccess
) -> Engine:
    """An embedded engine, in a child process of its own unless isolation is off. A source that
    answers SQL and KQL has one child per language: each holds its own copy of the data."""
    assert isinstance(source, DuckDBSource | ModelSource | GraphSource)
    if not access.local.isolated:
        return kind(source, access.local)  # type: ignore[arg-type]
    from loom.engines.isolated.engine import IsolatedEngine, ProcessMemory

    return IsolatedEngine(
        partial(kind, source, access.local),  # type: ignore[arg-type]
        label=source.name if kind.language == "sql" else f"{source.name}/{kind.language}",
        name=kind.name,
        language=kind.language,
        dialect=kind.dialect,
        dialects=kind.dialects,
        memory=ProcessMemory(
            access.local.resident(),
            access.local.address_space(),
            access.local.total(),
            size_bytes(access.local.memory_limit),
        ),
        idle_s=access.local.idle_s,
    )


def _synapse_sql(source: Source, access: CloudAccess) -> Engine:
    from loom.engines.sql.synapse import SynapseEngine

    assert isinstance(source, SynapseSource)
    return SynapseEngine(
        source.location,
        source.database,
        credential=access.token_credential(),
        cloud=access.cloud,
        default_schema=source.default_schema,
    )


def _databricks_sql(source: Source, access: CloudAccess) -> Engine:
    from loom.engines.sql.databricks import DatabricksEngine

    assert isinstance(source, DatabricksSource)
    token = access.databricks_token
    return DatabricksEngine(
        source.location,
        source.http_path,
        catalog=source.catalog,
        schemas=list(source.schemas) or None,
        cloud=access.cloud,
        default_schema=source.default_schema,
        access_token=token,
        credential=None if token else access.token_credential(),
    )


def _adx_kql(source: Source, access: CloudAccess) -> Engine:
    assert isinstance(source, AdxSource)
    cloud = source.cloud or access.cloud
    if cloud != access.cloud:  # the credential signs in at the server's cloud's authority only
        raise QueryError(
            "source_misconfigured",
            f"source {source.name!r} is in {cloud}, but this server signs in to {access.cloud} "
            "(LOOM_AZURE_CLOUD): its token would not be valid there.",
        )
    try:
        from loom.engines.kql.adx.engine import AdxEngine
    except ImportError as e:
        raise QueryError(
            "source_unavailable",
            "ADX needs the azure-kusto-data package: pip install 'loom-data-agents[adx]'.",
        ) from e
    return AdxEngine(source.location, source.database, credential=access.token_credential(), cloud=cloud)


def _model_dax(source: Source, access: CloudAccess) -> Engine:
    from loom.engines.dax.engine import DaxEngine

    return _embedded(DaxEngine, source, access)


def _powerbi_dax(source: Source, access: CloudAccess) -> Engine:
    from loom.engines.dax.powerbi import AZURE_CLOUD_OF, PowerBIEngine

    assert isinstance(source, PowerBISource)
    if AZURE_CLOUD_OF[source.environment] != access.cloud:
        raise QueryError(
            "source_misconfigured",
            f"source {source.name!r} is in Power BI {source.environment}, but this server signs in to "
            f"{access.cloud} (LOOM_AZURE_CLOUD): its token would not be valid there.",
        )
    return PowerBIEngine(
        source.dataset_id,
        workspace_id=None if source.location == "me" else source.location,
        credential=access.token_credential(),
        environment=source.environment,
        impersonated_user=source.impersonated_user,
        allow_info=source.allow_info_functions,
    )


def _graph_gremlin(source: Source, access: CloudAccess) -> Engine:
    from loom.engines.graph.engine import GraphEngine

    return _embedded(GraphEngine, source, access)


def _key(source: str, key_env: str | None, access: CloudAccess) -> str | None:
    """The key in the variable a source names (None: it signs in with Entra ID); refused when the
    variable is named but not set, rather than falling back to another way of signing in."""
    key = access.secret(key_env) if key_env else None
    if key_env and not key:
        raise QueryError(
            "source_misconfigured",
            f"source {source!r} signs in with the key in ${key_env}: ${key_env} is not set.",
        )
    return key


def _cosmos_gremlin(source: Source, access: CloudAccess) -> Engine:
    assert isinstance(source, CosmosSource)
    cloud = source.cloud or access.cloud
    key = _key(source.name, source.key_env, access)
    if key is None and cloud != access.cloud:  # a token is valid only in the server's cloud
        raise QueryError(
            "source_misconfigured",
            f"source {source.name!r} is in {cloud}, but this server signs in to {access.cloud} "
            "(LOOM_AZURE_CLOUD): its token would not be valid there. Give it a key_env, or move it.",
        )
    try:
        from loom.engines.graph.cosmos.engine import CosmosGraphEngine
    except ImportError as e:
        raise QueryError(
            "source_unavailable",
            "Cosmos DB needs the gremlinpython package: pip install 'loom-data-agents[cosmos]'.",
        ) from e
    return CosmosGraphEngine(
        source.location,
        source.database,
        source.graph,
        key=key,
        credential=None if key else access.token_credential(),
        cloud=cloud,
        partition_key=source.partition_key,
    )


# (kind, language) → how to open it. A language package adds its openers here, once.
OPENERS: dict[tuple[str, str], Opener] = {
    ("duckdb", "sql"): _duckdb_sql,
    ("duckdb", "kql"): _duckdb_kql,
    ("synapse", "sql"): _synapse_sql,
    ("databricks", "sql"): _databricks_sql,
    ("adx", "kql"): _adx_kql,
    ("model", "dax"): _model_dax,
    ("powerbi", "dax"): _powerbi_dax,
    ("graph", "gremlin"): _graph_gremlin,
    ("cosmos", "gremlin"): _cosmos_gremlin,
}


def open_retriever(source: Source, access: CloudAccess) -> Retriever:
    """The document search over `source`, which generates no query language (kind index; aisearch
    when its connector lands). QueryError when the kind holds no documents."""
    if isinstance(source, IndexSource):
        from loom.engines.search.engine import LocalIndex
        from loom.engines.search.store import IndexUnreadable

        embedder = access.embedder() if access.embedding_model else None
        try:
            return LocalIndex(Path(source.location).expanduser(), embedder, access.embedding_model)
        except IndexUnreadable as e:
            raise QueryError("source_unavailable", str(e)) from None
    if isinstance(source, AiSearchSource):
        return _aisearch(source, access)
    raise QueryError("not_searchable", f"source {source.name!r} ({source.kind}) holds no documents to search")


# Kinds that hold documents: searched (language "search") by a Retriever, not an Engine.
SEARCHABLE = frozenset({"index", "aisearch"})


def _aisearch(source: AiSearchSource, access: CloudAccess) -> Retriever:
    cloud = source.cloud or access.cloud
    key = _key(source.name, source.key_env, access)
    try:
        from loom.engines.search.aisearch.engine import AzureSearchRetriever
    except ImportError as e:
        raise QueryError(
            "source_unavailable",
            "Azure AI Search needs azure-search-documents: pip install 'loom-data-agents[search]'.",
        ) from e
    return AzureSearchRetriever(
        source.location, source.index, key=key, credential=None if key else access.token_credential(),
        cloud=cloud, fields=(source.id_field, source.title_field, source.text_field),
        vector_field=source.vector_field, semantic_configuration=source.semantic_configuration,
    )  # fmt: skip


def answerable(source: Source) -> tuple[str, ...]:
    """Every query language `source`'s kind answers, in the order they were registered ("search"
    for a kind that holds documents)."""
    if source.kind in SEARCHABLE:
        return ("search",)
    return tuple(language for kind, language in OPENERS if kind == source.kind)


def languages(source: Source) -> tuple[str, ...]:
    """The languages the agent offers for `source`: those it lists, else its kind's first. One
    language per source unless asked for: two tools for the same tables leave a small model
    guessing which to call."""
    known = answerable(source)
    if source.languages:
        return tuple(language for language in source.languages if language in known)
    return known[:1]


def answers(source: Source, language: str) -> bool:
    return language in languages(source)


def answering(sources: Sequence[Source], language: str | None) -> list[Source]:
    """The sources that answer `language` (all of them for None: a tool that needs no language)."""
    return [s for s in sources if language is None or answers(s, language)]


class EnginePool:
    """One engine per (source, language), created on first use; safe to share across threads."""

    def __init__(self, access: CloudAccess | None = None) -> None:
        self._access = access or CloudAccess()
        self._lock = threading.Lock()
        self._engines: dict[tuple[tuple[object, ...], str], Engine] = {}
        self._retrievers: dict[tuple[object, ...], Retriever] = {}

    @property
    def access(self) -> CloudAccess:
        """What engines are opened with (a retriever is opened with it too)."""
        return self._access

    def retriever(self, source: Source) -> Retriever:
        """The document search over `source`, opened on first use and kept (`open_retriever`)."""
        key = source.connection_key
        with self._lock:
            found = self._retrievers.get(key)
        if found is None:
            found = open_retriever(source, self._access)
            with self._lock:
                found = self._retrievers.setdefault(key, found)
        return found

    def engine(self, source: Source, language: str) -> Engine:
        """The engine for `language` on `source`; QueryError `unsupported_language` when none is."""
        key = (source.connection_key, language)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                # Construction is cheap (sources open lazily on first query), so holding the lock
                # here never makes other threads wait on I/O.
                engine = self._engines[key] = self._open(source, language)
            return engine

    def problems(self) -> dict[str, str]:
        """`source/language` → why that engine could not serve at its last try, for each that failed."""
        with self._lock:
            opened = list(self._engines.items())
        found = {f"{key[0][0]}/{key[1]}": engine.problem() for key, engine in opened}
        return {where: problem for where, problem in found.items() if problem}

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
            retrievers, self._retrievers = list(self._retrievers.values()), {}
        for engine in engines:
            engine.close()
        for retriever in retrievers:
            retriever.close()

    def _open(self, source: Source, language: str) -> Engine:
        opener = OPENERS.get((source.kind, language))
        if opener is None:
            known = ", ".join(answerable(source)) or "no query language"
            raise QueryError(
                "unsupported_language",
                f"source {source.name!r} ({source.kind}) answers {known}, not {language}",
            )
        return opener(source, self._access)
