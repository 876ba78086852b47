"""What every tool is: typed args, typed result, a declared effect, and `async def run(ctx, args)`.

A tool module defines `XArgs`, `XResult` and `run`, then `TOOL = define(run, effect=...)`; the
docstring of `run` is the description the model reads, and the args model is its JSON schema. A
data tool also names the query language it needs (it is offered only when a source of the turn
answers that language) and its guidance, the lines of the system prompt that say when to call it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Generic, ParamSpec, Protocol, TypeVar, get_type_hints

from pydantic import BaseModel

from loom.engines.contracts import Embedder, Engine, ResultSet, Retriever
from loom.engines.registry import answering
from loom.engines.sources import Source
from loom.identity import Principal
from loom.settings import DEFAULTS, Settings
from loom.tools.result_room import TurnRoom
from loom.tools.schema_prompt import DEFAULT_VIEW, SchemaView

if TYPE_CHECKING:
    from loom.tools.scheduler import QueryScheduler

T = TypeVar("T")
P = ParamSpec("P")

JsonObject = dict[str, object]  # a JSON Schema / function declaration, as sent to the model


class Effect(StrEnum):
    READ = "read"
    WRITE = "write"
    DESTRUCTIVE = "destructive"


@dataclass(frozen=True)
class QueryLimits:
    """What a data tool may spend on one question, and how it shows the model the schema. The
    defaults are Settings' (one place)."""

    max_rows: int
    max_bytes: int
    timeout_s: float
    max_repairs: int
    verified_threshold: float
    schema: SchemaView = DEFAULT_VIEW
    repair_empty: bool = True  # an empty result is sent back to the model once (`querygen`)

    @classmethod
    def of(cls, settings: Settings) -> QueryLimits:
        return cls(
            max_rows=settings.query_max_rows,
            max_bytes=settings.query_max_bytes,
            timeout_s=settings.query_timeout_s,
            max_repairs=settings.max_repairs,
            verified_threshold=settings.verified_match_threshold,
            schema=SchemaView(settings.schema_form, settings.schema_link_above_columns),
            repair_empty=settings.repair_empty_results,
        )


class InnerModel(Protocol):
    """The slice of a model a tool may use: one non-streaming completion over plain messages."""

    async def complete_text(self, system: str, user: str) -> str: ...


class EngineProvider(Protocol):
    """Engines by source and language, and document search by source (the agent's `EnginePool`)."""

    def engine(self, source: Source, language: str) -> Engine: ...

    def retriever(self, source: Source) -> Retriever: ...


@dataclass
class ToolContext:
    principal: Principal
    sources: Sequence[Source]
    engines: EngineProvider
    model: InnerModel | None = None
    limits: QueryLimits = field(default_factory=lambda: QueryLimits.of(DEFAULTS))
    embedder: Embedder | None = None  # for schema linking, when an embedding model is configured
    scheduler: QueryScheduler | None = None  # where queries run; None: the loop's default threads
    asked: str = ""  # the user's own message this turn (a tool may fall back on its words)
    results: TurnRoom | None = None  # the turn's room for query results; None: each query's own bound
    cited: list[str] = field(default_factory=list)  # passages handed out this turn: [n] is n - 1 here

    async def run_query(self, work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking engine call off the event loop, on the scheduler when there is one."""
        if self.scheduler is None:
            return await asyncio.to_thread(work, *args, **kwargs)
        return await self.scheduler.run(self.principal, work, *args, **kwargs)

    async def run_on(self, source: str, work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`run_query`, holding one of `source`'s places as well (the scheduler's per-source share)."""
        if self.scheduler is None:
            return await asyncio.to_thread(work, *args, **kwargs)
        return await self.scheduler.run_on(source, self.principal, work, *args, **kwargs)

    def source(self, name: str | None, language: str | None = None) -> Source:
        """The named source, else the first of the conversation's that answers `language`."""
        usable = answering(self.sources, language)
        if name is None and usable:
            return usable[0]
        found = next((s for s in usable if s.name == name), None)
        if found is not None:
            return found
        what = f"{language} " if language else ""
        known = ", ".join(s.name for s in usable) or "none"
        if name is None:
            raise ToolError("unknown_source", f"no source of this conversation answers {what}queries")
        raise ToolError(
            "unknown_source", f"unknown {what}source {name!r}; this conversation can use: {known}"
        )


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

    def citations(self) -> list[dict[str, object]]:
        """The passages an answer may cite, `[n]` each, for a client to show as links."""
        return []


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
    language: str | None = None  # the query language a data tool needs; None for other tools
    guidance: str = ""  # what the system prompt says about when and how to call it

    def schema(self, sources: Sequence[str] = ()) -> JsonObject:
        """The OpenAI function-tool declaration; a `source` argument lists the sources it may name.

        Built once per set of sources: it is sent with every model call."""
        return _schema(self.name, self.description, self.args_model, tuple(sources))

    def offered(self, sources: Sequence[Source]) -> bool:
        """Whether the turn's sources let the model use it: a data tool needs one answering its language."""
        return bool(self.usable(sources)) or self.language is None

    def usable(self, sources: Sequence[Source]) -> list[Source]:
        """The sources this tool can query: those answering its language (all, for other tools)."""
        return answering(sources, self.language)

    def declaration(self, sources: Sequence[Source]) -> JsonObject:
        """The schema for a turn over `sources`: its `source` argument names only those it can query."""
        return self.schema([s.name for s in self.usable(sources)])

    def parse_args(self, arguments: str) -> A:
        raw = json.loads(arguments or "{}")
        return self.args_model.model_validate(raw)


@lru_cache(maxsize=256)
def _schema(name: str, description: str, args_model: type[BaseModel], sources: tuple[str, ...]) -> JsonObject:
    params = _without_titles(args_model.model_json_schema())
    assert isinstance(params, dict)
    properties = params.get("properties")
    if sources and isinstance(properties, dict) and isinstance(properties.get("source"), dict):
        # The model picks from the turn's sources rather than guessing a name.
        # No `default: null` beside an enum that cannot hold it: the argument is simply optional.
        chosen = {k: v for k, v in _not_null(properties["source"]).items() if k != "default"}
        properties["source"] = {**chosen, "enum": list(sources)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


def _not_null(prop: JsonObject) -> JsonObject:
    """`{"anyOf": [{"type": "string"}, {"type": "null"}], …}` → `{"type": "string", …}`."""
    choices = prop.get("anyOf")
    options = (
        [o for o in choices if isinstance(o, dict) and o.get("type") != "null"]
        if isinstance(choices, list)
        else []
    )
    if len(options) != 1:
        return prop
    return {**{k: v for k, v in prop.items() if k != "anyOf"}, **options[0]}


def _without_titles(node: object) -> object:
    """Pydantic's titles repeat the property names: tokens the model pays for on every call."""
    if isinstance(node, dict):
        return {k: _without_titles(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_without_titles(v) for v in node]
    return node


def define(
    run: Callable[[ToolContext, A], Awaitable[R]],
    *,
    effect: Effect,
    name: str = "",
    language: str | None = None,
    guidance: str = "",
) -> Tool[A, R]:
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
        language=language,
        guidance=inspect.cleandoc(guidance),
    )
