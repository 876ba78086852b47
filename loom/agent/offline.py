"""Offline mode: a stand-in for the model when none is configured.

It answers only what the verified-query library covers, and it does so through the same path as a
real model (a call of the tool for the verified query's language, which runs it), so offline
answers come from queries actually executed. Anything else gets a plain statement of how to
configure a model.

Like a model, it reads only what the turn offers: the tools, and in their `source` argument the
sources this conversation may use. Verified questions belong to their source, so another source's
are neither matched nor listed, and the sources are read as they are now (the file may change
under a running server).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from loom.agent.model import ChatMessage, ModelEvent, ModelReply, TextDelta, ToolCall, ToolCallDelta
from loom.engines.sources import Source
from loom.tools.base import Tool
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
    """A plain-language account of one data tool's result, for the offline answer."""
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

    def __init__(
        self, sources: Callable[[], Mapping[str, Source]], tools: Sequence[Tool], threshold: float
    ) -> None:
        self.sources = sources
        self.threshold = threshold
        self._languages = {t.name: t.language for t in tools if t.language is not None}

    def _for_user(self, question: str, tools: Sequence[dict[str, Any]]) -> ModelReply:
        offered = self._offered(tools)
        for source, tool in offered:
            if VerifiedIndex.of(source.verified_for(self._languages[tool])).best(question, self.threshold):
                args = json.dumps({"question": question, "source": source.name})
                call = ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=tool, arguments=args)
                return ModelReply(tool_calls=(call,))
        return ModelReply(text=_no_model([s for s, _ in offered]))

    def _offered(self, tools: Sequence[dict[str, Any]]) -> list[tuple[Source, str]]:
        """(source, tool) for each data tool offered and each source it may name, in order."""
        known = self.sources()
        pairs: list[tuple[Source, str]] = []
        for schema in tools:
            function = schema["function"]
            if function["name"] not in self._languages:
                continue
            names = function["parameters"].get("properties", {}).get("source", {}).get("enum", list(known))
            pairs.extend((known[n], function["name"]) for n in names if n in known)
        return pairs

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


def _no_model(sources: Sequence[Source]) -> str:
    known = list(dict.fromkeys(v.question for s in sources for v in s.verified_queries))[:12]
    listed = "\n".join(f"- {q}" for q in known)
    answerable = f"\n\nQuestions I can answer now from verified queries:\n{listed}" if known else ""
    return (
        "No language model is configured, so I can only answer questions that match the "
        f"verified-query library, and this one does not. {CONFIGURE}{answerable}"
    )


def _trailing(messages: Sequence[ChatMessage], role: str) -> list[ChatMessage]:
    """The run of messages with `role` at the end of the list."""
    out: list[ChatMessage] = []
    for message in reversed(messages):
        if message.role != role:
            break
        out.append(message)
    return out[::-1]
