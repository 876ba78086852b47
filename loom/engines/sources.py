"""A data source as engines see it: where the data is and how the model should treat it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class VerifiedQuery(BaseModel, frozen=True):
    """A question a person has checked the answer query for."""

    question: str
    query: str
    language: Literal["sql", "kql", "dax", "gremlin"] = "sql"
    dialect: str | None = None


class Source(BaseModel, frozen=True):
    name: str
    kind: Literal["duckdb"] = "duckdb"
    location: str = Field(description="A .duckdb/.sqlite file or a folder of Delta/Parquet/CSV tables")
    description: str = ""
    instructions: str = ""
    dialect: str = "duckdb"
    verified_queries: tuple[VerifiedQuery, ...] = ()
