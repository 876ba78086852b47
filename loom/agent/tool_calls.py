"""Running the tool calls of one model reply: gate each, run the allowed ones in parallel.

A tool that fails never fails the turn: its error becomes the tool result, so the model can read
it, adjust, or tell the user.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import ValidationError

from loom.agent.approval import ApprovalGate, Decision
from loom.agent.budget import BudgetExhausted
from loom.agent.model import ChatMessage, ToolCall
from loom.engines.errors import public_text
from loom.engines.registry import answers
from loom.tools.base import Effect, Tool, ToolContext, ToolError, ToolResult

log = logging.getLogger(__name__)
Status = Literal["ok", "error", "awaiting_approval", "denied"]


@dataclass(frozen=True)
class CallOutcome:
    call: ToolCall
    status: Status
    content: str  # what the model reads as the tool result
    effect: Effect | None = None
    result: ToolResult | None = None

    def as_message(self) -> ChatMessage:
        return ChatMessage(role="tool", content=self.content, tool_call_id=self.call.id)

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"tool": self.call.name, "status": self.status}
        if self.result is not None:
            meta["result"] = _stored(self.result.model_dump(mode="json"))
        return meta


# Of a result's rows, what the conversation keeps: the turn streamed up to the 8 MiB result bound,
# but one user storing that on every turn filled the disk at 15 MiB/s (probe 12: R12-5).
MAX_STORED_ROWS_BYTES = 512 * 1024


def _stored(result: dict[str, Any]) -> dict[str, Any]:
    """The result as the conversation keeps it: its rows cut to `MAX_STORED_ROWS_BYTES`, saying
    how many were kept of how many."""
    table = result.get("result")
    if not isinstance(table, dict):
        return result
    rows = table.get("rows")
    if not isinstance(rows, list) or len(json.dumps(rows, ensure_ascii=False)) <= MAX_STORED_ROWS_BYTES:
        return result
    kept, size = [], 2
    for row in rows:
        size += len(json.dumps(row, ensure_ascii=False).encode()) + 2  # and the ", " after it
        if size > MAX_STORED_ROWS_BYTES:
            break
        kept.append(row)
    stored = {**table, "rows": kept, "stored_rows": {"kept": len(kept), "of": len(rows)}}
    return {**result, "result": stored}


def _error(call: ToolCall, code: str, message: str, effect: Effect | None = None) -> CallOutcome:
    content = json.dumps({"error": {"code": code, "message": message}})
    return CallOutcome(call=call, status="error", content=content, effect=effect)


def _held(call: ToolCall, tool: Tool, decision: Decision) -> CallOutcome:
    if decision is Decision.DENY:
        message = "This action is not allowed for you; it did not run."
        return CallOutcome(call, "denied", json.dumps({"status": "denied", "message": message}), tool.effect)
    message = "This action needs a person's approval; it has not run yet."
    body = json.dumps({"status": "awaiting_approval", "message": message})
    return CallOutcome(call, "awaiting_approval", body, tool.effect)


async def _invoke(ctx: ToolContext, tool: Tool, call: ToolCall) -> CallOutcome:
    try:
        args = tool.parse_args(call.arguments)
    except (ValueError, ValidationError) as e:
        return _error(
            call, "invalid_arguments", f"arguments for {tool.name} are not valid: {_why(e)}", tool.effect
        )
    try:
        result = await tool.run(ctx, args)
    except ToolError as e:
        return _error(call, e.code, e.message, tool.effect)
    except BudgetExhausted as e:  # the tool's own model call went over the turn's limit: expected
        return _error(call, "budget_exhausted", f"{tool.name} stopped: {e}", tool.effect)
    except Exception as e:  # a bug in a tool must not end the turn; the model reads what failed
        log.exception("tool %s failed", tool.name)  # the whole error, for whoever runs the server
        return _error(call, "tool_failed", f"{type(e).__name__}: {public_text(str(e))}", tool.effect)
    return CallOutcome(call, "ok", result.for_model(), tool.effect, result)


def _why(error: ValueError | ValidationError) -> str:
    """What was wrong with the arguments, each problem by its field, without pydantic's
    boilerplate (the input echoed back, a link to its documentation: probe 34, R34-5)."""
    if not isinstance(error, ValidationError):
        return str(error)
    return "; ".join(f"{'.'.join(map(str, p['loc'])) or 'arguments'}: {p['msg']}" for p in error.errors())


async def _one(
    ctx: ToolContext, tools: Mapping[str, Tool], gate: ApprovalGate, call: ToolCall
) -> CallOutcome:
    tool = tools.get(call.name)
    if tool is None:
        return _error(call, "unknown_tool", f"there is no tool {call.name!r}; tools: {', '.join(tools)}")
    decision = await gate.decide(ctx.principal, tool, call)
    if decision is not Decision.RUN:
        return _held(call, tool, decision)
    return await _invoke(ctx, tool, call)


def to_answering_tools(
    calls: Sequence[ToolCall], ctx: ToolContext, tools: Mapping[str, Tool]
) -> tuple[ToolCall, ...]:
    """The calls, each data tool asked of a source that does not answer its language sent to the
    one offered tool whose language that source answers: the local 1.5B model asked `nl2sql` of
    the KQL source `storms`, read "unknown sql source", and told the user the data was not there.
    The question and source are the model's; only the language was wrong."""
    return tuple(replace(c, name=_answering_tool(c, ctx, tools)) for c in calls)


def _answering_tool(call: ToolCall, ctx: ToolContext, tools: Mapping[str, Tool]) -> str:
    tool = tools.get(call.name)
    named = _named_source(call.arguments)
    source = next((s for s in ctx.sources if s.name == named), None)
    if tool is None or tool.language is None or source is None or answers(source, tool.language):
        return call.name
    other = [t.name for t in tools.values() if t.language is not None and answers(source, t.language)]
    return other[0] if len(other) == 1 else call.name


def _named_source(arguments: str) -> object:
    try:
        parsed = json.loads(arguments)
    except (json.JSONDecodeError, RecursionError):
        return None
    return parsed.get("source") if isinstance(parsed, dict) else None


async def run_calls(
    ctx: ToolContext, tools: Mapping[str, Tool], gate: ApprovalGate, calls: Sequence[ToolCall]
) -> list[CallOutcome]:
    """Outcomes in the order of `calls`; independent calls run concurrently."""
    return list(await asyncio.gather(*(_one(ctx, tools, gate, c) for c in calls)))
