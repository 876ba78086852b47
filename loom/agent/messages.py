"""Building what the model reads: the system prompt (with the sources) and the history."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from loom.agent.model import ChatMessage
from loom.agent.store import StoredMessage
from loom.engines.sources import Source
from loom.prompts import render

HISTORY_MESSAGES = 40  # older turns are dropped whole; a later issue may summarise them


def _describe(source: Source) -> str:
    line = f"- `{source.name}` ({source.kind}, {source.dialect} SQL): {source.description}"
    if source.instructions:
        line += f"\n  Instructions: {source.instructions}"
    return line


@lru_cache(maxsize=32)
def _system_prompt(sources: tuple[Source, ...]) -> ChatMessage:
    listed = "\n".join(_describe(s) for s in sources) or "- (none configured)"
    return ChatMessage(role="system", content=render("system", sources=listed))


def _trim(history: list[ChatMessage]) -> list[ChatMessage]:
    """The last messages, starting at a user message so no tool result loses its call."""
    recent = history[-HISTORY_MESSAGES:]
    for i, message in enumerate(recent):
        if message.role == "user":
            return recent[i:]
    return []


def build_messages(sources: Sequence[Source], stored: Sequence[StoredMessage]) -> list[ChatMessage]:
    history = [m.to_chat() for m in stored]
    return [_system_prompt(tuple(sources)), *_trim(history)]
