"""The contracts every engine shares: ResultSet, Problem, Catalog and the Engine protocol."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class Column(BaseModel):
    name: str
    type: str


class ResultSet(BaseModel):
    """What every engine returns and every data tool carries (DESIGN.md, Contracts)."""

    columns: list[Column]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = False
    elapsed_ms: float = 0.0
    engine: str
    query: str


class Problem(BaseModel):
    """One reason a query cannot run; `code` is stable and readable by both the model and the user."""

    code: str
    message: str
    suggestions: list[str] = Field(default_factory=list)


class ColumnInfo(BaseModel):
    name: str
    type: str
    description: str = ""
    sample_values: list[Any] = Field(default_factory=list)


class TableInfo(BaseModel):
    name: str
    columns: list[ColumnInfo]
    description: str = ""
    row_count: int | None = None


class Catalog(BaseModel):
    tables: list[TableInfo]

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

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@runtime_checkable
class Engine(Protocol):
    """One query language over one source; embedded and Azure backends both implement it."""

    name: str
    dialect: str

    def execute(
        self, query: str, *, max_rows: int, timeout_s: float, now: dt.datetime | None = None
    ) -> ResultSet: ...

    def validate(self, query: str) -> list[Problem]: ...

    def catalog(self) -> Catalog: ...


def json_safe(value: Any) -> Any:
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
