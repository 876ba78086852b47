"""A data source as engines see it: where the data is and how the model should treat it.

One model per kind of source, each with only its own fields, so a misplaced field (`http_path` on
a Synapse source) is reported rather than ignored. `Source` is their union; `SourceSpec` is the
same union as a sources file spells it, told apart by `kind` (a source without one is local).
Later kinds (powerbi, cosmos, aisearch, model folders, graph files, index folders) add a model
here and an opener in `registry.py`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from loom.engines.graph.cosmos.hosts import endpoint_url
from loom.engines.kql.adx.hosts import CLOUDS, cluster_url
from loom.engines.search.aisearch.hosts import service_url


class VerifiedQuery(BaseModel, frozen=True):
    """A question a person has checked the answer query for."""

    question: str
    query: str
    language: str = "sql"
    dialect: str | None = None


class SourceBase(BaseModel):
    """What every kind of source has: a name, how to describe it to the model, verified queries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    instructions: str = ""
    verified_queries: tuple[VerifiedQuery, ...] = ()
    allow: tuple[str, ...] = Field(
        (),
        description="roles that may use the source: Entra app roles, or roles LOOM_GROUP_ROLES gives "
        "to groups; `*` for every signed-in user of its tenants. None listed: nobody, under sign-in",
    )
    tenants: tuple[str, ...] = Field(
        (), description="tenant ids whose users may use it (`*` for any); default: the server's own"
    )
    default: bool = Field(
        True,
        description="offered to the agent when a question names no sources; false: only when named "
        "(a second view of data another source already answers, so a model is not left to pick)",
    )
    languages: tuple[str, ...] = Field(
        (),
        description="the query languages the agent offers for it (default: its kind's first, `sql` "
        "for a local source, which can also answer `kql`); `loom query` takes any it answers",
    )

    @cached_property
    def connection_key(self) -> tuple[object, ...]:
        """What identifies the data behind the source (not how it is described to the model)."""
        described = set(SourceBase.model_fields)
        return (self.name, *(v for k, v in self.model_dump().items() if k not in described))

    def dialect_for(self, language: str) -> str:
        """The dialect the model writes `language` in for this source (a language's own name when it
        has no dialects)."""
        return language

    def verified_for(self, language: str) -> tuple[VerifiedQuery, ...]:
        """The verified queries written in `language`: a question is matched only against these."""
        return tuple(v for v in self.verified_queries if v.language == language)


class DuckDBSource(SourceBase):
    """A local source: a .duckdb or .sqlite file, or a folder of Delta/Parquet/CSV tables."""

    kind: Literal["duckdb"] = "duckdb"
    location: str = Field(description="a .duckdb/.sqlite file or a folder of Delta/Parquet/CSV tables")
    dialect: str = Field("duckdb", description="the SQL dialect the model writes (translated to DuckDB)")

    def dialect_for(self, language: str) -> str:
        return self.dialect if language == "sql" else language


class SynapseSource(SourceBase):
    """Synapse Serverless SQL (T-SQL), signed in with Entra ID."""

    kind: Literal["synapse"]
    location: str = Field(description="the serverless SQL endpoint host")
    database: str = Field(description="the serverless database")
    default_schema: str = Field("dbo", description="schema for unqualified table names")

    def dialect_for(self, language: str) -> str:
        return "tsql" if language == "sql" else language


class DatabricksSource(SourceBase):
    """Databricks SQL over Unity Catalog, with a personal access token or Entra ID."""

    kind: Literal["databricks"]
    location: str = Field(description="the workspace host")
    http_path: str = Field(description="the SQL warehouse's HTTP path")
    catalog: str = Field(description="the Unity Catalog catalog")
    schemas: tuple[str, ...] = Field((), description="schemas to expose (default: all)")
    default_schema: str = Field("default", description="schema for unqualified table names")

    def dialect_for(self, language: str) -> str:
        return "databricks" if language == "sql" else language


# Kusto entity names: letters, digits, `_`, `-`, `.` and spaces (up to 1,024). Held to that here so
# the engine can name the database in its own `.show database` command without any quoting issue.
_KUSTO_NAME = re.compile(r"[A-Za-z0-9_\-. ]{1,1024}")


class CloudSourceBase(SourceBase):
    """A source in a named Azure cloud, whose endpoint is checked against that cloud's domains."""

    cloud: str | None = Field(
        None,
        description="the service's Azure cloud (AzureCloud or AzureUSGovernment); default: the "
        "server's. With Entra sign-in it must match the server's: the token is the server's cloud's",
    )

    @field_validator("cloud")
    @classmethod
    def _known_cloud(cls, value: str | None) -> str | None:
        if value is not None and value not in CLOUDS:
            raise ValueError(f"cloud must be one of: {', '.join(CLOUDS)}")
        return value


class AdxSource(CloudSourceBase):
    """An Azure Data Explorer database (KQL), signed in with Entra ID."""

    kind: Literal["adx"]
    location: str = Field(description="the cluster URI, https://<cluster>.<region>.kusto.windows.net")
    database: str = Field(description="the database queries run in")

    @field_validator("database")
    @classmethod
    def _database_name(cls, value: str) -> str:
        if not _KUSTO_NAME.fullmatch(value) or not value.strip():
            raise ValueError("a database name has letters, digits, '_', '-', '.' and spaces only")
        return value

    @model_validator(mode="after")
    def _allowed_cluster(self) -> AdxSource:
        """A cluster outside the Kusto domains is reported when the file loads, not used."""
        cluster_url(self.location, self.cloud)
        return self


def _kind(value: object) -> str:
    """The tag of a source: its `kind`, or duckdb for a source that names none."""
    if isinstance(value, dict):
        return str(value.get("kind", "duckdb"))
    return str(getattr(value, "kind", "duckdb"))


class ModelSource(SourceBase):
    """A Power BI semantic model in a local folder (TMSL `model.bim`, a TMDL `definition/` folder,
    or a PBIP project), its tables beside it (`tables/`) or in a lakehouse (Direct Lake)."""

    kind: Literal["model"]
    location: str = Field(description="the model's folder")
    lakehouse: str | None = Field(
        None, description="the lakehouse folder its Direct Lake tables are in (default: the nearest above)"
    )


class PowerBISource(SourceBase):
    """A Power BI semantic model (dataset) in the service, asked in DAX through executeQueries,
    signed in with Entra ID (the server's identity needs Build permission on the dataset)."""

    kind: Literal["powerbi"]
    location: str = Field(description="the workspace (group) id, or `me` for My workspace")
    dataset_id: str = Field(description="the semantic model's (dataset's) id")
    environment: Literal["commercial", "gcc", "gcc-high", "dod"] = Field(
        "commercial",
        description="the Power BI cloud; gcc, gcc-high and dod need LOOM_AZURE_CLOUD=AzureUSGovernment",
    )
    impersonated_user: str | None = Field(
        None,
        description="a UPN whose row-level security the queries run under "
        "(executeQueries' impersonatedUserName)",
    )
    allow_info_functions: bool = Field(
        False,
        description="let queries call INFO.* functions (the model's metadata, its security roles "
        "among them); DMVs and XMLA commands are never sent",
    )


class GraphSource(SourceBase):
    """A local graph, asked in Gremlin: a GraphSON file, or a folder holding a nodes and an edges
    CSV file in the air-routes form (`~id,~label,name:type,…`; `~id,~from,~to,~label,…`)."""

    kind: Literal["graph"]
    location: str = Field(description="a GraphSON file, or a folder with *nodes.csv and *edges.csv")


# Cosmos DB resource ids: up to 255 characters, none of / \\ # ?, not ending in a space. Held to
# that here because the database and graph go into the sign-in user name, /dbs/<db>/colls/<graph>.
_COSMOS_ID = re.compile(r"[^/\\#?\x00-\x1f]{1,255}")


class CosmosSource(CloudSourceBase):
    """A Cosmos DB for Apache Gremlin graph, read with Gremlin strings; signed in with the
    account's key (from an environment variable) or with Entra ID."""

    kind: Literal["cosmos"]
    location: str = Field(
        description="the account's Gremlin endpoint, wss://<account>.gremlin.cosmos.azure.com:443/"
    )
    database: str = Field(description="the Gremlin database")
    graph: str = Field(description="the graph (container) in it")
    partition_key: str | None = Field(
        None,
        description="the graph's partition key property (its path without the '/'): the model is "
        "told that a traversal starting from has('<key>', value) reads one partition",
    )
    key_env: str | None = Field(
        None,
        description="the environment variable holding the account key (use a read-only key); "
        "without it, the server's Entra ID credential signs in (a role with the data action "
        "Microsoft.DocumentDB/databaseAccounts/gremlin/containers/executeQuery)",
    )

    @field_validator("database", "graph")
    @classmethod
    def _cosmos_id(cls, value: str) -> str:
        if not _COSMOS_ID.fullmatch(value) or value.endswith(" "):
            raise ValueError(
                "a Cosmos DB name has up to 255 characters, none of / \\ # ?, and no trailing space"
            )
        return value

    @field_validator("key_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                "key_env names an environment variable (letters, digits, '_'), not the key itself"
            )
        return value

    @model_validator(mode="after")
    def _allowed_endpoint(self) -> CosmosSource:
        """An endpoint outside the Cosmos DB Gremlin domains is reported when the file loads."""
        endpoint_url(self.location, self.cloud)
        return self


class IndexSource(SourceBase):
    """A local search index: a folder `loom index build` made (tantivy BM25, optional vectors)."""

    kind: Literal["index"]
    location: str = Field(description="an index folder made by `loom index build`")


class AiSearchSource(CloudSourceBase):
    """An Azure AI Search index, searched by the service (hybrid with a vector field, semantic
    ranker with a semantic configuration); a query key from an environment variable, or Entra ID."""

    kind: Literal["aisearch"]
    location: str = Field(description="the service endpoint, https://<service>.search.windows.net")
    index: str = Field(description="the index searched")
    key_env: str | None = Field(
        None, description="the environment variable holding a query key; without it, Entra ID"
    )
    id_field: str = "id"
    title_field: str = "title"
    text_field: str = "content"
    vector_field: str | None = Field(None, description="a vector field with an integrated vectorizer")
    semantic_configuration: str | None = None

    @model_validator(mode="after")
    def _allowed_endpoint(self) -> AiSearchSource:
        service_url(self.location, self.cloud)
        return self


Source = (
    DuckDBSource
    | SynapseSource
    | DatabricksSource
    | AdxSource
    | ModelSource
    | PowerBISource
    | GraphSource
    | CosmosSource
    | IndexSource
    | AiSearchSource
)
KINDS: tuple[str, ...] = tuple(
    model.model_fields["kind"].annotation.__args__[0] for model in get_args(Source)
)

# As a sources file spells it: the kind picks the model, and one that names none is local.
SourceSpec = Annotated[
    Annotated[DuckDBSource, Tag("duckdb")]
    | Annotated[SynapseSource, Tag("synapse")]
    | Annotated[DatabricksSource, Tag("databricks")]
    | Annotated[AdxSource, Tag("adx")]
    | Annotated[ModelSource, Tag("model")]
    | Annotated[PowerBISource, Tag("powerbi")]
    | Annotated[GraphSource, Tag("graph")]
    | Annotated[CosmosSource, Tag("cosmos")]
    | Annotated[IndexSource, Tag("index")]
    | Annotated[AiSearchSource, Tag("aisearch")],
    Discriminator(
        _kind,
        custom_error_type="unknown_kind",
        custom_error_message=f"kind must be one of: {', '.join(KINDS)}",
    ),
]
