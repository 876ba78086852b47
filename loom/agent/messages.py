"""Building what the model reads: the system prompt (with the sources) and the history."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from functools import lru_cache

from loom.agent.model import ChatMessage
from loom.agent.store import StoredMessage
from loom.engines.registry import languages
from loom.engines.sources import Source
from loom.prompts import render
from loom.tools.base import Tool

HISTORY_MESSAGES = 40
OLD_RESULT_CHARS = 1_500  # a tool result from an earlier turn keeps this much
SHORTENED = "… (shortened: an earlier turn's result; run the tool again for all of it)"


def _describe(source: Source) -> str:
    answered = ", ".join(_language(source, lang) for lang in languages(source)) or "nothing yet"
    line = f"- `{source.name}` ({source.kind}; answers {answered}): {source.description}"
    if source.instructions:
        line += f"\n  Instructions: {source.instructions}"
    return line


def _language(source: Source, language: str) -> str:
    if language == "search":
        return "document search"
    dialect = source.dialect_for(language)
    return language.upper() if dialect == language else f"{language.upper()} in the {dialect} dialect"


def _guidance(tool: Tool) -> str:
    return tool.guidance or f"- `{tool.name}`: {tool.description.splitlines()[0] if tool.description else ''}"


@lru_cache(maxsize=32)
def _system_prompt(sources: tuple[Source, ...], tools: tuple[Tool, ...]) -> ChatMessage:
    listed = "\n".join(_describe(s) for s in sources) or "- (none: no data source is open to this user)"
    guidance = "\n".join(_guidance(t) for t in tools) or "- (none: answer without tools)"
    return ChatMessage(role="system", content=render("system", sources=listed, tools=guidance))


def _turns(history: Sequence[ChatMessage]) -> list[list[ChatMessage]]:
    """The history cut at each user message; anything before the first one is dropped."""
    turns: list[list[ChatMessage]] = []
    for message in history:
        if message.role == "user":
            turns.append([message])
        elif turns:
            turns[-1].append(message)
    return turns


def _shortened(turn: list[ChatMessage]) -> list[ChatMessage]:
    return [
        replace(m, content=m.content[:OLD_RESULT_CHARS] + SHORTENED)
        if m.role == "tool" and len(m.content) > OLD_RESULT_CHARS
        else m
        for m in turn
    ]


def _size(turn: list[ChatMessage]) -> int:
    return sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in turn)


def _trim(history: list[ChatMessage], max_chars: int) -> list[ChatMessage]:
    """Whole turns, newest first, while they fit in `max_chars` (and `HISTORY_MESSAGES`).

    A turn is never split, so no tool result loses its call. Earlier turns' tool results are
    shortened first: the model needs to know what it found, rarely every row of it again. The
    newest turn is always kept, shortened if it alone is over the budget.
    """
    kept: list[list[ChatMessage]] = []
    chars = count = 0
    for turn in reversed(_turns(history)):
        turn = _shortened(turn) if kept or _size(turn) > max_chars else turn
        chars, count = chars + _size(turn), count + len(turn)
        if kept and (chars > max_chars or count > HISTORY_MESSAGES):
            break
        kept.append(turn)
    return [m for turn in reversed(kept) for m in turn]


def build_messages(
    sources: Sequence[Source],
    tools: Sequence[Tool],
    stored: Sequence[StoredMessage],
    max_chars: int,
    allowed: Collection[str] | None = None,
) -> list[ChatMessage]:
    """The system prompt for these sources and tools, then the history within `max_chars`.

    An earlier result from a source not in `allowed` (the user's access changed since) is left out:
    the model must not read data the user may no longer see."""
    history = [_withheld(m) if _from_elsewhere(m, allowed) else m.to_chat() for m in stored]
    return [_system_prompt(tuple(sources), tuple(tools)), *_trim(history, max_chars)]


WITHHELD = '{"withheld": "this result came from a source you can no longer use"}'


def _from_elsewhere(message: StoredMessage, allowed: Collection[str] | None) -> bool:
    result = message.metadata.get("result")
    source = result.get("source") if isinstance(result, dict) else None
    return (
        allowed is not None and message.role == "tool" and isinstance(source, str) and source not in allowed
    )


def _withheld(message: StoredMessage) -> ChatMessage:
    return replace(message.to_chat(), content=WITHHELD)
