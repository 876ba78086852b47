"""What every tool is: typed args, typed result, a declared effect, and `async def run(ctx, args)`.

A tool module defines `XArgs`, `XResult` and `run`, then `TOOL = define(run, effect=...)`; the
docstring of `run` is the description the model reads, and the args model is its JSON schema.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, Generic, Protocol, TypeVar, get_type_hints

from pydantic import BaseModel

from loom.engines.contracts import ResultSet
from loom.engines.sources import Source
from loom.identity import Principal


class Effect(StrEnum):
    READ = "read"
    WRITE = "write"
    DESTRUCTIVE = "destructive"


class QueryLimits(BaseModel, frozen=True):
    max_rows: int = 1000
    timeout_s: float = 30.0
    max_repairs: int = 2
    verified_threshold: float = 0.8


class InnerModel(Protocol):
    """The slice of a model a tool may use: one non-streaming completion over plain messages."""

    async def complete_text(self, system: str, user: str) -> str: ...


class EngineProvider(Protocol):
    def sql_engine(self, source: Source) -> Any: ...


@dataclass
class ToolContext:
    principal: Principal
    sources: Sequence[Source]
    engines: EngineProvider
    model: InnerModel | None = None
    limits: QueryLimits = field(default_factory=QueryLimits)
    embedder: Any = None  # an `Embedder` for schema linking, when an embedding model is configured

    def source(self, name: str | None) -> Source:
        if name is None:
            return self.sources[0]
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources)
        raise ToolError("unknown_source", f"unknown source {name!r}; this conversation can use: {known}")


class ToolError(Exception):
    """A failure the model should read and can act on (it becomes the tool result)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ToolResult(BaseModel):
    """Base for results. `for_model` is what the model reads; `result_set` is shown as a table."""

    def for_model(self) -> str:
        return self.model_dump_json()

    def table(self) -> ResultSet | None:
        return None

    def shown_query(self) -> str | None:
        """The query to show the user, when it differs from the one the engine ran."""
        return None


A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=ToolResult)


@dataclass(frozen=True)
class Tool(Generic[A, R]):
    name: str
    description: str
    effect: Effect
    args_model: type[A]
    result_model: type[R]
    run: Callable[[ToolContext, A], Awaitable[R]]

    def schema(self) -> dict[str, Any]:
        """The OpenAI function-tool declaration (built once: it is sent with every model call)."""
        return _schema(self.name, self.description, self.args_model)

    def parse_args(self, arguments: str) -> A:
        raw = json.loads(arguments or "{}")
        return self.args_model.model_validate(raw)


@lru_cache(maxsize=256)
def _schema(name: str, description: str, args_model: type[BaseModel]) -> dict[str, Any]:
    params = _without_titles(args_model.model_json_schema())
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


def _without_titles(node: Any) -> Any:
    """Pydantic's titles repeat the property names: tokens the model pays for on every call."""
    if isinstance(node, dict):
        return {k: _without_titles(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_without_titles(v) for v in node]
    return node


def define(run: Callable[[ToolContext, Any], Awaitable[Any]], *, effect: Effect, name: str = "") -> Tool:
    """Make a Tool from its function: types from the signature; the name from the module when the
    function is the module's `run` (one module per tool), else the function's own name."""
    hints = get_type_hints(run)
    params = list(inspect.signature(run).parameters)
    default = run.__module__.rsplit(".", 1)[-1] if run.__name__ == "run" else run.__name__
    return Tool(
        name=name or default,
        description=inspect.cleandoc(run.__doc__ or ""),
        effect=effect,
        args_model=hints[params[1]],
        result_model=hints["return"],
        run=run,
    )


def schemas(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [t.schema() for t in tools]
