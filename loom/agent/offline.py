"""Offline mode: a stand-in for the model when none is configured.

It answers only what the verified-query library covers, and it does so through the same path as a
real model (a `nl2sql` tool call that runs the verified query), so offline answers come from
queries actually executed. Anything else gets a plain statement of how to configure a model.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from loom.agent.model import ChatMessage, ModelEvent, ModelReply, TextDelta, ToolCall, ToolCallDelta
from loom.engines.sources import Source
from loom.tools.verified import VerifiedIndex

CONFIGURE = (
    "To use a model, set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT (with AZURE_OPENAI_API_KEY, "
    "or Entra ID sign-in), or OPENAI_BASE_URL (with OPENAI_API_KEY and LOOM_MODEL) for any "
    "OpenAI-compatible server."
)
SHOWN_ROWS = 5


def _format_row(columns: list[str], row: list[Any]) -> str:
    return ", ".join(f"{c} {v}" for c, v in zip(columns, row, strict=False))


def describe(result: dict[str, Any]) -> str:
    """A plain-language account of one nl2sql result, for the offline answer."""
    if "error" in result:
        return f"The query could not run: {result['error'].get('message', 'unknown error')}"
    table = result["result"]
    columns = [c["name"] for c in table["columns"]]
    lines = [f"- {_format_row(columns, row)}" for row in table["rows"][:SHOWN_ROWS]]
    more = table["row_count"] - len(lines)
    head = f"It returned {table['row_count']} row{'s' if table['row_count'] != 1 else ''}"
    text = head + (":\n" + "\n".join(lines) if lines else ".")
    if more > 0:
        text += f"\n… and {more} more (see the table)."
    return text


def _answer(tool_messages: Sequence[ChatMessage]) -> str:
    parts = []
    for message in tool_messages:
        result = json.loads(message.content)
        if result.get("verified"):
            parts.append(
                f"Verified answer: your question matched the verified query “{result['verified_question']}” "
                f"on source `{result['source']}`. {describe(result)}"
            )
        else:
            parts.append(describe(result))
    return "\n\n".join(parts)


class OfflineModel:
    """Implements ChatModel without a model: verified queries in, plain answers out."""

    name = "offline"

    def __init__(self, sources: Sequence[Source], threshold: float) -> None:
        self.threshold = threshold
        self._indexes = [(s, VerifiedIndex.of(s.verified_queries)) for s in sources]

    def _no_model(self) -> str:
        known = [v.question for s, _ in self._indexes for v in s.verified_queries][:12]
        listed = "\n".join(f"- {q}" for q in known)
        answerable = f"\n\nQuestions I can answer now from verified queries:\n{listed}" if known else ""
        return (
            "No language model is configured, so I can only answer questions that match the "
            f"verified-query library, and this one does not. {CONFIGURE}{answerable}"
        )

    def _for_user(self, question: str, tools: Sequence[dict[str, Any]]) -> ModelReply:
        offered = {t["function"]["name"] for t in tools}
        for source, index in self._indexes:
            if "nl2sql" in offered and index.best(question, self.threshold):
                args = json.dumps({"question": question, "source": source.name})
                call = ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name="nl2sql", arguments=args)
                return ModelReply(tool_calls=(call,))
        return ModelReply(text=self._no_model())

    def _reply(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]]) -> ModelReply:
        tail = _trailing(messages, "tool")
        if tail:
            return ModelReply(text=_answer(tail))
        return self._for_user(messages[-1].content, tools)

    async def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> ModelReply:
        return self._reply(messages, tools)

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> AsyncIterator[ModelEvent]:
        reply = self._reply(messages, tools)
        if reply.text:
            yield TextDelta(reply.text)
        for call in reply.tool_calls:
            yield ToolCallDelta(id=call.id, name=call.name, arguments=call.arguments)
        yield reply


def _trailing(messages: Sequence[ChatMessage], role: str) -> list[ChatMessage]:
    """The run of messages with `role` at the end of the list."""
    out: list[ChatMessage] = []
    for message in reversed(messages):
        if message.role != role:
            break
        out.append(message)
    return out[::-1]
