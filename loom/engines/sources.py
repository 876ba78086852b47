"""A data source as engines see it: where the data is and how the model should treat it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

Kind = Literal["duckdb", "synapse", "databricks"]
# The dialect the model writes for each kind of source, unless the source says otherwise.
DIALECT_OF_KIND: dict[str, str] = {"duckdb": "duckdb", "synapse": "tsql", "databricks": "databricks"}


class VerifiedQuery(BaseModel, frozen=True):
    """A question a person has checked the answer query for."""

    question: str
    query: str
    language: Literal["sql", "kql", "dax", "gremlin"] = "sql"
    dialect: str | None = None


class Source(BaseModel, frozen=True):
    name: str
    kind: Kind = "duckdb"
    location: str = Field(
        description="duckdb: a .duckdb/.sqlite file or a folder of Delta/Parquet/CSV tables; synapse: the "
        "serverless SQL endpoint host; databricks: the workspace host"
    )
    description: str = ""
    instructions: str = ""
    dialect: str = "duckdb"
    verified_queries: tuple[VerifiedQuery, ...] = ()
    database: str | None = Field(None, description="synapse: the serverless database")
    http_path: str | None = Field(None, description="databricks: the SQL warehouse's HTTP path")
    catalog: str | None = Field(None, description="databricks: the Unity Catalog catalog")
    schemas: tuple[str, ...] = Field((), description="databricks: schemas to expose (default: all)")
    default_schema: str | None = Field(None, description="schema for unqualified table names")

    @model_validator(mode="before")
    @classmethod
    def _dialect_from_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dialect" not in data:
            # An unknown kind gets no dialect here and is reported by the `kind` field's own check.
            return {**data, "dialect": DIALECT_OF_KIND.get(data.get("kind", "duckdb"), "duckdb")}
        return data

    @property
    def is_local(self) -> bool:
        return self.kind == "duckdb"

    @property
    def connection_key(self) -> tuple[object, ...]:
        """What identifies the data behind the source (not how it is described to the model)."""
        where = (self.location, self.database, self.http_path, self.catalog, self.schemas)
        return (self.name, self.kind, *where)
