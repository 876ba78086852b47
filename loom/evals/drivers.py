"""Where a suite's turns run: the agent in this process, its data tool directly, or a Loom server
over HTTP.

Either way a turn is the chat stream's events as JSON dicts, so scoring does not care which.
In process, each turn's model tokens are counted by wrapping the model (the stream does not carry
them); over HTTP they are not known.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from loom.agent.approval import EffectGate
from loom.agent.budget import InnerModel, TurnBudget
from loom.agent.loop import Agent
from loom.agent.model import ChatMessage, ChatModel, ModelError, ModelEvent, ModelReply, ToolCall
from loom.agent.reply_bounds import BoundedModel
from loom.agent.reply_guard import Guard, guarded
from loom.agent.tool_calls import run_calls
from loom.agent.turns import TurnRequest
from loom.evals.suite import Case
from loom.identity import Principal
from loom.tools.base import ToolContext

EVAL_PRINCIPAL = Principal(tenant_id="loom-eval", user_id="loom-eval", roles=("Loom.User",))
_TOKENS: ContextVar[list[int] | None] = ContextVar("loom_eval_tokens", default=None)


class Driver(Protocol):
    def turn(
        self, conversation_id: str | None, message: str, sources: list[str] | None
    ) -> AsyncIterator[Any]:
        """The turn's events, as the chat stream's JSON objects."""
        ...


def count_tokens() -> list[int]:
    """Start counting the model tokens spent in this task (and tasks it starts); read `[0]` after."""
    counter = [0]
    _TOKENS.set(counter)
    return counter


def _spend(usage: dict[str, Any]) -> None:
    counter, total = _TOKENS.get(), usage.get("total_tokens")
    if counter is not None and isinstance(total, int):
        counter[0] += total


@dataclass
class MeteredModel:
    """A ChatModel that adds each reply's tokens to the counter of the case it was called for."""

    inner: ChatModel
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.inner.name

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> AsyncIterator[ModelEvent]:
        async for event in self.inner.stream(messages, tools):
            if isinstance(event, ModelReply):
                _spend(event.usage)
            yield event

    async def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> ModelReply:
        reply = await self.inner.complete(messages, tools)
        _spend(reply.usage)
        return reply


@dataclass
class InProcess:
    agent: Agent

    async def turn(
        self, conversation_id: str | None, message: str, sources: list[str] | None
    ) -> AsyncIterator[Any]:
        request = TurnRequest(conversation_id=conversation_id, message=message, sources=sources)
        async for event in self.agent.run_turn(EVAL_PRINCIPAL, request):
            yield event.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass
class DirectTool:
    """Each question straight to the data tool for the case's source, without the chat model choosing:
    what a benchmark of the query pipeline (linking, examples, repair) measures."""

    agent: Agent

    async def turn(
        self, conversation_id: str | None, message: str, sources: list[str] | None
    ) -> AsyncIterator[Any]:
        chosen = [s for name, s in self.agent.sources().items() if sources is None or name in sources][:1]
        tool = next((t for t in self.agent.tools if t.language and t.usable(chosen)), None)
        yield {"type": "RUN_STARTED", "threadId": conversation_id or "direct", "runId": "direct"}
        if tool is None:
            yield {"type": "RUN_ERROR", "code": "no_tool", "message": "no data tool answers this source"}
            return
        arguments = json.dumps({"question": message, "source": chosen[0].name})
        call = ToolCall(id="call_direct", name=tool.name, arguments=arguments)
        budget = TurnBudget(self.agent.limits.max_model_calls, self.agent.limits.max_tool_rounds)
        ctx = ToolContext(
            principal=EVAL_PRINCIPAL,
            sources=chosen,
            engines=self.agent.engines,
            model=InnerModel(BoundedModel(self.agent.model, self.agent.bounds), budget),
            limits=self.agent.query_limits,
            embedder=self.agent.embedder,
            scheduler=self.agent.scheduler,
        )
        (outcome,) = await run_calls(ctx, {tool.name: tool}, EffectGate(), [call])
        yield {"type": "TOOL_CALL_START", "toolCallId": call.id, "toolCallName": tool.name}
        yield {"type": "TOOL_CALL_ARGS", "toolCallId": call.id, "delta": arguments}
        yield {"type": "TOOL_CALL_RESULT", "toolCallId": call.id, "content": outcome.content}


@dataclass
class FunctionCalls:
    """A function-calling case (BFCL): the question and the case's own functions go to the model
    once, and its calls are read the way the agent reads them (through the tools API, or written
    as text: the reply guard), reported, and never run."""

    model: ChatModel
    case: Case

    async def turn(
        self, conversation_id: str | None, message: str, sources: list[str] | None
    ) -> AsyncIterator[Any]:
        functions = self.case.functions
        offered = [{"type": "function", "function": f} for f in functions]
        messages = [ChatMessage(role="system", content=self.case.system)] if self.case.system else []
        messages.append(ChatMessage(role="user", content=message))
        guard = Guard(
            offered=[str(f.get("name")) for f in functions], routes={}, question=message, ran=frozenset()
        )
        yield {"type": "RUN_STARTED", "threadId": conversation_id or "calls", "runId": "calls"}
        reply = ModelReply()
        try:
            async for event in guarded(self.model.stream(messages, offered), guard):
                reply = event if isinstance(event, ModelReply) else reply
        except ModelError as e:
            yield {"type": "RUN_ERROR", "code": "model_error", "message": str(e)}
            return
        for call in reply.tool_calls:
            yield {"type": "TOOL_CALL_START", "toolCallId": call.id, "toolCallName": call.name}
            yield {"type": "TOOL_CALL_ARGS", "toolCallId": call.id, "delta": call.arguments}
        if reply.text:
            yield {"type": "TEXT_MESSAGE_CONTENT", "delta": reply.text}


@dataclass
class OverHttp:
    """A running server's `POST /v1/chat`; `token` is a bearer token when it signs users in."""

    client: httpx.AsyncClient
    token: str | None = None

    async def turn(
        self, conversation_id: str | None, message: str, sources: list[str] | None
    ) -> AsyncIterator[Any]:
        body: dict[str, Any] = {"message": message, "conversation_id": conversation_id, "sources": sources}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {k: v for k, v in body.items() if v is not None}
        try:
            async with self.client.stream("POST", "/v1/chat", json=body, headers=headers) as response:
                if response.status_code != 200:
                    yield _http_error(response.status_code, await response.aread())
                    return
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line[6:])
        except httpx.TransportError as e:  # the server went away mid-run: this case fails, the run goes on
            yield {"type": "RUN_ERROR", "code": "unreachable", "message": f"{type(e).__name__}: {e}"}


def _http_error(status: int, body: bytes) -> dict[str, Any]:
    """The RUN_ERROR a refused request ends the turn with: the API's error, or the status and text."""
    try:
        error = json.loads(body).get("error", {})
    except (ValueError, AttributeError):  # not the API's JSON (a proxy's page)
        error = {}
    message = error.get("message") or body[:300].decode(errors="replace")
    return {"type": "RUN_ERROR", "code": error.get("code", f"http_{status}"), "message": message}
