"""Turning what the model and the tools produce into AG-UI events (the chat stream contract)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ag_ui.core import (
    BaseEvent,
    CustomEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)

from loom.agent.model import ModelEvent, ModelReply, TextDelta, ToolCall, ToolCallDelta
from loom.tools.base import ToolResult

RESULT_TABLE = "loom.result_table"
CITATIONS = "loom.citations"
APPROVAL_REQUIRED = "loom.approval_required"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


@dataclass
class _StreamState:
    message_id: str
    text_open: bool = False
    calls_open: list[str] = field(default_factory=list)


def _text(state: _StreamState, delta: TextDelta) -> list[BaseEvent]:
    events: list[BaseEvent] = []
    if not state.text_open:
        state.text_open = True
        events.append(TextMessageStartEvent(message_id=state.message_id, role="assistant"))
    events.append(TextMessageContentEvent(message_id=state.message_id, delta=delta.text))
    return events


def _tool(state: _StreamState, delta: ToolCallDelta) -> list[BaseEvent]:
    events: list[BaseEvent] = []
    if delta.id not in state.calls_open:
        state.calls_open.append(delta.id)
        events.append(
            ToolCallStartEvent(
                tool_call_id=delta.id, tool_call_name=delta.name or "", parent_message_id=state.message_id
            )
        )
    if delta.arguments:
        events.append(ToolCallArgsEvent(tool_call_id=delta.id, delta=delta.arguments))
    return events


def _close(state: _StreamState) -> list[BaseEvent]:
    events: list[BaseEvent] = []
    if state.text_open:
        events.append(TextMessageEndEvent(message_id=state.message_id))
    events.extend(ToolCallEndEvent(tool_call_id=call_id) for call_id in state.calls_open)
    return events


async def model_events(stream: AsyncIterator[ModelEvent]) -> AsyncIterator[BaseEvent | ModelReply]:
    """AG-UI events for one streamed model call, then the complete ModelReply last. A call that
    fails part-way still ends the message and tool calls it opened, so a client is not left
    with a tool call that never ends before the RUN_ERROR."""
    state = _StreamState(message_id=new_id("msg"))
    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                for e in _text(state, event):
                    yield e
            elif isinstance(event, ToolCallDelta):
                for e in _tool(state, event):
                    yield e
            else:
                for e in _close(state):
                    yield e
                yield event
    except Exception:  # not a cancellation: nothing may be yielded then
        for e in _close(state):
            yield e
        raise


def text_events(text: str) -> list[BaseEvent]:
    """A whole assistant message at once (for notices the loop itself writes)."""
    message_id = new_id("msg")
    return [
        TextMessageStartEvent(message_id=message_id, role="assistant"),
        TextMessageContentEvent(message_id=message_id, delta=text),
        TextMessageEndEvent(message_id=message_id),
    ]


def result_events(call: ToolCall, content: str, result: ToolResult | None) -> list[BaseEvent]:
    events: list[BaseEvent] = [
        ToolCallResultEvent(message_id=new_id("msg"), tool_call_id=call.id, content=content, role="tool")
    ]
    table = result.table() if result is not None else None
    if table is not None:
        value = {"tool_call_id": call.id, "tool": call.name, **table.model_dump(mode="json")}
        shown = result.shown_query() if result is not None else None
        if shown:  # the user sees the query as written; the executed one stays alongside
            value |= {"query": shown, "executed_query": table.query}
        events.append(CustomEvent(name=RESULT_TABLE, value=value))
    cited = result.citations() if result is not None else []
    if cited:
        events.append(
            CustomEvent(
                name=CITATIONS, value={"tool_call_id": call.id, "tool": call.name, "citations": cited}
            )
        )
    return events


def approval_event(call: ToolCall, effect: str) -> BaseEvent:
    value = {"tool_call_id": call.id, "tool": call.name, "arguments": call.arguments, "effect": effect}
    return CustomEvent(name=APPROVAL_REQUIRED, value=value)
